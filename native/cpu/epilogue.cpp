#include "epilogue.h"

#include "cpu_features.h"

namespace gemmkit {

bool finalizeRowsAvx512(const Problem& p, const float* acc, int64_t ldacc, void* c, const float* bias, int64_t m0,
                        int64_t m1, int64_t jc, int64_t nb);  // epilogue_avx512.cpp
bool storeRowAvx512(DType t, const float* row, int64_t n, void* out);

std::vector<float> biasAsF32(const Problem& p, const void* bias) {
  std::vector<float> out;
  if (!p.hasBias) return out;
  out.resize(size_t(p.n));
  for (int64_t j = 0; j < p.n; j++) out[size_t(j)] = loadAsF32(bias, p.dtypeBias, j);
  return out;
}

void finalizeRowsPortable(const Problem& p, const float* acc, int64_t ldacc, void* c, const float* bias, int64_t m0,
                          int64_t m1, int64_t jc, int64_t nb) {
  const bool outF32 = p.dtypeC == DType::F32;
  if (outF32 && !bias && p.activation == Activation::None) return;
  for (int64_t i = m0; i < m1; i++) {
    const float* arow = acc + (i - m0) * ldacc;
    const int64_t crow = i * p.ldc + jc;
    for (int64_t j = 0; j < nb; j++) {
      float v = arow[j];
      if (!outF32 && p.beta != 0.0f) v += p.beta * loadAsF32(c, p.dtypeC, crow + j);
      if (bias) v += bias[jc + j];
      storeFromF32(c, p.dtypeC, crow + j, applyActivation(p.activation, v));
    }
  }
}

void finalizeRows(const Problem& p, const float* acc, int64_t ldacc, void* c, const float* bias, int64_t m0,
                  int64_t m1, int64_t jc, int64_t nb) {
  if (p.dtypeC == DType::F32 && !bias && p.activation == Activation::None) return;
#if defined(__x86_64__)
  static const bool avx512 = cpuFeatures().avx512;
  if (avx512 && finalizeRowsAvx512(p, acc, ldacc, c, bias, m0, m1, jc, nb)) return;
#endif
  finalizeRowsPortable(p, acc, ldacc, c, bias, m0, m1, jc, nb);
}

void storeRowFromF32(DType t, const float* row, int64_t n, void* out) {
#if defined(__x86_64__)
  static const bool avx512 = cpuFeatures().avx512;
  if (avx512 && storeRowAvx512(t, row, n, out)) return;
#endif
  for (int64_t j = 0; j < n; j++) storeFromF32(out, t, j, row[j]);
}

#if !defined(__x86_64__)
bool finalizeRowsAvx512(const Problem&, const float*, int64_t, void*, const float*, int64_t, int64_t, int64_t, int64_t) {
  return false;
}
bool storeRowAvx512(DType, const float*, int64_t, void*) { return false; }
#endif

}  // namespace gemmkit
