// What the Node-free check drivers (gemmkit-check, gemmkit-gpu-check, gemmkit-gpu-tables) share: the
// count of checks and failures with the FAIL line each failure prints, host matrices of small random
// integers, and the comparison of a result with the float64 reference.
#pragma once

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "../core/problem.h"
#include "../core/reference_gemm.h"
#include "../core/status.h"

namespace gemmkit {

inline int failures = 0, checks = 0;

inline void fail(const std::string& what) {
  failures++;
  std::printf("FAIL %s\n", what.c_str());
}

inline void expect(bool ok, const std::string& what) {
  checks++;
  if (!ok) fail(what);
}

struct HostMatrix {
  std::vector<uint16_t> storage;  // f32 data takes two slots per element
  void* data() { return storage.data(); }
};

// Elements drawn from -3..3: exact in every dtype, and their sums exact in f32.
inline HostMatrix randomMatrix(int64_t elements, DType t, std::mt19937& rng) {
  HostMatrix m;
  m.storage.resize(size_t(elements) * (t == DType::F32 ? 2 : 1) + 2);
  std::uniform_int_distribution<int> small(-3, 3);
  for (int64_t i = 0; i < elements; i++) storeFromF32(m.data(), t, i, float(small(rng)));
  return m;
}

// Counts one check of `got` (C as the run `s` left it) against the reference's unrounded c64. With
// randomMatrix inputs f32 results are exact (gelu/silu within 1e-6) and f16/bf16 ones exact up to
// their one rounding. A failure prints `label` with the status or the error.
inline bool expectReference(const Problem& p, const std::string& label, const Status& s, const void* got, const double* c64) {
  checks++;
  if (!s.isOk()) {
    fail(label + ": " + s.message());
    return false;
  }
  const bool smooth = p.activation == Activation::Gelu || p.activation == Activation::Silu;
  const double tol = p.dtypeC == DType::BF16 ? 0x1p-8 : p.dtypeC == DType::F16 ? 0x1p-11 : smooth ? 1e-6 : 0.0;
  const double err = relativeError(p, got, c64);
  if (!(err <= tol)) {
    char why[64];
    std::snprintf(why, sizeof why, ": relative error %.3g > %.3g", err, tol);
    fail(label + why);
    return false;
  }
  return true;
}

}  // namespace gemmkit
