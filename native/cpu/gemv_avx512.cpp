// AVX-512 kernels of the weight-streaming family (see gemv.h). The weight is read in place and widened
// in registers: f32 as is, bf16 by a 16-bit shift (exact), f16 by VCVTPH2PS (exact).
//   Dot kernels (W stored [N, K]): a register block of MB rows of x times RB rows of W keeps MB*RB zmm
//   accumulators along K (24 at most, plus RB W vectors and one x vector within the 32 registers): up to
//   6 rows of x take one block against 4 rows of W; 7 or 8 rows one block against 3 rows of W (so a
//   weight streaming from memory is read once); more rows take blocks of 6 against 4. x comes from the
//   panel (one aligned 64-byte load per row and step, from consecutive addresses). At the end of each
//   depth block every accumulator is reduced by the same shuffle tree (reduce4), so an output's bits do not
//   depend on the block shape it fell in; the last rows of W (N % RB) take 1-row blocks. The first block of
//   x rows of a group prefetches the group's W rows kPrefetchBytes ahead, continuing into the next group.
//   gemv.avx512bf16's dot kernel is the same on a bf16 panel: VDPBF16PS, 32 k (16 pairs) per instruction.
//   Columns kernel (W stored [K, N]): 64 columns x up to 6 rows of x (24 accumulators), K in strips of
//   kc rows so the strip being reused for the next rows of x stays in L1/L2.
#include "gemv.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 warns about the deliberately undefined registers inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "avx512_common.h"

#define GEMMKIT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define GEMMKIT_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx512bf16")))

namespace gemmkit {

namespace {

// Bytes the weight prefetch runs ahead of the loads (per row of the block).
constexpr int64_t kPrefetchBytes = 1024;

GEMMKIT_AVX512 inline __mmask32 firstLanes32(int64_t n) {
  return n >= 32 ? __mmask32(0xffffffffu) : n <= 0 ? __mmask32(0) : __mmask32((1u << n) - 1u);
}

template <DType T>
GEMMKIT_AVX512 inline __m512 loadWFull(const void* base, int64_t i) {
  if constexpr (T == DType::F32) {
    return _mm512_loadu_ps(static_cast<const float*>(base) + i);
  } else if constexpr (T == DType::BF16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + i)));
  }
}

// Lane r of the result is the sum of the 16 lanes of a[r] (a fixed tree: the same bits on every call).
GEMMKIT_AVX512 inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  // Per 128-bit lane: [a0_0+a0_2, a1_0+a1_2, a0_1+a0_3, a1_1+a1_3], the same for a2/a3.
  const __m512 x = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
  const __m512 y = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
  // Per 128-bit lane: [a0, a1, a2, a3] partial sums of that lane's 4 elements.
  const __m512 z = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x), _mm512_castps_pd(y))),
                                 _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x), _mm512_castps_pd(y))));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(z), _mm512_extractf32x8_ps(z, 1));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// y[i][0..RB) (+)= the sums of acc[i][0..RB): the end of one depth block. Every block shape reduces
// with reduce4, so an output's bits do not depend on the shape of the block it fell in.
template <int MB, int RB>
GEMMKIT_AVX512 inline void storeSums(__m512 (&acc)[MB][RB], bool first, float* y, int64_t ldy) {
  static_assert(RB == 1 || RB == 3 || RB == 4, "dot blocks have 1, 3 or 4 rows of W");
  const __m512 zero = _mm512_setzero_ps();
  const __mmask8 lanes = __mmask8((1u << RB) - 1u);
#pragma GCC unroll 8
  for (int i = 0; i < MB; i++) {
    float* yi = y + i * ldy;
    __m128 s = reduce4(acc[i][0], RB > 1 ? acc[i][RB > 1 ? 1 : 0] : zero, RB > 2 ? acc[i][RB > 2 ? 2 : 0] : zero,
                       RB > 3 ? acc[i][RB > 3 ? 3 : 0] : zero);
    if (!first) s = _mm_add_ps(_mm_maskz_loadu_ps(lanes, yi), s);
    _mm_mask_storeu_ps(yi, lanes, s);
  }
}

