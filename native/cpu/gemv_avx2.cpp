// AVX2 + FMA kernels of the weight-streaming family (see gemv.h), for x86-64 CPUs without AVX-512. The
// weight is widened in registers: f32 as is, bf16 by a 16-bit shift (exact), f16 by VCVTPH2PS (exact).
//   Dot kernel (W stored [N, K]): one row of x against one row of a 16-bit W at a time (a linear stream);
//   up to 2 rows of x times 4 rows of W, or blocks of up to 4 rows of x times 3 rows of W (12 ymm
//   accumulators along K, 3 W vectors and one x vector: the 16 registers),
//   reduced by one shuffle tree per depth block; the last rows of W take 1-row blocks. Depths that are not
//   a multiple of 8 end with one step on zero-padded copies (AVX2 has no masked 16-bit loads). Prefetch
//   runs ahead as in gemv_avx512.cpp.
//   Columns kernel (W stored [K, N]): 32 columns x up to 2 rows of x, K in blocks of 256.
#include "gemv.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define GEMMKIT_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace gemmkit {

namespace {

constexpr int64_t kPrefetchBytes = 1024;
// How far the one-row kernel's single stream prefetches (2 KiB measured best of 0, 2 and 4 KiB on Zen 3).
constexpr int64_t kLinearPrefetchBytes = 2048;

template <DType T>
GEMMKIT_AVX2 inline __m256 loadW8(const void* base, int64_t i) {
  if constexpr (T == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  } else if constexpr (T == DType::BF16) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i)));
  }
}

// n < 8 elements from i on, as f32, zero past n.
template <DType T>
GEMMKIT_AVX2 inline __m256 loadW8Partial(const void* base, int64_t i, int64_t n) {
  alignas(32) float tmp[8] = {};
  for (int64_t q = 0; q < n; q++) tmp[q] = loadAsF32(base, T, i + q);
  return _mm256_load_ps(tmp);
}

// Lane r of the result is the sum of the 8 lanes of a[r] (a fixed tree).
GEMMKIT_AVX2 inline __m128 reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

template <DType T, int MB, int RB>
GEMMKIT_AVX2 inline void dotStep(__m256 (&acc)[MB][RB], const float* xs, const char* w, int64_t ldwBytes, int64_t l) {
  __m256 wv[RB];
#pragma GCC unroll 4
  for (int r = 0; r < RB; r++) wv[r] = loadW8<T>(w + r * ldwBytes, l);
#pragma GCC unroll 4
  for (int i = 0; i < MB; i++) {
    __m256 xv = _mm256_load_ps(xs + 8 * i);
    asm("" : "+x"(xv));  // one load per row of x, not one per FMA
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[i][r] = _mm256_fmadd_ps(xv, wv[r], acc[i][r]);
  }
}

// Rows [j, j+RB) of W (w at row j, column kb) against MB rows of the x panel (xs: this depth's strip at the
// block's first row; xStep floats per step) over depth len; prefetch as in gemv_avx512.cpp.
template <DType T, int MB, int RB>
GEMMKIT_AVX2 inline void dotBlock(const float* xs, int64_t xStep, const void* w, int64_t ldw, int64_t len,
                                  const void* pfNext, bool prefetch, bool first, float* y, int64_t ldy) {
  constexpr int64_t esize = T == DType::F32 ? 4 : 2;
  const int64_t ldwBytes = ldw * esize;
  const char* wb = static_cast<const char*>(w);
  const char* nb = static_cast<const char*>(pfNext);
  __m256 acc[MB][RB];
#pragma GCC unroll 4
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[i][r] = _mm256_setzero_ps();
  }
  const int64_t full = len / 8 * 8;
  int64_t l = 0;
  if (prefetch) {
    constexpr int64_t ahead = kPrefetchBytes / esize;
    const int64_t split = full > ahead ? full - ahead : 0;
    for (; l < split; l += 8, xs += xStep) {
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) _mm_prefetch(wb + r * ldwBytes + (l + ahead) * esize, _MM_HINT_T0);
      dotStep<T, MB, RB>(acc, xs, wb, ldwBytes, l);
    }
    for (; l < full; l += 8, xs += xStep) {
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) _mm_prefetch(nb + r * ldwBytes + (l + ahead - full) * esize, _MM_HINT_T0);
      dotStep<T, MB, RB>(acc, xs, wb, ldwBytes, l);
    }
  } else {
    for (; l < full; l += 8, xs += xStep) dotStep<T, MB, RB>(acc, xs, wb, ldwBytes, l);
  }
  if (l < len) {  // the panel is zero past K; W's last elements go through a zero-padded copy
    __m256 wv[RB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) wv[r] = loadW8Partial<T>(wb + r * ldwBytes, l, len - l);
#pragma GCC unroll 4
    for (int i = 0; i < MB; i++) {
      const __m256 xv = _mm256_load_ps(xs + 8 * i);
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) acc[i][r] = _mm256_fmadd_ps(xv, wv[r], acc[i][r]);
    }
  }
  // Every block shape reduces with reduce4, so an output's bits do not depend on its block.
  static_assert(RB == 1 || RB == 3 || RB == 4, "dot blocks have 1, 3 or 4 rows of W");
  const __m256 zero = _mm256_setzero_ps();
  const __m128i lanes = _mm_cmpgt_epi32(_mm_set1_epi32(RB), _mm_setr_epi32(0, 1, 2, 3));
