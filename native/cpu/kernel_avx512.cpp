// AVX-512 micro-kernels on f32 panels. Register block MR x (16*NV): MR*NV zmm accumulators plus NV for B
// and one broadcast of A within the 32 zmm registers (14x32: 28+2+1; 6x64: 24+4+1). Rows past mr use a
// copy of the kernel specialised for fewer rows (no wasted FMAs on the M edge, which small-M calls hit);
// columns past nr are masked. The C tile is prefetched before the k loop so that its cache misses (C rows
// are far apart) overlap the FMAs instead of stalling the stores.
// Compiled with a function-level target attribute, so the rest of the binary stays baseline x86-64.
#include "micro_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 warns about the deliberately undefined registers inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "avx512_common.h"

#define GEMMKIT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

namespace gemmkit {

namespace {

template <int MR, int NV, int ROWS>
GEMMKIT_AVX512 inline void tileF32(int64_t kb, const float* Ap, const float* Bp, float* C, int64_t ldc, int nr,
                                   float alpha, float beta) {
  constexpr int NR = 16 * NV;
  prefetchTile<ROWS, NR>(C, ldc);
  __m512 acc[ROWS][NV];
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kb; k++) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_ps(Bp + k * NR + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; r++) {
      __m512 a = _mm512_set1_ps(Ap[k * MR + r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  storeTile<ROWS, NV>(acc, C, ldc, nr, alpha, beta);
}

template <int MR, int NV, int ROWS = MR>
GEMMKIT_AVX512 inline void tileRowsF32(int mr, int64_t kb, const float* Ap, const float* Bp, float* C, int64_t ldc,
                                       int nr, float alpha, float beta) {
  if constexpr (ROWS == 1) {
    tileF32<MR, NV, 1>(kb, Ap, Bp, C, ldc, nr, alpha, beta);
  } else {
    if (mr == ROWS) {
      tileF32<MR, NV, ROWS>(kb, Ap, Bp, C, ldc, nr, alpha, beta);
    } else {
      tileRowsF32<MR, NV, ROWS - 1>(mr, kb, Ap, Bp, C, ldc, nr, alpha, beta);
    }
  }
}

template <int MR, int NV>
GEMMKIT_AVX512 void microKernelAvx512(int64_t kb, const void* Ap, const void* Bp, float* C, int64_t ldc, int mr,
                                      int nr, float alpha, float beta) {
  tileRowsF32<MR, NV>(mr, kb, static_cast<const float*>(Ap), static_cast<const float*>(Bp), C, ldc, nr, alpha, beta);
}

}  // namespace

void addAvx512Kernels(std::vector<MicroKernel>& out) {
  out.push_back({"avx512.f32.14x32", Isa::Avx512, 14, 32, PanelFormat::F32, PanelFormat::F32, 1, microKernelAvx512<14, 2>});
  out.push_back({"avx512.f32.6x64", Isa::Avx512, 6, 64, PanelFormat::F32, PanelFormat::F32, 1, microKernelAvx512<6, 4>});
}

}  // namespace gemmkit

#else

namespace gemmkit {
void addAvx512Kernels(std::vector<MicroKernel>&) {}
}  // namespace gemmkit

#endif