// One step of 16 k: RB vectors of W, then each row of x against them. xs: the panel strip of this step at
// the block's first row (row i at xs + 16*i).
template <DType T, int MB, int RB>
GEMMKIT_AVX512 inline void dotStep(__m512 (&acc)[MB][RB], const float* xs, const char* w, int64_t ldwBytes,
                                   int64_t l) {
  __m512 wv[RB];
#pragma GCC unroll 4
  for (int r = 0; r < RB; r++) wv[r] = loadWFull<T>(w + r * ldwBytes, l);
#pragma GCC unroll 8
  for (int i = 0; i < MB; i++) {
    __m512 xv = _mm512_load_ps(xs + 16 * i);
    // Keep x in a register: folded into each FMA as a memory operand it would be loaded RB times.
    asm("" : "+v"(xv));
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[i][r] = _mm512_fmadd_ps(xv, wv[r], acc[i][r]);
  }
}

// Rows [j, j+RB) of W (w at row j, column kb) against MB rows of x (xs: the panel strip at depth kb and
// the block's first row; xStep: floats from one step's strip to the next) over depth len. With
// `prefetch`, each row of W is prefetched kPrefetchBytes ahead of the loads, continuing past the block's
// end into the same row of pfNext (the next group of W rows, laid out like w).
template <DType T, int MB, int RB>
GEMMKIT_AVX512 inline void dotBlock(const float* xs, int64_t xStep, const void* w, int64_t ldw, int64_t len,
                                    const void* pfNext, bool prefetch, bool first, float* y, int64_t ldy) {
  constexpr int64_t esize = T == DType::F32 ? 4 : 2;
  const int64_t ldwBytes = ldw * esize;
  const char* wb = static_cast<const char*>(w);
  const char* nb = static_cast<const char*>(pfNext);
  __m512 acc[MB][RB];
#pragma GCC unroll 8
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[i][r] = _mm512_setzero_ps();
  }
  const int64_t full = len / 16 * 16;
  int64_t l = 0;
  if (prefetch) {
    constexpr int64_t ahead = kPrefetchBytes / esize;
    const int64_t split = full > ahead ? full - ahead : 0;
    for (; l < split; l += 16, xs += xStep) {
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) _mm_prefetch(wb + r * ldwBytes + (l + ahead) * esize, _MM_HINT_T0);
      dotStep<T, MB, RB>(acc, xs, wb, ldwBytes, l);
    }
    for (; l < full; l += 16, xs += xStep) {
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) _mm_prefetch(nb + r * ldwBytes + (l + ahead - full) * esize, _MM_HINT_T0);
      dotStep<T, MB, RB>(acc, xs, wb, ldwBytes, l);
    }
  } else {
    for (; l < full; l += 16, xs += xStep) dotStep<T, MB, RB>(acc, xs, wb, ldwBytes, l);
  }
  if (l < len) {  // the panel is zero past K; W is masked (what lies past its row may be anything)
    const __mmask16 m = firstLanes(len - l);
    __m512 wv[RB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) wv[r] = load16AsF32<T>(wb + r * ldwBytes, l, m);
#pragma GCC unroll 8
    for (int i = 0; i < MB; i++) {
      const __m512 xv = _mm512_load_ps(xs + 16 * i);
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) acc[i][r] = _mm512_fmadd_ps(xv, wv[r], acc[i][r]);
    }
  }
  storeSums<MB, RB>(acc, first, y, ldy);
}

// The m rows of x against RB rows of W, in blocks of at most MB rows of near-equal size (a thin last
// block would run at a fraction of the FMA rate). Only the first block prefetches the weight (the others
// find the W rows in L1 or L2).
template <DType T, int RB, int MB>
GEMMKIT_AVX512 inline void dotRowsOfX(const float* xs, int64_t xStep, int64_t m, const void* w, int64_t ldw,
                                      int64_t len, const void* pfNext, bool first, float* y, int64_t ldy) {
  const int64_t blocks = (m + MB - 1) / MB;
  for (int64_t b = 0, i = 0; b < blocks; b++) {
    // The remaining rows shared by the remaining blocks, larger blocks first (the first one prefetches).
    const int rows = int((m - i + blocks - b - 1) / (blocks - b));
    const float* xb = xs + 16 * i;
    float* yb = y + i * ldy;
    const bool pf = i == 0;
    switch (rows) {
      case 8: if constexpr (MB >= 8) dotBlock<T, 8, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 7: if constexpr (MB >= 7) dotBlock<T, 7, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 6: dotBlock<T, 6, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 5: dotBlock<T, 5, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 4: dotBlock<T, 4, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 3: dotBlock<T, 3, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 2: dotBlock<T, 2, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      default: dotBlock<T, 1, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
    }
    i += rows;
  }
}

