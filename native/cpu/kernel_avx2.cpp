// AVX2 + FMA micro-kernels on f32 panels, for x86-64 CPUs without AVX-512. Register block MR x (8*NV):
// MR*NV ymm accumulators plus NV for B and one broadcast of A must fit the 16 ymm registers (6x16:
// 12+2+1). Rows past mr use a copy specialised for fewer rows; columns past nr use masked loads/stores.
// Compiled with a function-level target attribute, so the rest of the binary stays baseline x86-64.
#include "micro_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define GEMMKIT_AVX2 __attribute__((target("avx2,fma")))

namespace gemmkit {

namespace {

GEMMKIT_AVX2 inline __m256i columnMask(int nr) {
  // Lanes [0, nr) set: compare a lane index vector against nr.
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int MR, int NV, int ROWS>
GEMMKIT_AVX2 inline void tileAvx2(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int nr,
                                  float alpha, float beta) {
  constexpr int NR = 8 * NV;
  __m256 acc[ROWS][NV];
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++) {
    __m256 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) b[v] = _mm256_loadu_ps(Bp + k * NR + 8 * v);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; r++) {
      __m256 a = _mm256_broadcast_ss(Ap + k * MR + r);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++) {
    float* row = C + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
      int left = nr - 8 * v;
      if (left <= 0) break;
      __m256 out = _mm256_mul_ps(va, acc[r][v]);
      if (left >= 8) {
        if (beta != 0.0f) out = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row + 8 * v), out);
        _mm256_storeu_ps(row + 8 * v, out);
      } else {
        __m256i mask = columnMask(left);
        if (beta != 0.0f) out = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row + 8 * v, mask), out);
        _mm256_maskstore_ps(row + 8 * v, mask, out);
      }
    }
  }
}

template <int MR, int NV, int ROWS = MR>
GEMMKIT_AVX2 inline void tileRowsAvx2(int mr, int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                                      int nr, float alpha, float beta) {
  if constexpr (ROWS == 1) {
    tileAvx2<MR, NV, 1>(kc, Ap, Bp, C, ldc, nr, alpha, beta);
  } else {
    if (mr == ROWS) {
      tileAvx2<MR, NV, ROWS>(kc, Ap, Bp, C, ldc, nr, alpha, beta);
    } else {
      tileRowsAvx2<MR, NV, ROWS - 1>(mr, kc, Ap, Bp, C, ldc, nr, alpha, beta);
    }
  }
}

template <int MR, int NV>
GEMMKIT_AVX2 void microKernelAvx2(int64_t kc, const void* Ap, const void* Bp, float* C, int64_t ldc, int mr, int nr,
                                  float alpha, float beta) {
  tileRowsAvx2<MR, NV>(mr, kc, static_cast<const float*>(Ap), static_cast<const float*>(Bp), C, ldc, nr, alpha, beta);
}

}  // namespace

void addAvx2Kernels(std::vector<MicroKernel>& out) {
  out.push_back({"avx2.f32.6x16", Isa::Avx2, 6, 16, PanelFormat::F32, PanelFormat::F32, 1, microKernelAvx2<6, 2>});
}

}  // namespace gemmkit

#else

namespace gemmkit {
void addAvx2Kernels(std::vector<MicroKernel>&) {}
}  // namespace gemmkit

#endif
