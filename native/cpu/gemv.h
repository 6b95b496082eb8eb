// The weight-streaming family: C = act(alpha * op(A) op(B) + beta C + bias) reading B, the weight, in
// place once per call, without packing it. For decode (M = 1..8) it runs at memory speed; for x @ W^T up
// to M of about a hundred it saves the blocked frame's transposing pack of W on every call.
//   B stored [N, K] (transB, x @ W^T): "dot" kernels. Both operands are contiguous along K, so a register
//     block of MB rows of x times RB rows of W keeps MB*RB vector accumulators along K and reduces each
//     one horizontally at the end of a depth block (kc, chosen so the x block stays in L2 while the RB
//     rows of W are reused from L1 for every MB rows of x). Depth blocks are summed in order.
//   B stored [K, N]: rows of W streamed into vector accumulators across 64 columns.
// Kernels: gemv.scalar (portable loops), gemv.avx2 (AVX2+FMA, 8 lanes), gemv.avx512 (16 lanes, W widened
// from f32/bf16/f16 in registers) and gemv.avx512bf16 (bf16 x bf16 only: x stays bf16 and VDPBF16PS adds
// 32 k per instruction; its [K, N] case is gemv.avx512's). Threads split N; with ks > 1 K is also split
// into ks parts whose partial sums are added in part order. The depth block is fixed by the problem (M,
// K, dtypes) and the chunking of N by the config, so results never depend on the threads granted.
// No prepacked weights (the blocked family reads those).
#pragma once

#include <string>
#include <vector>

#include "../core/problem.h"
#include "cpu_config.h"
#include "micro_kernels.h"

namespace gemmkit {

// Dot kernels (W stored [N, K]): y[i*ldy + j] = sum over l in [k0, k1) of x(i, l) * W[j*ldw + l], for
// i < m and j in [n0, n1), formed depth block by depth block ([k0, k0+kc), [k0+kc, k0+2kc), ...), each
// block's sum added in order. k0 and kc are multiples of 32.
// x: the x panel, [ceil(K/L)][m][L] elements of the kernel's x dtype (L = its lanes): element (i, l) at
// (l/L)*m*L + i*L + l%L, zero past K. Each step of L k then reads one contiguous strip of the panel.
// W: the stored weight of dtype wt, [N, ldw]. y: f32.
using GemvDotFn = void (*)(const void* x, int64_t m, const void* w, DType wt, int64_t ldw, int64_t n0, int64_t n1,
                           int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy);

// Columns kernels (W stored [K, N]): y[i*ldy + j] = sum over l in [k0, k1) of x[i*ldx + l] * W[l*ldw + j],
// k ascending, with W in strips of kc rows (reused for every few rows of x). x: [m, ldx] f32 rows.
using GemvColumnsFn = void (*)(const float* x, int64_t ldx, int64_t m, const void* w, DType wt, int64_t ldw,
                               int64_t n0, int64_t n1, int64_t k0, int64_t k1, int64_t kc, float* y, int64_t ldy);

struct GemvKernel {
  std::string id;          // "gemv.<isa>"
  Isa isa;
  GemvDotFn dot;           // W stored [N, K]
  int dotLanes;            // L of the x panel
  DType dotX;              // dtype of the x panel: F32 (W of any dtype, widened), or BF16 (bf16 W only)
  GemvColumnsFn columns;   // W stored [K, N]
  // M up to this is the family's by default for x @ W^T with this kernel: below it the dot kernel beats the
  // blocked frame, which transposes and packs all of W on every call (measured on Zen 4, 2 threads).
  int64_t defaultMaxMTransB;
  // A kernel whose x panel is bf16 takes bf16 x bf16 problems only (rounding x to bf16 would lose precision).
  bool bf16Only() const { return dotX == DType::BF16; }
};

const std::vector<GemvKernel>& gemvKernels();
const GemvKernel* findGemvKernel(const std::string& id);
void addGemvAvx2Kernels(std::vector<GemvKernel>& out);    // gemv_avx2.cpp
void addGemvAvx512Kernels(std::vector<GemvKernel>& out);  // gemv_avx512.cpp

// M up to this is the GEMV family's by default when W is stored [K, N] (the blocked frame's packing is
// then a plain copy, worth it from here on).
constexpr int64_t kGemvMaxM = 8;
// N chunks handed to threads start at multiples of this.
constexpr int64_t kGemvColumnAlign = 64;

// The x panel of the dot kernels (layout above) for rows [0, m) and depth [0, k) of op(A) of one batch
// item a (of p's dtype, transpose and lda), in dtype xt (F32, or BF16 from a bf16 A), zero padded to a
// multiple of `lanes`.
void packGemvX(const Problem& p, const void* a, int64_t m, int64_t k, int lanes, DType xt, void* panel);

// The default depth block (CpuConfig::kc) of a kernel for a problem. Dot kernels: up to 8 rows of x (one
// pass over W) take long runs of W rows, shorter as the x strip grows (16384, 4096, 1024 for 1, 2-4 and
// 5-8 rows); more rows keep the x block within 512 KiB (L2) and a group of 4 W rows within 16 KiB (L1).
// Columns kernels: 256.
int gemvDepthBlock(const Problem& p, const GemvKernel& kernel);

Status runCpuGemv(const Problem& p, const CpuConfig& cfg, const GemvKernel& kernel, const Buffers& buf);

}  // namespace gemmkit