#pragma GCC unroll 4
  for (int i = 0; i < MB; i++) {
    float* yi = y + i * ldy;
    __m128 s = reduce4(acc[i][0], RB > 1 ? acc[i][RB > 1 ? 1 : 0] : zero, RB > 2 ? acc[i][RB > 2 ? 2 : 0] : zero,
                       RB > 3 ? acc[i][RB > 3 ? 3 : 0] : zero);
    if (!first) s = _mm_add_ps(_mm_maskload_ps(yi, lanes), s);
    _mm_maskstore_ps(yi, lanes, s);
  }
}

// The m rows of x against RB rows of W, in near-equal blocks of at most MB rows, larger ones first (the
// first one prefetches the weight).
template <DType T, int RB, int MB>
GEMMKIT_AVX2 inline void dotRowsOfX(const float* xs, int64_t xStep, int64_t m, const void* w, int64_t ldw, int64_t len,
                                    const void* pfNext, bool first, float* y, int64_t ldy) {
  const int64_t blocks = (m + MB - 1) / MB;
  for (int64_t b = 0, i = 0; b < blocks; b++) {
    const int rows = int((m - i + blocks - b - 1) / (blocks - b));
    const float* xb = xs + 8 * i;
    float* yb = y + i * ldy;
    const bool pf = i == 0;
    switch (rows) {
      case 4: if constexpr (MB >= 4) dotBlock<T, 4, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 3: if constexpr (MB >= 3) dotBlock<T, 3, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 2: dotBlock<T, 2, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      default: dotBlock<T, 1, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
    }
    i += rows;
  }
}

template <DType T, int RB, int MB>
GEMMKIT_AVX2 void dotRowsT(const float* x, int64_t m, const void* w, int64_t ldw, int64_t n0, int64_t n1, int64_t k0,
                           int64_t k1, int64_t kc, float* y, int64_t ldy) {
  constexpr int64_t esize = T == DType::F32 ? 4 : 2;
  const char* wb = static_cast<const char*>(w);
  const int64_t xStep = 8 * m;
  for (int64_t kb = k0; kb < k1; kb += kc) {
    const int64_t len = k1 - kb < kc ? k1 - kb : kc;
    const bool first = kb == k0;
    const float* xs = x + (kb / 8) * xStep;
    const int64_t nextDepth = kb + kc < k1 ? kb + kc : kb;
    for (int64_t j = n0; j < n1; j += RB) {
      const char* wj = wb + (j * ldw + kb) * esize;
      const char* next = j + RB < n1 ? wj + RB * ldw * esize : wb + (n0 * ldw + nextDepth) * esize;
      if (n1 - j >= RB) {
        dotRowsOfX<T, RB, MB>(xs, xStep, m, wj, ldw, len, next, first, y + j, ldy);
      } else {
        for (int64_t r = j; r < n1; r++) {
          dotRowsOfX<T, 1, MB>(xs, xStep, m, wb + (r * ldw + kb) * esize, ldw, len, next, first, y + r, ldy);
        }
      }
    }
  }
}

