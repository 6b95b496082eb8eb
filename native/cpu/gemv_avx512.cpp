// AVX-512 GEMV kernels (see gemv.h). The weight is read once per call and widened in registers: f32 as
// is, bf16 by a 16-bit shift (exact), f16 by VCVTPH2PS (exact). Software prefetch runs ahead of every
// weight row stream. Rows kernel: 4 weight rows x up to 4 rows of x per pass (16 zmm accumulators,
// reduced at the end); columns kernel: 64 columns x up to 6 rows of x (24 accumulators), K in blocks
// of 256 so the column strip being reused for the next rows of x stays in L1/L2.
#include "gemv.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 warns about the deliberately undefined registers inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#define GEMMKIT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

namespace gemmkit {

namespace {

GEMMKIT_AVX512 inline __mmask16 firstLanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

template <DType T>
GEMMKIT_AVX512 inline __m512 loadW(const void* base, int64_t i, __mmask16 m) {
  if constexpr (T == DType::F32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + i);
  } else if constexpr (T == DType::BF16) {
    __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + i));
  }
}

template <DType T>
GEMMKIT_AVX512 inline void prefetchW(const void* base, int64_t i) {
  constexpr int64_t size = T == DType::F32 ? 4 : 2;
  _mm_prefetch(static_cast<const char*>(base) + (i + 1024 / size) * size, _MM_HINT_T0);
}

// MB rows of x times RB rows of W over [k0, k1).
template <DType T, int MB, int RB>
GEMMKIT_AVX512 inline void rowsBlock(const float* x, int64_t ldx, const void* w, int64_t ldw, int64_t j, int64_t k0,
                                     int64_t k1, float* y, int64_t ldy) {
  __m512 acc[MB][RB];
#pragma GCC unroll 4
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[i][r] = _mm512_setzero_ps();
  }
  for (int64_t l = k0; l < k1; l += 16) {
    const __mmask16 m = firstLanes(k1 - l);
    __m512 wv[RB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
      prefetchW<T>(w, (j + r) * ldw + l);
      wv[r] = loadW<T>(w, (j + r) * ldw + l, m);
    }
#pragma GCC unroll 4
    for (int i = 0; i < MB; i++) {
      __m512 xv = _mm512_maskz_loadu_ps(m, x + i * ldx + l);
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) acc[i][r] = _mm512_fmadd_ps(xv, wv[r], acc[i][r]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) y[i * ldy + j + r] = _mm512_reduce_add_ps(acc[i][r]);
  }
}

template <DType T, int RB>
GEMMKIT_AVX512 inline void rowsAllX(const float* x, int64_t ldx, int64_t m, const void* w, int64_t ldw, int64_t j,
                                    int64_t k0, int64_t k1, float* y, int64_t ldy) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) rowsBlock<T, 4, RB>(x + i * ldx, ldx, w, ldw, j, k0, k1, y + i * ldy, ldy);
  switch (m - i) {
    case 3: rowsBlock<T, 3, RB>(x + i * ldx, ldx, w, ldw, j, k0, k1, y + i * ldy, ldy); break;
    case 2: rowsBlock<T, 2, RB>(x + i * ldx, ldx, w, ldw, j, k0, k1, y + i * ldy, ldy); break;
    case 1: rowsBlock<T, 1, RB>(x + i * ldx, ldx, w, ldw, j, k0, k1, y + i * ldy, ldy); break;
  }
}

template <DType T>
GEMMKIT_AVX512 void gemvRowsT(const float* x, int64_t ldx, int64_t m, const void* w, int64_t ldw, int64_t n0,
                              int64_t n1, int64_t k0, int64_t k1, float* y, int64_t ldy) {
  int64_t j = n0;
  for (; j + 4 <= n1; j += 4) rowsAllX<T, 4>(x, ldx, m, w, ldw, j, k0, k1, y, ldy);
  for (; j < n1; j++) rowsAllX<T, 1>(x, ldx, m, w, ldw, j, k0, k1, y, ldy);
}

