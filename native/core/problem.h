// The one description of a GEMM that every layer of the engine takes (DESIGN.md seam 1):
//   C[b] = act( alpha * op(A[b]) * op(B[b]) + beta * C[b] + bias )      for b in [0, batch)
// Row-major throughout. op(X) is X or X^T. Accumulation is always f32.
#pragma once

#include <cstdint>
#include <string>

#include "activation.h"
#include "dtype.h"
#include "status.h"

namespace gemmkit {

struct Problem {
  int64_t m = 0, n = 0, k = 0;  // op(A): [m, k], op(B): [k, n], C: [m, n]
  int64_t batch = 1;            // number of independent GEMMs
  bool transA = false;          // A stored as [k, m] (lda >= m) instead of [m, k] (lda >= k)
  bool transB = false;          // B stored as [n, k] (ldb >= k) instead of [k, n] (ldb >= n)
  int64_t lda = 0, ldb = 0, ldc = 0;                 // row strides in elements
  int64_t strideA = 0, strideB = 0, strideC = 0;     // batch strides in elements (0 = broadcast)
  DType dtypeA = DType::F32, dtypeB = DType::F32, dtypeC = DType::F32;
  float alpha = 1.0f;
  float beta = 0.0f;            // 0: C is written without being read
  bool hasBias = false;         // bias: [n], added after alpha/beta, before the activation
  DType dtypeBias = DType::F32;
  Activation activation = Activation::None;
  // Empty when B is a plain matrix. Otherwise B is a prepacked weight (Buffers.b points to the backend's
  // packed object) and this names its layout, e.g. "avx512.f32.14x32.kc384" on the CPU: the layout fixes
  // the kernel and depth block of every config that can run the problem.
  std::string packedB;
  int device = 0;               // which device of the backend runs it (GPU index; the CPU has one)

  double flops() const { return 2.0 * double(m) * double(n) * double(k) * double(batch); }
  int64_t rowsA() const { return transA ? k : m; }   // stored shape of A
  int64_t colsA() const { return transA ? m : k; }
  int64_t rowsB() const { return transB ? n : k; }   // stored shape of B
  int64_t colsB() const { return transB ? k : n; }
  std::string describe() const;  // "77x45x129 f32*bf16->f32 nt relu bias" for messages and logs
};

// Pointers for one call; the problem's strides say how they are walked.
struct Buffers {
  const void* a = nullptr;     // A: batch x rowsA() x lda
  const void* b = nullptr;     // B: batch x rowsB() x ldb, or the backend's prepacked weight (packedB)
  void* c = nullptr;           // C: batch x m x ldc, read when beta != 0
  const void* bias = nullptr;  // bias: [n] when hasBias
};

// Checks the invariants every backend relies on (dims >= 0, leading dimensions large enough, strides
// consistent). The TypeScript layer checks user input first; this guards the C++ entry points.
Status checkProblem(const Problem& p);

}  // namespace gemmkit
