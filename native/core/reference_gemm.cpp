#include "reference_gemm.h"

#include <cmath>

namespace gemmkit {

void referenceGemm(const Problem& p, const Buffers& buf, double* c64, double* scale64) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;  // O(1) for an empty C, however large the other dimensions
  for (int64_t b = 0; b < p.batch; b++) {
    const int64_t offA = b * p.strideA, offB = b * p.strideB, offC = b * p.strideC;
    for (int64_t i = 0; i < p.m; i++) {
      for (int64_t j = 0; j < p.n; j++) {
        double acc = 0.0, squares = 0.0;
        for (int64_t l = 0; l < p.k; l++) {
          int64_t ia = p.transA ? l * p.lda + i : i * p.lda + l;
          int64_t ib = p.transB ? j * p.ldb + l : l * p.ldb + j;
          double t = double(loadAsF32(buf.a, p.dtypeA, offA + ia)) * double(loadAsF32(buf.b, p.dtypeB, offB + ib));
          acc += t;
          squares += t * t;
        }
        double v = double(p.alpha) * acc;
        squares *= double(p.alpha) * double(p.alpha);
        int64_t ic = offC + i * p.ldc + j;
        if (p.beta != 0.0f) {
          double t = double(p.beta) * double(loadAsF32(buf.c, p.dtypeC, ic));
          v += t;
          squares += t * t;
        }
        if (p.hasBias) {
          double t = double(loadAsF32(buf.bias, p.dtypeBias, j));
          v += t;
          squares += t * t;
        }
        v = applyActivation(p.activation, v);
        if (c64) c64[(b * p.m + i) * p.n + j] = v;
        if (scale64) scale64[(b * p.m + i) * p.n + j] = std::sqrt(squares);
        storeFromF32(buf.c, p.dtypeC, ic, float(v));
      }
    }
  }
}

double relativeError(const Problem& p, const void* c, const double* c64) {
  double worst = 0.0;
  if (p.batch == 0 || p.m == 0 || p.n == 0) return worst;
  for (int64_t b = 0; b < p.batch; b++) {
    for (int64_t i = 0; i < p.m; i++) {
      for (int64_t j = 0; j < p.n; j++) {
        double want = c64[(b * p.m + i) * p.n + j];
        double got = loadAsF32(c, p.dtypeC, b * p.strideC + i * p.ldc + j);
        if (std::isnan(want) || std::isnan(got)) {
          if (std::isnan(want) != std::isnan(got)) return INFINITY;
          continue;
        }
        if (std::isinf(want) || std::isinf(got)) {
          if (want != got) return INFINITY;
          continue;
        }
        double e = std::fabs(got - want) / (1.0 + std::fabs(want));
        if (e > worst) worst = e;
      }
    }
  }
  return worst;
}

}  // namespace gemmkit