GEMMKIT_AVX512 void gemvRowsAvx512(const float* x, int64_t ldx, int64_t m, const void* w, DType wt, int64_t ldw,
                                   int64_t n0, int64_t n1, int64_t k0, int64_t k1, float* y, int64_t ldy) {
  switch (wt) {
    case DType::F32: gemvRowsT<DType::F32>(x, ldx, m, w, ldw, n0, n1, k0, k1, y, ldy); break;
    case DType::BF16: gemvRowsT<DType::BF16>(x, ldx, m, w, ldw, n0, n1, k0, k1, y, ldy); break;
    case DType::F16: gemvRowsT<DType::F16>(x, ldx, m, w, ldw, n0, n1, k0, k1, y, ldy); break;
  }
}

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
    for (int v = 0; v < NV; v++) wv[v] = loadW<T>(w, l * ldw + j + 16 * v, mk[v]);
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
                                 int64_t n1, int64_t k0, int64_t k1, float* y, int64_t ldy) {
  constexpr int64_t kBlock = 256;
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
                                      int64_t n0, int64_t n1, int64_t k0, int64_t k1, float* y, int64_t ldy) {
  switch (wt) {
    case DType::F32: gemvColumnsT<DType::F32>(x, ldx, m, w, ldw, n0, n1, k0, k1, y, ldy); break;
    case DType::BF16: gemvColumnsT<DType::BF16>(x, ldx, m, w, ldw, n0, n1, k0, k1, y, ldy); break;
    case DType::F16: gemvColumnsT<DType::F16>(x, ldx, m, w, ldw, n0, n1, k0, k1, y, ldy); break;
  }
}

#define GEMMKIT_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// MB rows of bf16 x times RB rows of bf16 W over [k0, k1): VDPBF16PS adds 16 pairs of products per
// instruction (the tail is masked to zero, which adds nothing).
template <int MB, int RB>
GEMMKIT_AVX512BF16 inline void rowsBlockBf16(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t j,
                                             int64_t k0, int64_t k1, float* y, int64_t ldy) {
  __m512 acc[MB][RB];
#pragma GCC unroll 4
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) acc[i][r] = _mm512_setzero_ps();
  }
  for (int64_t l = k0; l < k1; l += 32) {
    const __mmask32 m = k1 - l >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << (k1 - l)) - 1u);
    __m512bh wv[RB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
      _mm_prefetch(reinterpret_cast<const char*>(w + (j + r) * ldw + l + 512), _MM_HINT_T0);
      wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + (j + r) * ldw + l);
    }
#pragma GCC unroll 4
    for (int i = 0; i < MB; i++) {
      __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + i * ldx + l);
#pragma GCC unroll 4
      for (int r = 0; r < RB; r++) acc[i][r] = _mm512_dpbf16_ps(acc[i][r], xv, wv[r]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MB; i++) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) y[i * ldy + j + r] = _mm512_reduce_add_ps(acc[i][r]);
  }
}

template <int RB>
GEMMKIT_AVX512BF16 inline void rowsAllXBf16(const uint16_t* x, int64_t ldx, int64_t m, const uint16_t* w, int64_t ldw,
                                            int64_t j, int64_t k0, int64_t k1, float* y, int64_t ldy) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) rowsBlockBf16<4, RB>(x + i * ldx, ldx, w, ldw, j, k0, k1, y + i * ldy, ldy);
  switch (m - i) {
    case 3: rowsBlockBf16<3, RB>(x + i * ldx, ldx, w, ldw, j, k0, k1, y + i * ldy, ldy); break;
    case 2: rowsBlockBf16<2, RB>(x + i * ldx, ldx, w, ldw, j, k0, k1, y + i * ldy, ldy); break;
    case 1: rowsBlockBf16<1, RB>(x + i * ldx, ldx, w, ldw, j, k0, k1, y + i * ldy, ldy); break;
  }
}

GEMMKIT_AVX512BF16 void gemvRowsBf16Pairs(const uint16_t* x, int64_t ldx, int64_t m, const uint16_t* w, int64_t ldw,
                                          int64_t n0, int64_t n1, int64_t k0, int64_t k1, float* y, int64_t ldy) {
  int64_t j = n0;
  for (; j + 4 <= n1; j += 4) rowsAllXBf16<4>(x, ldx, m, w, ldw, j, k0, k1, y, ldy);
  for (; j < n1; j++) rowsAllXBf16<1>(x, ldx, m, w, ldw, j, k0, k1, y, ldy);
}

}  // namespace

void addGemvAvx512Kernels(std::vector<GemvKernel>& out) {
  out.push_back({"gemv.avx512", Isa::Avx512, gemvRowsAvx512, gemvColumnsAvx512});
  out.push_back({"gemv.avx512bf16", Isa::Avx512Bf16, nullptr, gemvColumnsAvx512, gemvRowsBf16Pairs});
}

}  // namespace gemmkit

#else

namespace gemmkit {
void addGemvAvx512Kernels(std::vector<GemvKernel>&) {}
}  // namespace gemmkit

#endif