// Groups of RB rows of W from n0 (the last rows one by one), each against all rows of x in blocks of up
// to MB; depth block by depth block.
template <DType T, int RB, int MB>
GEMMKIT_AVX512 void dotRowsT(const float* x, int64_t m, const void* w, int64_t ldw, int64_t n0, int64_t n1, int64_t k0,
                             int64_t k1, int64_t kc, float* y, int64_t ldy) {
  constexpr int64_t esize = T == DType::F32 ? 4 : 2;
  const char* wb = static_cast<const char*>(w);
  const int64_t xStep = 16 * m;
  for (int64_t kb = k0; kb < k1; kb += kc) {
    const int64_t len = k1 - kb < kc ? k1 - kb : kc;
    const bool first = kb == k0;
    const float* xs = x + (kb / 16) * xStep;
    // The group after the last one of this depth block is the first one of the next (or itself).
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

// Up to 6 rows of x are one block against 4 rows of W; more take blocks of up to 8 rows against 3 rows
// of W (24 accumulators either way), so up to 8 rows read a weight that streams from memory once.
template <DType T>
GEMMKIT_AVX512 void dotRowsAnyM(const float* x, int64_t m, const void* w, int64_t ldw, int64_t n0, int64_t n1,
                                int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy) {
  if (m == 7 || m == 8) {
    dotRowsT<T, 3, 8>(x, m, w, ldw, n0, n1, k0, k1, kc, y, ldy);
  } else {
    dotRowsT<T, 4, 6>(x, m, w, ldw, n0, n1, k0, k1, kc, y, ldy);
  }
}

// x: the panel, lanes 16, f32.
GEMMKIT_AVX512 void gemvDotAvx512(const void* x, int64_t m, const void* w, DType wt, int64_t ldw, int64_t n0, int64_t n1,
                                  int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy) {
  const float* xp = static_cast<const float*>(x);
  switch (wt) {
    case DType::F32: dotRowsAnyM<DType::F32>(xp, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
    case DType::BF16: dotRowsAnyM<DType::BF16>(xp, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
    case DType::F16: dotRowsAnyM<DType::F16>(xp, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
  }
}

// ---- bf16 x bf16 dot kernel (VDPBF16PS): the same blocks on a bf16 panel of lanes 32 --------------------

template <int MB, int RB>
GEMMKIT_AVX512BF16 inline void dotStepBf16(__m512 (&acc)[MB][RB], const uint16_t* xs, const uint16_t* w, int64_t ldw,
                                           int64_t l) {
  __m512bh wv[RB];
#pragma GCC unroll 4
  for (int r = 0; r < RB; r++) wv[r] = (__m512bh)_mm512_loadu_si512(w + r * ldw + l);
#pragma GCC unroll 8
  for (int i = 0; i < MB; i++) {
    __m512i xv = _mm512_load_si512(xs + 32 * i);
    asm("" : "+v"(xv));
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[i][r] = _mm512_dpbf16_ps(acc[i][r], (__m512bh)xv, wv[r]);
  }
}

template <int MB, int RB>
GEMMKIT_AVX512BF16 inline void dotBlockBf16(const uint16_t* xs, int64_t xStep, const uint16_t* w, int64_t ldw,
                                            int64_t len, const uint16_t* pfNext, bool prefetch, bool first, float* y,
                                            int64_t ldy) {
  __m512 acc[MB][RB];
#pragma GCC unroll 8
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[i][r] = _mm512_setzero_ps();
  }
  const int64_t full = len / 32 * 32;
  int64_t l = 0;
  if (prefetch) {
    constexpr int64_t ahead = kPrefetchBytes / 2;
    const int64_t split = full > ahead ? full - ahead : 0;
    for (; l < split; l += 32, xs += xStep) {
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) _mm_prefetch(reinterpret_cast<const char*>(w + r * ldw + l + ahead), _MM_HINT_T0);
      dotStepBf16<MB, RB>(acc, xs, w, ldw, l);
    }
    for (; l < full; l += 32, xs += xStep) {
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) {
        _mm_prefetch(reinterpret_cast<const char*>(pfNext + r * ldw + l + ahead - full), _MM_HINT_T0);
      }
      dotStepBf16<MB, RB>(acc, xs, w, ldw, l);
    }
  } else {
    for (; l < full; l += 32, xs += xStep) dotStepBf16<MB, RB>(acc, xs, w, ldw, l);
  }
  if (l < len) {  // the panel is zero past K and W is masked: those lanes add nothing
    const __mmask32 m = firstLanes32(len - l);
    __m512bh wv[RB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * ldw + l);
#pragma GCC unroll 8
    for (int i = 0; i < MB; i++) {
      const __m512bh xv = (__m512bh)_mm512_load_si512(xs + 32 * i);
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) acc[i][r] = _mm512_dpbf16_ps(acc[i][r], xv, wv[r]);
    }
  }
  storeSums<MB, RB>(acc, first, y, ldy);
}

template <int RB, int MB>
GEMMKIT_AVX512BF16 inline void dotRowsOfXBf16(const uint16_t* xs, int64_t xStep, int64_t m, const uint16_t* w,
                                              int64_t ldw, int64_t len, const uint16_t* pfNext, bool first, float* y,
                                              int64_t ldy) {
  const int64_t blocks = (m + MB - 1) / MB;
  for (int64_t b = 0, i = 0; b < blocks; b++) {
    const int rows = int((m - i + blocks - b - 1) / (blocks - b));
    const uint16_t* xb = xs + 32 * i;
    float* yb = y + i * ldy;
    const bool pf = i == 0;
    switch (rows) {
      case 8: if constexpr (MB >= 8) dotBlockBf16<8, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 7: if constexpr (MB >= 7) dotBlockBf16<7, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 6: dotBlockBf16<6, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 5: dotBlockBf16<5, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 4: dotBlockBf16<4, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 3: dotBlockBf16<3, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      case 2: dotBlockBf16<2, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
      default: dotBlockBf16<1, RB>(xb, xStep, w, ldw, len, pfNext, pf, first, yb, ldy); break;
    }
    i += rows;
  }
}

template <int RB, int MB>
GEMMKIT_AVX512BF16 void dotRowsBf16(const uint16_t* x, int64_t m, const uint16_t* w, int64_t ldw, int64_t n0,
                                    int64_t n1, int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy) {
  const int64_t xStep = 32 * m;
  for (int64_t kb = k0; kb < k1; kb += kc) {
    const int64_t len = k1 - kb < kc ? k1 - kb : kc;
    const bool first = kb == k0;
    const uint16_t* xs = x + (kb / 32) * xStep;
    const int64_t nextDepth = kb + kc < k1 ? kb + kc : kb;
    for (int64_t j = n0; j < n1; j += RB) {
      const uint16_t* wj = w + j * ldw + kb;
      const uint16_t* next = j + RB < n1 ? wj + RB * ldw : w + n0 * ldw + nextDepth;
      if (n1 - j >= RB) {
        dotRowsOfXBf16<RB, MB>(xs, xStep, m, wj, ldw, len, next, first, y + j, ldy);
      } else {
        for (int64_t r = j; r < n1; r++) {
          dotRowsOfXBf16<1, MB>(xs, xStep, m, w + r * ldw + kb, ldw, len, next, first, y + r, ldy);
        }
      }
    }
  }
}

// x: the panel, lanes 32, bf16; W bf16.
GEMMKIT_AVX512BF16 void gemvDotBf16Pairs(const void* x, int64_t m, const void* w, DType, int64_t ldw, int64_t n0,
                                         int64_t n1, int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy) {
  const uint16_t* xp = static_cast<const uint16_t*>(x);
  const uint16_t* wp = static_cast<const uint16_t*>(w);
  if (m == 7 || m == 8) {
    dotRowsBf16<3, 8>(xp, m, wp, ldw, n0, n1, k0, k1, kc, y, ldy);
  } else {
    dotRowsBf16<4, 6>(xp, m, wp, ldw, n0, n1, k0, k1, kc, y, ldy);
  }
}

// ---- columns kernel (W stored [K, N]) ------------------------------------------------------------------

// MB rows of x times 64 columns [j, j+cols) of W over [k0, k1); `first` starts the sums at zero, else
// they continue from y (the previous K block), which keeps each sum's order k ascending.
template <DType T, int MB>
GEMMKIT_AVX512 inline void columnsBlock(const float* x, int64_t ldx, const void* w, int64_t ldw, int64_t j, int64_t cols,
                                        int64_t k0, int64_t k1, bool first, float* y, int64_t ldy) {
  constexpr int NV = 4;
  __mmask16 mk[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; v++) mk[v] = firstLanes(cols - 16 * v);
  __m512 acc[MB][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[i][v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mk[v], y + i * ldy + j + 16 * v);
  }
  for (int64_t l = k0; l < k1; l++) {
    __m512 wv[NV];
    // The row 8 ahead: 64 columns are 4 cache lines of f32, 2 of bf16/f16.
    constexpr int64_t perLine = T == DType::F32 ? 16 : 32;
#pragma GCC unroll 4
    for (int64_t q = 0; q < 64; q += perLine) {
      _mm_prefetch(static_cast<const char*>(w) + ((l + 8) * ldw + j + q) * (T == DType::F32 ? 4 : 2), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) wv[v] = load16AsF32<T>(w, l * ldw + j + 16 * v, mk[v]);
#pragma GCC unroll 8
    for (int i = 0; i < MB; i++) {
      __m512 xv = _mm512_set1_ps(x[i * ldx + l]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(xv, wv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) _mm512_mask_storeu_ps(y + i * ldy + j + 16 * v, mk[v], acc[i][v]);
  }
}

template <DType T>
GEMMKIT_AVX512 void gemvColumnsT(const float* x, int64_t ldx, int64_t m, const void* w, int64_t ldw, int64_t n0,
                                 int64_t n1, int64_t k0, int64_t k1, int64_t kBlock, float* y, int64_t ldy) {
  for (int64_t j = n0; j < n1; j += 64) {
    const int64_t cols = n1 - j < 64 ? n1 - j : 64;
    for (int64_t kb = k0; kb < k1; kb += kBlock) {
      const int64_t ke = kb + kBlock < k1 ? kb + kBlock : k1;
      const bool first = kb == k0;
      int64_t i = 0;
      for (; i + 6 <= m; i += 6) columnsBlock<T, 6>(x + i * ldx, ldx, w, ldw, j, cols, kb, ke, first, y + i * ldy, ldy);
      switch (m - i) {
        case 5: columnsBlock<T, 5>(x + i * ldx, ldx, w, ldw, j, cols, kb, ke, first, y + i * ldy, ldy); break;
        case 4: columnsBlock<T, 4>(x + i * ldx, ldx, w, ldw, j, cols, kb, ke, first, y + i * ldy, ldy); break;
        case 3: columnsBlock<T, 3>(x + i * ldx, ldx, w, ldw, j, cols, kb, ke, first, y + i * ldy, ldy); break;
        case 2: columnsBlock<T, 2>(x + i * ldx, ldx, w, ldw, j, cols, kb, ke, first, y + i * ldy, ldy); break;
        case 1: columnsBlock<T, 1>(x + i * ldx, ldx, w, ldw, j, cols, kb, ke, first, y + i * ldy, ldy); break;
      }
    }
  }
}

GEMMKIT_AVX512 void gemvColumnsAvx512(const float* x, int64_t ldx, int64_t m, const void* w, DType wt, int64_t ldw,
                                      int64_t n0, int64_t n1, int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy) {
  switch (wt) {
    case DType::F32: gemvColumnsT<DType::F32>(x, ldx, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
    case DType::BF16: gemvColumnsT<DType::BF16>(x, ldx, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
    case DType::F16: gemvColumnsT<DType::F16>(x, ldx, m, w, ldw, n0, n1, k0, k1, kc, y, ldy); break;
  }
}

}  // namespace

void addGemvAvx512Kernels(std::vector<GemvKernel>& out) {
  out.push_back({"gemv.avx512", Isa::Avx512, gemvDotAvx512, 16, DType::F32, gemvColumnsAvx512, 128});
  out.push_back({"gemv.avx512bf16", Isa::Avx512Bf16, gemvDotBf16Pairs, 32, DType::BF16, gemvColumnsAvx512, 192});
}

}  // namespace gemmkit

#else

namespace gemmkit {
void addGemvAvx512Kernels(std::vector<GemvKernel>&) {}
}  // namespace gemmkit

#endif