// One row of x (the decode step's GEMV) against rows [n0, n1) of a 16-bit W, one row of W at a time: four
// accumulators along K take one 64-byte line of W per step, so each thread reads its rows as one linear
// stream, prefetched one line at a time kLinearPrefetchBytes ahead along it (into the
// following rows past a row's end). Side by side on a 2-core Zen 3 VM (2 threads, M = 1, bf16 weights of
// 1024-4096 columns, cold) this streamed 23-29 GB/s where blocks of 4 rows (four streams a row apart, a
// quarter line each per step) reached 12-19; the bench's bf16 Llama decoded 1.18x faster. x is the panel
// of one row: x itself from column kb on, zero past K.
template <DType T>
GEMMKIT_AVX2 void dotOneRowOfX(const float* x, const void* w, int64_t ldw, int64_t n0, int64_t n1, int64_t k0,
                               int64_t k1, int64_t kc, float* y) {
  static_assert(T != DType::F32, "f32 weights take the 4-row blocks");
  constexpr int64_t esize = 2;
  const uintptr_t wAddr = reinterpret_cast<uintptr_t>(w);  // prefetches may run past W: addresses, not pointers
  for (int64_t kb = k0; kb < k1; kb += kc) {
    const int64_t len = k1 - kb < kc ? k1 - kb : kc;
    const bool first = kb == k0;
    const float* xs = x + kb;
    // Where the prefetch is: row pr, element pl of this depth block.
    constexpr int64_t ahead = kLinearPrefetchBytes / esize;
    int64_t pr = n0 + ahead / len, pl = ahead % len;
    for (int64_t j = n0; j < n1; j++) {
      const char* row = static_cast<const char*>(w) + (j * ldw + kb) * esize;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      int64_t l = 0;
      for (; l + 32 <= len; l += 32) {
        _mm_prefetch(reinterpret_cast<const char*>(wAddr + uintptr_t((pr * ldw + kb + pl) * esize)), _MM_HINT_T0);
        for (pl += 32; pl >= len; pr++) pl -= len;
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xs + l), loadW8<T>(row, l), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xs + l + 8), loadW8<T>(row, l + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xs + l + 16), loadW8<T>(row, l + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xs + l + 24), loadW8<T>(row, l + 24), a3);
      }
      for (; l + 8 <= len; l += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xs + l), loadW8<T>(row, l), a0);
      if (l < len) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xs + l), loadW8Partial<T>(row, l, len - l), a0);
      const __m256 s8 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
      __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
      s = _mm_hadd_ps(s, s);
      s = _mm_hadd_ps(s, s);
      const float v = _mm_cvtss_f32(s);
      y[j] = first ? v : y[j] + v;
    }
  }
}

// One row of x against a 16-bit weight: dotOneRowOfX (f32 weights decoded 0.93x as fast with one row as
// with the 4-row blocks, whose steps already take half a line per row). Up to 2 rows: one block against 4
// rows of W (8 accumulators); more: blocks of up to 4 rows against 3 rows of W (12 accumulators, 3 W
// vectors and one x vector: all 16 ymm registers).
template <DType T>
GEMMKIT_AVX2 void dotRowsAnyM(const float* x, int64_t m, const void* w, int64_t ldw, int64_t n0, int64_t n1,
                              int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy) {
  if constexpr (T != DType::F32) {
    if (m == 1) {
      dotOneRowOfX<T>(x, w, ldw, n0, n1, k0, k1, kc, y);
      return;
    }
  }
  if (m <= 2) {
    dotRowsT<T, 4, 2>(x, m, w, ldw, n0, n1, k0, k1, kc, y, ldy);
  } else {
    dotRowsT<T, 3, 4>(x, m, w, ldw, n0, n1, k0, k1, kc, y, ldy);
  }
}

