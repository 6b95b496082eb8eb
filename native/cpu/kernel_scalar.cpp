// Scalar reference micro-kernels: plain C++ that builds on every architecture (the arm64 build runs
// only these). Register block 4x8; they are what the SIMD kernels are compared with in the tests.
#include "micro_kernels.h"

namespace gemmkit {

namespace {

template <int MR, int NR>
void microKernelScalar(int64_t kc, const void* ApIn, const void* BpIn, float* C, int64_t ldc, int mr, int nr,
                       float alpha, float beta) {
  const float* Ap = static_cast<const float*>(ApIn);  // [kc][MR]
  const float* Bp = static_cast<const float*>(BpIn);  // [kc][NR]
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; k++) {
    const float* a = Ap + k * MR;
    const float* b = Bp + k * NR;
    for (int r = 0; r < MR; r++) {
      for (int c = 0; c < NR; c++) acc[r][c] += a[r] * b[c];
    }
  }
  for (int r = 0; r < mr; r++) {
    float* row = C + r * ldc;
    for (int c = 0; c < nr; c++) {
      row[c] = beta == 0.0f ? alpha * acc[r][c] : alpha * acc[r][c] + beta * row[c];
    }
  }
}

}  // namespace

void addScalarKernels(std::vector<MicroKernel>& out) {
  out.push_back({"scalar.f32.4x8", Isa::Scalar, 4, 8, PanelFormat::F32, PanelFormat::F32, 1, microKernelScalar<4, 8>});
}

}  // namespace gemmkit
