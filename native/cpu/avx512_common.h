// AVX-512 pieces shared by the CPU kernel files (micro-kernels, GEMV, packing, finalize): lane masks, loads
// widened exactly to f32, and the C-tile prefetch and store of the blocked micro-kernels. Every function
// carries the AVX-512 F/BW/VL/DQ target, a subset of each including file's own, and is local to the file
// that includes it, so the compiler inlines it as it did the files' own copies. x86-64 only.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

#include "../core/dtype.h"

#define GEMMKIT_AVX512_COMMON __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) inline
// For what takes a kernel's accumulators by reference: inlined, they stay in registers.
#define GEMMKIT_AVX512_COMMON_INLINED __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"), always_inline)) inline

namespace gemmkit {
namespace {

// The first n of 16 lanes (n clamped to [0, 16]).
GEMMKIT_AVX512_COMMON __mmask16 firstLanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

// Elements [i, i+16) of base, of dtype T (lanes outside m read as zero, their memory untouched), as f32:
// bf16 by a 16-bit shift, f16 by VCVTPH2PS (both exact).
template <DType T>
GEMMKIT_AVX512_COMMON __m512 load16AsF32(const void* base, int64_t i, __mmask16 m) {
  if constexpr (T == DType::F32) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + i);
  } else if constexpr (T == DType::BF16) {
    __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + i));
  }
}

// Micro-kernel C tile (micro_kernels.h contract), rows [0, ROWS) x NR columns at C: prefetched before the
// k loop, so that its cache misses (C rows are far apart) overlap the multiply-adds instead of the stores.
template <int ROWS, int NR>
GEMMKIT_AVX512_COMMON_INLINED void prefetchTile(const float* C, int64_t ldc) {
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++) {
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + NR - 1), _MM_HINT_T0);
  }
}

// The end of a micro-kernel: C = alpha * acc + beta * C on rows [0, ROWS) and columns [0, nr) of the tile
// (16 columns per vector of acc; beta == 0 does not read C).
template <int ROWS, int NV>
GEMMKIT_AVX512_COMMON_INLINED void storeTile(__m512 (&acc)[ROWS][NV], float* C, int64_t ldc, int nr, float alpha,
                                             float beta) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++) {
    float* row = C + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
      int left = nr - 16 * v;
      if (left <= 0) break;
      // left > 0 here, so no clamp (firstLanes' would only make the kernels' code longer).
      __mmask16 mask = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
      __m512 out = _mm512_mul_ps(va, acc[r][v]);
      if (beta != 0.0f) out = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, row + 16 * v), out);
      _mm512_mask_storeu_ps(row + 16 * v, mask, out);
    }
  }
}

}  // namespace
}  // namespace gemmkit

#endif
