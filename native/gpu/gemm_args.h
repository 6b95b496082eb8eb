// The arguments every GPU GEMM kernel receives by value: the Problem flattened to device pointers and
// 32/64-bit integers. Plain C++, shared by the host launchers and the kernels.
#pragma once

#include <cstdint>

#include "../core/activation.h"
#include "../core/dtype.h"

namespace gemmkit {

struct GemmArgs {
  const void* a = nullptr;   // A: batch x rowsA x lda (op(A): [m, k])
  const void* b = nullptr;   // B: batch x rowsB x ldb (op(B): [k, n])
  void* c = nullptr;         // C: batch x m x ldc, read when beta != 0
  const void* bias = nullptr;  // bias: [n] when hasBias
  float* workspace = nullptr;  // split-K partial sums: [batch * splitK][m][n] f32
  int m = 0, n = 0, k = 0;   // the host guarantees each is < 2^31 and every in-tile index fits int
  int batch = 1;             // batch items in this launch (the host splits larger batches)
  int splitK = 1;            // K ranges per tile (gridDim.z = batch * splitK)
  int group = 1;             // rasterisation group (tile rows walked together)
  int lda = 0, ldb = 0, ldc = 0;                  // row strides in elements, below 2^31 (the host checks)
  int64_t strideA = 0, strideB = 0, strideC = 0;  // batch strides in elements (0: broadcast)
  float alpha = 1.0f, beta = 0.0f;
  DType dtypeA = DType::F32, dtypeB = DType::F32, dtypeC = DType::F32, dtypeBias = DType::F32;
  Activation activation = Activation::None;
  bool transA = false, transB = false, hasBias = false;
  // 16-byte vector loads are legal: base address 16-byte aligned and every row start and batch stride
  // a multiple of 16 bytes. Kernels fall back to element loads otherwise (any lda works).
  bool vectorA = false, vectorB = false;
};

}  // namespace gemmkit
