// A vendor BLAS as a source of GEMM candidates next to our own kernels (cuBLASLt on NVIDIA; hipBLASLt
// and rocBLAS on AMD), Gradlib-style: the tuner times its algorithms and records the winner under a
// stable name (library, version, algorithm description, never a bare index). Built only where the
// build finds the library; without one the backend runs its own kernels alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/problem.h"
#include "../core/status.h"
#include "gpu_runtime.h"

namespace gemmkit {

// Row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T that BLAS libraries compute:
// their first operand is our B, their second our A, and M and N swap. Shapes as the library sees
// them (column-major, before its transpose flag).
struct ColumnMajorGemm {
  int64_t m = 0, n = 0, k = 0;           // the library's M (our N), N (our M), K
  bool transFirst = false;               // our B stored [N][K] (a Linear weight): the library's op(A) = T
  int64_t firstRows = 0, firstCols = 0;  // our B's memory as a column-major matrix
  bool transSecond = false;              // our A stored [K][M]
  int64_t secondRows = 0, secondCols = 0;
};

inline ColumnMajorGemm columnMajorGemm(const Problem& p) {
  ColumnMajorGemm g;
  g.m = p.n;
  g.n = p.m;
  g.k = p.k;
  // Row-major [K][N] reads, column-major, as N x K: the library's A without a transpose.
  g.transFirst = p.transB;
  g.firstRows = p.transB ? p.k : p.n;
  g.firstCols = p.transB ? p.n : p.k;
  g.transSecond = p.transA;
  g.secondRows = p.transA ? p.m : p.k;
  g.secondCols = p.transA ? p.k : p.m;
  return g;
}

// What a BLASLt library (cuBLASLt, hipBLASLt: f32 compute, a bias and ReLU epilogue, 32-bit sizes)
// computes exactly as gemmkit defines it; `library` names it in the reasons why not.
inline Status blasLtTakes(const Problem& p, const std::string& library) {
  if (p.dtypeA != p.dtypeB) return unsupported(library + " candidates need A and B of one dtype; the problem is " + p.describe());
  if (p.dtypeC != DType::F32 && p.dtypeC != p.dtypeA) {
    return unsupported(library + " candidates write C in f32 or the inputs' dtype; the problem is " + p.describe());
  }
  if (p.activation != Activation::None && p.activation != Activation::Relu) {
    return unsupported(library + " has no " + activationName(p.activation) + " matching gemmkit's");
  }
  if (p.hasBias && p.dtypeBias != p.dtypeC) return unsupported(library + " candidates need the bias in C's dtype");
  if (p.m > 2147483647 || p.n > 2147483647 || p.k > 2147483647 || p.batch > 2147483647) {
    return unsupported("problem too large for " + library + "'s 32-bit sizes");
  }
  return Status::ok();
}

class VendorLibrary {
 public:
  virtual ~VendorLibrary() = default;
  // The first field of every config name this library owns ("cublaslt", "hipblaslt", "rocblas").
  virtual const char* prefix() const = 0;
  virtual std::string version() const = 0;
  // The version as one name field: "v13_0_1" ('.', '-' and ' ' become '_').
  std::string versionField() const {
    std::string v = "v" + version();
    for (char& ch : v) ch = (ch == '.' || ch == '-' || ch == ' ') ? '_' : ch;
    return v;
  }
  // Names of the algorithms worth timing for `p` (may be empty: the library does not do this problem).
  virtual std::vector<std::string> candidates(const Problem& p, const GpuDevice& d) const = 0;
  // Ok when `name` is one of this library's algorithms that runs `p` here, else why not.
  virtual Status supports(const Problem& p, const std::string& name, const GpuDevice& d) const = 0;
  // Queues the GEMM on `stream` (the caller holds the device's lane and synchronises).
  virtual Status run(const Problem& p, const std::string& name, const Buffers& buf, const GpuDevice& d, void* stream) const = 0;
};

}  // namespace gemmkit