// x: the panel, lanes 8, f32.
GEMMKIT_AVX2 void gemvDotAvx2(const void* x, int64_t m, const void* w, DType wt, int64_t ldw, int64_t n0, int64_t n1,
                              int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy) {
  const float* xp = static_cast<const float*>(x);
  switch (wt) {
    case DType::F32: dotRowsAnyM<DType::F32>(xp, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
    case DType::BF16: dotRowsAnyM<DType::BF16>(xp, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
    case DType::F16: dotRowsAnyM<DType::F16>(xp, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
  }
}

// MB rows of x times 32 columns [j, j+cols) of W over [k0, k1), continuing the sums in y unless `first`.
template <DType T, int MB>
GEMMKIT_AVX2 inline void columnsBlock(const float* x, int64_t ldx, const void* w, int64_t ldw, int64_t j, int64_t cols,
                                      int64_t k0, int64_t k1, bool first, float* y, int64_t ldy) {
  constexpr int NV = 4;
  constexpr int64_t esize = T == DType::F32 ? 4 : 2;
  alignas(32) float tmp[MB][32];
  __m256 acc[MB][NV];
#pragma GCC unroll 4
  for (int i = 0; i < MB; i++) {
    for (int q = 0; q < 32; q++) tmp[i][q] = (!first && q < cols) ? y[i * ldy + j + q] : 0.0f;
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[i][v] = _mm256_load_ps(tmp[i] + 8 * v);
  }
  const char* wb = static_cast<const char*>(w);
  for (int64_t l = k0; l < k1; l++) {
    __m256 wv[NV];
    // The row 8 ahead: 32 columns are 2 cache lines of f32, 1 of bf16/f16.
    _mm_prefetch(wb + ((l + 8) * ldw + j) * esize, _MM_HINT_T0);
    if constexpr (T == DType::F32) _mm_prefetch(wb + ((l + 8) * ldw + j + 16) * esize, _MM_HINT_T0);
    if (cols == 32) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) wv[v] = loadW8<T>(wb, l * ldw + j + 8 * v);
    } else {
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) {
        const int64_t left = cols - 8 * v;
        wv[v] = left >= 8 ? loadW8<T>(wb, l * ldw + j + 8 * v)
                          : loadW8Partial<T>(wb, l * ldw + j + 8 * v, left > 0 ? left : 0);
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < MB; i++) {
      const __m256 xv = _mm256_broadcast_ss(x + i * ldx + l);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[i][v] = _mm256_fmadd_ps(xv, wv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) _mm256_store_ps(tmp[i] + 8 * v, acc[i][v]);
    for (int64_t q = 0; q < cols; q++) y[i * ldy + j + q] = tmp[i][q];
  }
}

template <DType T>
GEMMKIT_AVX2 void gemvColumnsT(const float* x, int64_t ldx, int64_t m, const void* w, int64_t ldw, int64_t n0,
                               int64_t n1, int64_t k0, int64_t k1, int64_t kBlock, float* y, int64_t ldy) {
  for (int64_t j = n0; j < n1; j += 32) {
    const int64_t cols = n1 - j < 32 ? n1 - j : 32;
    for (int64_t kb = k0; kb < k1; kb += kBlock) {
      const int64_t ke = kb + kBlock < k1 ? kb + kBlock : k1;
      const bool first = kb == k0;
      int64_t i = 0;
      for (; i + 2 <= m; i += 2) columnsBlock<T, 2>(x + i * ldx, ldx, w, ldw, j, cols, kb, ke, first, y + i * ldy, ldy);
      if (i < m) columnsBlock<T, 1>(x + i * ldx, ldx, w, ldw, j, cols, kb, ke, first, y + i * ldy, ldy);
    }
  }
}

GEMMKIT_AVX2 void gemvColumnsAvx2(const float* x, int64_t ldx, int64_t m, const void* w, DType wt, int64_t ldw,
                                  int64_t n0, int64_t n1, int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy) {
  switch (wt) {
    case DType::F32: gemvColumnsT<DType::F32>(x, ldx, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
    case DType::BF16: gemvColumnsT<DType::BF16>(x, ldx, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
    case DType::F16: gemvColumnsT<DType::F16>(x, ldx, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
  }
}

}  // namespace

void addGemvAvx2Kernels(std::vector<GemvKernel>& out) {
  out.push_back({"gemv.avx2", Isa::Avx2, gemvDotAvx2, 8, DType::F32, gemvColumnsAvx2, 48});
}

}  // namespace gemmkit

#else

namespace gemmkit {
void addGemvAvx2Kernels(std::vector<GemvKernel>&) {}
}  // namespace gemmkit

#endif
