// The weight-streaming family for small M (decode): C = act(alpha * op(A) op(B) + beta C + bias) reading
// B, the weight, in place once per call at memory speed, without packing it. op(A) is converted once to
// f32 rows (it is small); B stays in its dtype and is widened in registers.
//   B stored [N, K] (transB, x @ W^T): dot products along the contiguous rows of W, 4 rows at a time.
//   B stored [K, N]: rows of W streamed into 64-column f32 accumulators.
// gemv.avx512bf16 (bf16 x bf16 only) keeps x in bf16 and takes dot products of W's rows with VDPBF16PS,
// 32 k per instruction (its [K, N] case is gemv.avx512's). Threads split N; with ks > 1 K is also split into ks parts whose partial sums are added in part order,
// so results depend on the config, never on the threads granted. No prepacked weights (the blocked
// family reads those).
#pragma once

#include <string>
#include <vector>

#include "../core/problem.h"
#include "cpu_config.h"
#include "micro_kernels.h"

namespace gemmkit {

// y[i*ldy + j] = sum over l in [k0, k1) of x[i*ldx + l] * op(W)(l, j), for i < m and j in [n0, n1).
// x: [m, ldx] f32. W: the stored weight of dtype wt, [N, ldw] when transposed else [K, ldw].
using GemvFn = void (*)(const float* x, int64_t ldx, int64_t m, const void* w, DType wt, int64_t ldw, int64_t n0,
                        int64_t n1, int64_t k0, int64_t k1, float* y, int64_t ldy);

// The same as GemvFn with x and W both bf16 ([m, ldx] and [N, ldw]), for W stored [N, K].
using GemvBf16Fn = void (*)(const uint16_t* x, int64_t ldx, int64_t m, const uint16_t* w, int64_t ldw, int64_t n0,
                            int64_t n1, int64_t k0, int64_t k1, float* y, int64_t ldy);

struct GemvKernel {
  std::string id;   // "gemv.<isa>"
  Isa isa;
  GemvFn rows;      // W stored [N, K]: dot products along rows (null when rowsBf16 is used instead)
  GemvFn columns;   // W stored [K, N]: rows of W streamed across columns
  GemvBf16Fn rowsBf16 = nullptr;  // when set: the kernel takes bf16 x bf16 problems only
  bool bf16Only() const { return rowsBf16 != nullptr; }
};

const std::vector<GemvKernel>& gemvKernels();
const GemvKernel* findGemvKernel(const std::string& id);
void addGemvAvx512Kernels(std::vector<GemvKernel>& out);  // gemv_avx512.cpp

// M up to this is the GEMV family's by default (the blocked family's packing is not worth it).
constexpr int64_t kGemvMaxM = 8;

Status runCpuGemv(const Problem& p, const CpuConfig& cfg, const GemvKernel& kernel, const Buffers& buf);

}  // namespace gemmkit
