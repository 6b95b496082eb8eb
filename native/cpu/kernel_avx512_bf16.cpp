// AVX512-BF16 micro-kernels: A and B packed as bf16 pairs along k (PanelFormat::Bf16Pairs, the VNNI
// layout), one VDPBF16PS per accumulator and k pair, so twice the f32 kernel's multiply-adds per
// instruction. Register block as the f32 kernel (14x32: 28 zmm accumulators + 2 B + 1 broadcast A pair).
// Products of two bf16 are exact in f32; each VDPBF16PS adds the pair's two products into the f32
// accumulator (inputs and outputs that are f32 denormals are flushed to zero by the instruction).
// Offered only when both operands are bf16 (rounding f32/f16 inputs to bf16 would lose precision).
#include "micro_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 warns about the deliberately undefined registers inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "avx512_common.h"

#define GEMMKIT_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

namespace gemmkit {

namespace {

template <int MR, int NV, int ROWS>
GEMMKIT_AVX512BF16 inline void tileBf16(int64_t kb, const uint32_t* Ap, const uint16_t* Bp, float* C, int64_t ldc,
                                        int nr, float alpha, float beta) {
  constexpr int NR = 16 * NV;
  prefetchTile<ROWS, NR>(C, ldc);
  __m512 acc[ROWS][NV];
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
  }
  const int64_t pairs = (kb + 1) / 2;
  for (int64_t kp = 0; kp < pairs; kp++) {
    __m512bh b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) b[v] = (__m512bh)_mm512_loadu_si512(Bp + kp * 2 * NR + 32 * v);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; r++) {
      __m512bh a = (__m512bh)_mm512_set1_epi32(int(Ap[kp * MR + r]));
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
    }
  }
  storeTile<ROWS, NV>(acc, C, ldc, nr, alpha, beta);
}

template <int MR, int NV, int ROWS = MR>
GEMMKIT_AVX512BF16 inline void tileRowsBf16(int mr, int64_t kb, const uint32_t* Ap, const uint16_t* Bp, float* C,
                                            int64_t ldc, int nr, float alpha, float beta) {
  if constexpr (ROWS == 1) {
    tileBf16<MR, NV, 1>(kb, Ap, Bp, C, ldc, nr, alpha, beta);
  } else {
    if (mr == ROWS) {
      tileBf16<MR, NV, ROWS>(kb, Ap, Bp, C, ldc, nr, alpha, beta);
    } else {
      tileRowsBf16<MR, NV, ROWS - 1>(mr, kb, Ap, Bp, C, ldc, nr, alpha, beta);
    }
  }
}

// Ap: [kb/2][MR] pairs (read as u32), Bp: [kb/2][NR][2] bf16.
template <int MR, int NV>
GEMMKIT_AVX512BF16 void microKernelAvx512Bf16(int64_t kb, const void* Ap, const void* Bp, float* C, int64_t ldc,
                                              int mr, int nr, float alpha, float beta) {
  tileRowsBf16<MR, NV>(mr, kb, static_cast<const uint32_t*>(Ap), static_cast<const uint16_t*>(Bp), C, ldc, nr, alpha,
                       beta);
}

}  // namespace

void addAvx512Bf16Kernels(std::vector<MicroKernel>& out) {
  out.push_back({"avx512bf16.bf16.14x32", Isa::Avx512Bf16, 14, 32, PanelFormat::Bf16Pairs, PanelFormat::Bf16Pairs, 2,
                 microKernelAvx512Bf16<14, 2>});
  out.push_back({"avx512bf16.bf16.6x64", Isa::Avx512Bf16, 6, 64, PanelFormat::Bf16Pairs, PanelFormat::Bf16Pairs, 2,
                 microKernelAvx512Bf16<6, 4>});
}

}  // namespace gemmkit

#else

namespace gemmkit {
void addAvx512Bf16Kernels(std::vector<MicroKernel>&) {}
}  // namespace gemmkit

#endif
