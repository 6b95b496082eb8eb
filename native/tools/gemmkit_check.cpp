// gemmkit-check: the engine's correctness check without Node. Runs every registered backend's
// available configurations (forced with small cache blocks so every loop wraps) against the float64
// reference at awkward sizes, all transposes and dtypes. Exit status 0 when everything agrees.
// Used by .ci/run on x86-64 and, cross-compiled, on arm64 under qemu (scalar kernel only there).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/reference_gemm.h"
#include "../cpu/cpu_backend.h"
#include "../cpu/micro_kernels.h"
#include "../cpu/system_blas.h"

using namespace gemmkit;

namespace {

struct Matrix {
  std::vector<uint16_t> storage;  // f32 data uses two slots per element
  void* data() { return storage.data(); }
};

Matrix randomMatrix(int64_t elements, DType t, std::mt19937& rng) {
  Matrix m;
  m.storage.resize(size_t(elements) * (t == DType::F32 ? 2 : 1) + 2);
  std::uniform_int_distribution<int> small(-3, 3);  // exact in every dtype; sums exact in f32
  for (int64_t i = 0; i < elements; i++) storeFromF32(m.data(), t, i, float(small(rng)));
  return m;
}

int failures = 0, checks = 0;

void checkOne(const Backend& be, const std::string& config, Problem p, std::mt19937& rng) {
  p.lda = p.colsA() > 0 ? p.colsA() : 1;
  p.ldb = p.colsB() > 0 ? p.colsB() : 1;
  p.ldc = p.n > 0 ? p.n : 1;
  p.strideA = p.rowsA() * p.lda;
  p.strideB = p.rowsB() * p.ldb;
  p.strideC = p.m * p.ldc;
  Matrix a = randomMatrix(p.batch * p.strideA, p.dtypeA, rng);
  Matrix b = randomMatrix(p.batch * p.strideB, p.dtypeB, rng);
  Matrix c0 = randomMatrix(p.batch * p.strideC, p.dtypeC, rng);
  Matrix bias = randomMatrix(p.n, p.dtypeBias, rng);
  Matrix got = c0, want = c0;
  std::vector<double> c64(size_t(p.batch * p.m * p.n) + 1);
  Buffers wantBuf{a.data(), b.data(), want.data(), bias.data()};
  referenceGemm(p, wantBuf, c64.data());
  Buffers gotBuf{a.data(), b.data(), got.data(), bias.data()};
  Status s = be.run(p, config, gotBuf);
  checks++;
  if (!s.isOk()) {
    failures++;
    std::printf("FAIL %s %s: %s\n", p.describe().c_str(), config.c_str(), s.message().c_str());
    return;
  }
  // Integer inputs: f32 results are exact; other outputs are exact up to their one rounding.
  double tol = p.dtypeC == DType::BF16 ? 0x1p-8 : p.dtypeC == DType::F16 ? 0x1p-11 : (p.activation == Activation::None ? 0.0 : 1e-6);
  double err = relativeError(p, got.data(), c64.data());
  if (!(err <= tol)) {
    failures++;
    std::printf("FAIL %s %s: relative error %.3g > %.3g\n", p.describe().c_str(), config.c_str(), err, tol);
  }
}

}  // namespace

int main() {
  registerCpuBackend();
  std::mt19937 rng(42);
  const int64_t sizes[][3] = {{1, 1, 1}, {7, 7, 7}, {45, 45, 45}, {77, 45, 129}, {127, 127, 127},
                              {5, 6, 700}, {64, 1, 100}, {1, 64, 100}, {0, 5, 3}, {4, 0, 3}, {3, 4, 0}};
  const DType dtypes[] = {DType::F32, DType::F16, DType::BF16};
  for (const Backend* be : allBackends()) {
    std::vector<std::string> configs;
    for (const MicroKernel& k : microKernels()) {
      if (!isaAvailable(k.isa)) continue;
      configs.push_back("cpu." + k.id + ".mc" + std::to_string(2 * k.mr) + ".kc13.nc" + std::to_string(2 * k.nr) + ".t2");
    }
    Problem probe;
    configs.push_back(be->heuristic(probe));
    for (const SystemBlas& blas : systemBlasLibraries()) configs.push_back(blas.config);  // f32 problems only
    for (const std::string& config : configs) {
      for (const auto& s : sizes) {
        for (int t = 0; t < 4; t++) {
          for (DType da : dtypes) {
            Problem p;
            p.m = s[0];
            p.n = s[1];
            p.k = s[2];
            p.transA = t & 1;
            p.transB = t & 2;
            p.dtypeA = da;
            p.dtypeB = dtypes[(int(da) + t) % 3];
            p.dtypeC = dtypes[(int(da) + 2 * t) % 3];
            p.batch = t == 3 ? 2 : 1;
            p.hasBias = t >= 2;
            p.activation = t == 2 ? Activation::Relu : Activation::None;
            p.beta = t == 1 ? 2.0f : 0.0f;
            bool allF32 = p.dtypeA == DType::F32 && p.dtypeB == DType::F32 && p.dtypeC == DType::F32;
            if (isSystemBlasConfig(config) && !allF32) continue;
            checkOne(*be, config, p, rng);
          }
        }
      }
    }
    std::printf("%s: %zu configs checked\n", be->name(), configs.size());
  }
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
