// The ops beyond GEMM (native/core/ops.h) as GPU kernels, written once for CUDA and HIP. All arithmetic
// is f32; 16-bit outputs are rounded once, to nearest even, with dtype.h's scalar conversions.
//
// - elementwiseKernel<KIND>: Embedding, Swiglu, Add, Activate, Cast. Each thread converts chunks of 8
//   consecutive elements of a row: one (16-bit) or two (f32) 16-byte loads and stores where the chunk
//   is whole and 16-byte aligned, element by element at ragged row ends and odd strides or offsets.
//   Grid-stride over rows x chunks.
// - rowKernel<KIND>: RmsNorm, LayerNorm, Softmax, Argmax. One block of kOpThreads per row, the same
//   chunks of 8, reductions by warp shuffles then shared memory, each pass over the row reading it
//   again (from L1/L2). Argmax keeps the lowest index of the largest value; NaN never wins; a row
//   with no candidate gives 0.
// - ropeKernel (one thread per rotated pair) and kvStoreKernel (one thread per chunk of 8 of a head).
// - attentionKernel<D_MAX, LANES, BKV>: flash attention in f32 FMA, for prefill and decode. A block
//   takes kAttentionThreads / LANES query rows of one (sequence, kv head): the (token, query head)
//   pairs of the heads sharing that kv head, so each key/value tile read serves all of them. LANES
//   consecutive lanes share a row, each holding D_MAX / LANES of its dimensions of q and of the output
//   in registers. Keys and values stream through shared memory in tiles of BKV positions up to the
//   block's last causal position; scores stay in registers (an online softmax in base 2, q pre-scaled
//   by scale * log2(e)), a row's partial dot products meeting by shuffles. No T x T matrix exists.
//   Prefill instantiations have many rows per block; decode (tokens == 1) ones have few (the group's
//   query heads) and split the cached positions over several blocks (flash-decoding): each split
//   writes its partial (max, sum, unnormalised output) and attentionCombineKernel merges them.
// Limits: attention headDim <= 256 (register blocks of 64, 128 and 256 dimensions; other head dims
// run in the next size up with zero padding); every index the host arrays give was checked by the
// host; rows of the row kernels and cols of Argmax below 2^31. Device-only instructions only through
// the wrappers (device_common.cuh): shuffleXor, halfBitsToFloat, approxReciprocal, approxInverseSqrt.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/activation.h"
#include "../core/dtype.h"
#include "../core/ops.h"
#include "device_common.cuh"
#include "op_launch.h"

// Shared memory is declared, and kernels launched, through the emulator's hooks (GEMMKIT_SHARED_ARRAY,
// GEMMKIT_LAUNCH; see native/emu), which expand to the plain CUDA / HIP spellings below on the device
// compilers; these definitions serve builds whose device_common.cuh does not have the hooks yet.
#ifndef GEMMKIT_SHARED_ARRAY
#define GEMMKIT_SHARED_ARRAY(ALIGN, TYPE, NAME, DIMS) alignas(ALIGN) __shared__ TYPE NAME DIMS
#endif
#ifndef GEMMKIT_LAUNCH
#define GEMMKIT_LAUNCH(KERNEL, GRID, BLOCK, SHARED, STREAM, LABEL, BUDGET, ...) KERNEL<<<GRID, BLOCK, SHARED, STREAM>>>(__VA_ARGS__)
#endif

namespace gemmkit {

constexpr int kOpThreads = 256;         // threads of the element-wise and row kernels
constexpr int kAttentionThreads = 128;  // threads of the attention kernels
constexpr float kLog2e = 1.4426950408889634f;

// Register budgets as occupancy hints. The second __launch_bounds__ argument is blocks per SM for
// CUDA and waves per SIMD for HIP; for blocks of 128 threads both give 512 / n registers a thread
// (NVIDIA: n blocks in 64K registers; AMD: n waves in 512 VGPRs). Without it the AMD compiler fills
// 256 VGPRs with early loads of whole tiles. The kOpThreads kernels ask for one block: with 256
// threads and no minimum, ptxas aims at 40 registers and spills.
#if defined(__HIPCC__) || defined(GEMMKIT_HIP_DIALECT)
#define GEMMKIT_ATTENTION_BOUNDS(nvidiaBlocks, amdWaves) __launch_bounds__(kAttentionThreads, amdWaves)
#else
#define GEMMKIT_ATTENTION_BOUNDS(nvidiaBlocks, amdWaves) __launch_bounds__(kAttentionThreads, nvidiaBlocks)
#endif

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

__device__ __forceinline__ void store16Bytes(void* p, const uint4& v) { *static_cast<uint4*>(p) = v; }

// Elements [index, index + valid) (1 <= valid <= 8) of a row of dtype `t` as f32 in v[0..7] (zeros
// past `valid`). The raw bits come in first, by 16-byte loads when all 8 are there and aligned, else
// element by element (past `valid` re-reading element `index`, so without branches); then one
// conversion per element. Keeping the two steps apart keeps one copy of each conversion.
__device__ __forceinline__ void loadChunk(const void* base, DType t, int64_t index, int valid, float v[8]) {
  const bool wide = t == DType::F32;
  const char* p = static_cast<const char*>(base) + index * (wide ? 4 : 2);
  uint32_t bits[8];
  if (valid == 8 && aligned16(p)) {
    const uint4 lo = load16Bytes(p);
    if (wide) {
      const uint4 hi = load16Bytes(p + 16);
      bits[0] = lo.x, bits[1] = lo.y, bits[2] = lo.z, bits[3] = lo.w;
      bits[4] = hi.x, bits[5] = hi.y, bits[6] = hi.z, bits[7] = hi.w;
    } else {
      const uint32_t w[4] = {lo.x, lo.y, lo.z, lo.w};
#pragma unroll
      for (int i = 0; i < 4; i++) bits[2 * i] = w[i] & 0xffffu, bits[2 * i + 1] = w[i] >> 16;
    }
  } else {
#pragma unroll
    for (int e = 0; e < 8; e++) {
      const int64_t i = e < valid ? e : 0;
      bits[e] = wide ? reinterpret_cast<const uint32_t*>(p)[i] : uint32_t(reinterpret_cast<const uint16_t*>(p)[i]);
    }
  }
#pragma unroll
  for (int e = 0; e < 8; e++) {
    const float x = t == DType::F32 ? __uint_as_float(bits[e])
                    : t == DType::BF16 ? __uint_as_float(bits[e] << 16)
                                       : halfBitsToFloat(uint16_t(bits[e]));
    v[e] = e < valid ? x : 0.0f;
  }
}

// v[0..valid) to elements [index, index + valid) of dtype `t`, each rounded once (dtype.h): converted
// to raw bits first, then stored by 16-byte stores when whole and aligned, else element by element.
__device__ __forceinline__ void storeChunk(void* base, DType t, int64_t index, int valid, const float v[8]) {
  const bool wide = t == DType::F32;
  char* p = static_cast<char*>(base) + index * (wide ? 4 : 2);
  uint32_t bits[8];
#pragma unroll
  for (int e = 0; e < 8; e++) {
    bits[e] = t == DType::F32 ? __float_as_uint(v[e]) : t == DType::BF16 ? uint32_t(f32ToBf16(v[e])) : uint32_t(f32ToF16(v[e]));
  }
  if (valid == 8 && aligned16(p)) {
    if (wide) {
      store16Bytes(p, make_uint4(bits[0], bits[1], bits[2], bits[3]));
      store16Bytes(p + 16, make_uint4(bits[4], bits[5], bits[6], bits[7]));
    } else {
      store16Bytes(p, make_uint4(bits[0] | (bits[1] << 16), bits[2] | (bits[3] << 16), bits[4] | (bits[5] << 16),
                                 bits[6] | (bits[7] << 16)));
    }
    return;
  }
#pragma unroll
  for (int e = 0; e < 8; e++) {
    if (e < valid) {
      if (wide) {
        reinterpret_cast<uint32_t*>(p)[e] = bits[e];
      } else {
        reinterpret_cast<uint16_t*>(p)[e] = uint16_t(bits[e]);
      }
    }
  }
}

// Dimensions d .. d + 3 of a cached key or value row (f32), zeros past headDim or where !inside (a
// position outside the range: `row` must still point at a valid row). One 16-byte load when `vector`
// (headDim % 4 == 0 and the cache 16-byte aligned). Branch-free: indices are clamped and values
// selected, so a loop of these keeps no execution masks live.
__device__ __forceinline__ float4 loadHeadQuad(const float* row, int d, int headDim, bool vector, bool inside) {
  if (vector) {
    const bool use = inside && d < headDim;
    const float4 v = *reinterpret_cast<const float4*>(row + (d < headDim ? d : 0));
    return use ? v : float4{0.0f, 0.0f, 0.0f, 0.0f};
  }
  float r[4];
#pragma unroll
  for (int e = 0; e < 4; e++) {
    const bool use = inside && d + e < headDim;
    const float x = row[d + e < headDim ? d + e : 0];
    r[e] = use ? x : 0.0f;
  }
  return float4{r[0], r[1], r[2], r[3]};
}

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += shuffleXor(v, offset);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v = fmaxf(v, shuffleXor(v, offset));
  return v;
}

// The sum (or max) of v over the block's kOpThreads threads, in every thread, in a fixed order.
// scratch: [kOpThreads / kWarpSize]. The first barrier lets the previous reduction's readers finish.
__device__ __forceinline__ float blockSum(float v, float* scratch) {
  v = warpSum(v);
  __syncthreads();
  if (threadIdx.x % kWarpSize == 0) scratch[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kOpThreads / kWarpSize; w++) total += scratch[w];
  return total;
}

__device__ __forceinline__ float blockMax(float v, float* scratch) {
  v = warpMax(v);
  __syncthreads();
  if (threadIdx.x % kWarpSize == 0) scratch[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  float best = -INFINITY;
#pragma unroll
  for (int w = 0; w < kOpThreads / kWarpSize; w++) best = fmaxf(best, scratch[w]);
  return best;
}

// Argmax's order: candidate (v, i) beats (best, bestIndex) with a larger value, or an equal one at a
// lower index. Index -1 is no candidate (NaN never becomes one). A total order, so every lane of a
// butterfly exchange ends with the same winner.
__device__ __forceinline__ bool beats(float v, int i, float best, int bestIndex) {
  return i >= 0 && (bestIndex < 0 || v > best || (v == best && i < bestIndex));
}

// ---------------------------------------------------------------------------------------------------
// Element-wise ops. grid: any (grid-stride over rows x ceil(cols / 8) chunks); block: kOpThreads.
template <OpKind KIND>
__global__ void __launch_bounds__(kOpThreads, 1) elementwiseKernel(OpArgs a) {
  const OpDesc& op = a.op;
  const int64_t chunks = (op.cols + 7) / 8;
  const int64_t total = op.rows * chunks;
  for (int64_t i = int64_t(blockIdx.x) * kOpThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kOpThreads) {
    const int64_t row = i / chunks, col = (i - row * chunks) * 8;
    const int valid = op.cols - col < 8 ? int(op.cols - col) : 8;
    // Embedding gathers table row ids[row] (x is the table).
    const int64_t source = KIND == OpKind::Embedding ? int64_t(a.ids[row]) : row;
    float v[8];
    loadChunk(a.x, op.dtypeX, source * op.ldx + col, valid, v);
    if constexpr (KIND == OpKind::Swiglu || KIND == OpKind::Add) {
      float y[8];
      loadChunk(a.y, op.dtypeY, row * op.ldy + col, valid, y);
#pragma unroll
      for (int e = 0; e < 8; e++) v[e] = KIND == OpKind::Add ? v[e] + y[e] : applyActivation(Activation::Silu, v[e]) * y[e];
    } else if constexpr (KIND == OpKind::Activate) {
#pragma unroll
      for (int e = 0; e < 8; e++) v[e] = applyActivation(op.activation, v[e]);
    }
    storeChunk(a.out, op.dtypeOut, row * op.ldout + col, valid, v);
  }
}

// LayerNorm's last pass over a row: (x - mean) * inverseStd * weight (+ bias). Thread t takes the
// chunks t * 8, (t + kOpThreads) * 8, ...
template <bool HAS_BIAS>
__device__ __forceinline__ void layerNormRow(const OpArgs& a, int64_t xRow, int64_t outRow, float mean, float inverseStd) {
  const OpDesc& op = a.op;
  for (int64_t c = int64_t(threadIdx.x) * 8; c < op.cols; c += int64_t(kOpThreads) * 8) {
    const int valid = op.cols - c < 8 ? int(op.cols - c) : 8;
    float v[8], w[8], b[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    loadChunk(a.x, op.dtypeX, xRow + c, valid, v);
    loadChunk(a.weight, op.dtypeWeight, c, valid, w);
    if (HAS_BIAS) loadChunk(a.bias, op.dtypeWeight, c, valid, b);
#pragma unroll
    for (int e = 0; e < 8; e++) v[e] = (v[e] - mean) * inverseStd * w[e] + b[e];
    storeChunk(a.out, op.dtypeOut, outRow + c, valid, v);
  }
}

// ---------------------------------------------------------------------------------------------------
// Row reductions. grid: rows (one block a row); block: kOpThreads. Thread t walks the chunks t * 8,
// (t + kOpThreads) * 8, ... of the row.
template <OpKind KIND>
__global__ void __launch_bounds__(kOpThreads, 1) rowKernel(OpArgs a) {
  constexpr int kWarps = kOpThreads / kWarpSize;
  GEMMKIT_SHARED_ARRAY(4, float, scratch, [kWarps]);
  const OpDesc& op = a.op;
  const int64_t cols = op.cols;
  const int64_t first = int64_t(threadIdx.x) * 8, step = int64_t(kOpThreads) * 8;
  const int64_t row = blockIdx.x;
  const int64_t xRow = row * op.ldx, outRow = row * op.ldout;
  if constexpr (KIND == OpKind::Argmax) {
    // Each thread's candidates come in increasing index order, so a strict > keeps the first.
    float best = 0.0f;
    int bestIndex = -1;
    for (int64_t c = first; c < cols; c += step) {
      const int valid = cols - c < 8 ? int(cols - c) : 8;
      float v[8];
      loadChunk(a.x, op.dtypeX, xRow + c, valid, v);
#pragma unroll
      for (int e = 0; e < 8; e++) {
        if (e < valid && v[e] == v[e] && (bestIndex < 0 || v[e] > best)) {
          best = v[e];
          bestIndex = int(c + e);
        }
      }
    }
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
      const float otherBest = shuffleXor(best, offset);
      const int otherIndex = shuffleXor(bestIndex, offset);
      if (beats(otherBest, otherIndex, best, bestIndex)) {
        best = otherBest;
        bestIndex = otherIndex;
      }
    }
    GEMMKIT_SHARED_ARRAY(4, int, scratchIndex, [kWarps]);
    if (threadIdx.x % kWarpSize == 0) {
      scratch[threadIdx.x / kWarpSize] = best;
      scratchIndex[threadIdx.x / kWarpSize] = bestIndex;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < kWarps; w++) {
        if (beats(scratch[w], scratchIndex[w], best, bestIndex)) {
          best = scratch[w];
          bestIndex = scratchIndex[w];
        }
      }
      a.idsOut[row] = bestIndex < 0 ? 0 : bestIndex;
    }
  } else if constexpr (KIND == OpKind::RmsNorm) {
    float squares = 0.0f;
    for (int64_t c = first; c < cols; c += step) {
      const int valid = cols - c < 8 ? int(cols - c) : 8;
      float v[8];
      loadChunk(a.x, op.dtypeX, xRow + c, valid, v);
#pragma unroll
      for (int e = 0; e < 8; e++) squares = fmaf(v[e], v[e], squares);
    }
    const float inverseRms = approxInverseSqrt(blockSum(squares, scratch) * approxReciprocal(float(cols)) + op.eps);
    for (int64_t c = first; c < cols; c += step) {
      const int valid = cols - c < 8 ? int(cols - c) : 8;
      float v[8], w[8];
      loadChunk(a.x, op.dtypeX, xRow + c, valid, v);
      loadChunk(a.weight, op.dtypeWeight, c, valid, w);
#pragma unroll
      for (int e = 0; e < 8; e++) v[e] = v[e] * inverseRms * w[e];
      storeChunk(a.out, op.dtypeOut, outRow + c, valid, v);
    }
  } else if constexpr (KIND == OpKind::LayerNorm) {
    // Sums of d = x - x[0] and of d^2 in one pass: var = mean(d^2) - mean(d)^2 with the shift by a
    // value of the row keeps mean(d) of the order of the spread, so the difference loses little.
    const float shift = loadElement(a.x, op.dtypeX, xRow);
    float sum = 0.0f, squares = 0.0f;
    for (int64_t c = first; c < cols; c += step) {
      const int valid = cols - c < 8 ? int(cols - c) : 8;
      float v[8];
      loadChunk(a.x, op.dtypeX, xRow + c, valid, v);
#pragma unroll
      for (int e = 0; e < 8; e++) {
        const float d = e < valid ? v[e] - shift : 0.0f;
        sum += d;
        squares = fmaf(d, d, squares);
      }
    }
    const float inverseCols = approxReciprocal(float(cols));
    const float meanShifted = blockSum(sum, scratch) * inverseCols;
    const float variance = fmaxf(blockSum(squares, scratch) * inverseCols - meanShifted * meanShifted, 0.0f);
    const float mean = shift + meanShifted;
    const float inverseStd = approxInverseSqrt(variance + op.eps);
    if (a.bias) {
      layerNormRow<true>(a, xRow, outRow, mean, inverseStd);
    } else {
      layerNormRow<false>(a, xRow, outRow, mean, inverseStd);
    }
  } else {
    static_assert(KIND == OpKind::Softmax, "a row op");
    float largest = -INFINITY;
    for (int64_t c = first; c < cols; c += step) {
      const int valid = cols - c < 8 ? int(cols - c) : 8;
      float v[8];
      loadChunk(a.x, op.dtypeX, xRow + c, valid, v);
#pragma unroll
      for (int e = 0; e < 8; e++) {
        if (e < valid) largest = fmaxf(largest, v[e]);
      }
    }
    const float rowMax = blockMax(largest, scratch);
    float sum = 0.0f;
    for (int64_t c = first; c < cols; c += step) {
      const int valid = cols - c < 8 ? int(cols - c) : 8;
      float v[8];
      loadChunk(a.x, op.dtypeX, xRow + c, valid, v);
#pragma unroll
      for (int e = 0; e < 8; e++) {
        if (e < valid) sum += expf(v[e] - rowMax);
      }
    }
    const float inverseSum = approxReciprocal(blockSum(sum, scratch));
    for (int64_t c = first; c < cols; c += step) {
      const int valid = cols - c < 8 ? int(cols - c) : 8;
      float v[8];
      loadChunk(a.x, op.dtypeX, xRow + c, valid, v);
#pragma unroll
      for (int e = 0; e < 8; e++) v[e] = expf(v[e] - rowMax) * inverseSum;
      storeChunk(a.out, op.dtypeOut, outRow + c, valid, v);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Rotary embedding, rotate_half form: for head h and i < headDim / 2 the pair (x[i], x[i + half]) is
// rotated by cos/sin[positions[row]][i]. Reads x, writes out (out == x: in place; each pair is read
// and written by one thread). grid: any (grid-stride over rows x heads x half); block: kOpThreads.
__global__ void __launch_bounds__(kOpThreads, 1) ropeKernel(OpArgs a) {
  const OpDesc& op = a.op;
  const int half = op.headDim / 2;
  const int64_t perRow = int64_t(op.heads) * half;
  const int64_t total = op.rows * perRow;
  const float* cosTable = static_cast<const float*>(a.weight);  // [ropePositions][half]
  const float* sinTable = static_cast<const float*>(a.bias);
  for (int64_t i = int64_t(blockIdx.x) * kOpThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kOpThreads) {
    const int64_t row = i / perRow, inRow = i - row * perRow;
    const int64_t head = inRow / half, k = inRow - head * half;
    const int64_t angle = int64_t(a.positions[row]) * half + k;
    const float c = cosTable[angle], s = sinTable[angle];
    const int64_t xIndex = row * op.ldx + head * op.headDim + k;
    const float x1 = loadElement(a.x, op.dtypeX, xIndex), x2 = loadElement(a.x, op.dtypeX, xIndex + half);
    const int64_t outIndex = row * op.ldout + head * op.headDim + k;
    storeFromF32(a.out, op.dtypeOut, outIndex, x1 * c - x2 * s);
    storeFromF32(a.out, op.dtypeOut, outIndex + half, x2 * c + x1 * s);
  }
}

// KV-cache append: cache[slots[b]][h][past[b] + t][:] = x[b * tokens + t, h * headDim + :] as f32 (out
// is the cache). grid: any (grid-stride over rows x kvHeads x chunks of 8 of a head); block: kOpThreads.
__global__ void __launch_bounds__(kOpThreads, 1) kvStoreKernel(OpArgs a) {
  const OpDesc& op = a.op;
  const int64_t chunksPerHead = (op.headDim + 7) / 8;
  const int64_t perRow = int64_t(op.kvHeads) * chunksPerHead;
  const int64_t total = op.rows * perRow;
  for (int64_t i = int64_t(blockIdx.x) * kOpThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kOpThreads) {
    const int64_t row = i / perRow, inRow = i - row * perRow;
    const int64_t head = inRow / chunksPerHead, d = (inRow - head * chunksPerHead) * 8;
    const int valid = op.headDim - d < 8 ? int(op.headDim - d) : 8;
    const int64_t b = row / op.tokens, t = row - b * op.tokens;
    float v[8];
    loadChunk(a.x, op.dtypeX, row * op.ldx + head * op.headDim + d, valid, v);
    const int64_t position = int64_t(a.past[b]) + t;
    const int64_t cacheIndex = ((int64_t(a.slotIndex[b]) * op.kvHeads + head) * op.capacity + position) * op.headDim + d;
    storeChunk(a.out, DType::F32, cacheIndex, valid, v);
  }
}

// ---------------------------------------------------------------------------------------------------
// Attention. A query row's dimensions are spread over LANES consecutive lanes, lane `sub` holding
// dimensions 4 * (sub + LANES * g) + 0..3 for g < GROUPS = D_MAX / (4 * LANES) of q and of the
// output in registers. Queries come in, and outputs go out, through shared memory in coalesced loops,
// so each has one load or store site whatever the dtype.

// q of the block's row r (a float4 of it per g) from the staged rows [r][D_MAX].
template <int LANES, int GROUPS, int D_MAX>
__device__ __forceinline__ void queryFromStage(const float* stage, int r, int sub, float q[GROUPS][4]) {
#pragma unroll
  for (int g = 0; g < GROUPS; g++) {
    const float4 v = *reinterpret_cast<const float4*>(&stage[r * D_MAX + 4 * (sub + LANES * g)]);
    q[g][0] = v.x, q[g][1] = v.y, q[g][2] = v.z, q[g][3] = v.w;
  }
}

template <int LANES, int GROUPS, int D_MAX>
__device__ __forceinline__ void outputToStage(float* stage, int r, int sub, const float o[GROUPS][4], float scale) {
#pragma unroll
  for (int g = 0; g < GROUPS; g++) {
    *reinterpret_cast<float4*>(&stage[r * D_MAX + 4 * (sub + LANES * g)]) =
        float4{o[g][0] * scale, o[g][1] * scale, o[g][2] * scale, o[g][3] * scale};
  }
}

// The attention kernel's shared memory and register budget. kSharedFloats: the keys and values tiles
// [BKV][D_MAX], or the block's rows when they are more. kWavesPerSimd: the waves per SIMD an AMD CU's
// 64 KiB of LDS allows it (two waves a block, four SIMDs), at most 3 (170 VGPRs; at 128 the
// head-dim-64 prefill spills), its register budget there; NVIDIA's is 3 blocks an SM (170 registers).
template <int D_MAX, int LANES, int BKV>
struct AttentionBlock {
  static constexpr int kRows = kAttentionThreads / LANES;
  static constexpr int kSharedFloats = (2 * BKV > kRows ? 2 * BKV : kRows) * D_MAX;
  static constexpr int kBlocksPerCu = 65536 / (kSharedFloats * 4);
  static constexpr int kWavesPerSimd = kBlocksPerCu / 2 < 1 ? 1 : kBlocksPerCu / 2 > 3 ? 3 : kBlocksPerCu / 2;
};

// grid: (rowBlocks * splits, kvHeads, batch), rowBlocks = ceil(tokens * group / ROWS); block:
// kAttentionThreads. Block row r is item firstItem + r of this kv head's (token, query head) pairs,
// item = t * group + g, so the rows sharing a kv head share each key/value tile. The block covers
// positions [0, end), end = the causal range of its last row; split s of `splits` takes
// [s * per, (s + 1) * per) of them, per = ceil(end / splits). Shared: the keys and values tiles
// [BKV][D_MAX] f32, which also stage the queries and outputs.
template <int D_MAX, int LANES, int BKV>
__global__ void GEMMKIT_ATTENTION_BOUNDS(3, (AttentionBlock<D_MAX, LANES, BKV>::kWavesPerSimd)) attentionKernel(OpArgs a) {
  constexpr int GROUPS = D_MAX / (4 * LANES);
  constexpr int ROWS = kAttentionThreads / LANES;
  constexpr int QUADS = D_MAX / 4;  // float4s of a tile row
  static_assert(GROUPS * 4 * LANES == D_MAX && LANES <= kWarpSize && ROWS * LANES == kAttentionThreads,
                "a row's lanes in one warp");
  constexpr int SHARED_FLOATS = AttentionBlock<D_MAX, LANES, BKV>::kSharedFloats;
  GEMMKIT_SHARED_ARRAY(16, float, tiles, [SHARED_FLOATS]);
  float* keys = tiles;
  float* values = tiles + BKV * D_MAX;
  const OpDesc& op = a.op;
  const int group = op.heads / op.kvHeads;
  const int rowBlocks = int(gridDim.x) / a.splits;
  const int rowBlock = int(blockIdx.x) % rowBlocks, split = int(blockIdx.x) / rowBlocks;
  const int kvHead = blockIdx.y, b = blockIdx.z;
  const int sub = threadIdx.x % LANES, r = threadIdx.x / LANES;
  const int64_t items = int64_t(op.tokens) * group;
  const int64_t firstItem = int64_t(rowBlock) * ROWS;
  const int64_t lastItem = firstItem + ROWS < items ? firstItem + ROWS - 1 : items - 1;
  const int past = a.past[b];
  // Rows past the last item compute as the last one and are not stored.
  const int64_t item = firstItem + r < items ? firstItem + r : lastItem;
  const int queryPosition = past + int(item / group);
  const int end = past + int(lastItem / group) + 1;
  const int per = (end + a.splits - 1) / a.splits;
  const int begin = split * per < end ? split * per : end;
  const int stop = begin + per < end ? begin + per : end;
  const int64_t cacheBase = (int64_t(a.slotIndex[b]) * op.kvHeads + kvHead) * op.capacity * op.headDim;
  const float* kBase = a.kCache + cacheBase;
  const float* vBase = a.vCache + cacheBase;
  const bool vector = op.headDim % 4 == 0 && aligned16(a.kCache) && aligned16(a.vCache);

  const float qScale = op.scale * kLog2e;
  for (int i = threadIdx.x; i < ROWS * D_MAX; i += kAttentionThreads) {
    const int64_t it = firstItem + i / D_MAX;
    const int d = i % D_MAX;
    float v = 0.0f;
    if (it < items && d < op.headDim) {
      const int64_t row = int64_t(b) * op.tokens + it / group;
      const int64_t head = int64_t(kvHead) * group + it % group;
      v = loadElement(a.x, op.dtypeX, row * op.ldx + head * op.headDim + d) * qScale;
    }
    tiles[i] = v;
  }
  __syncthreads();
  float q[GROUPS][4], o[GROUPS][4];
  queryFromStage<LANES, GROUPS, D_MAX>(tiles, r, sub, q);
#pragma unroll
  for (int g = 0; g < GROUPS; g++)
#pragma unroll
    for (int e = 0; e < 4; e++) o[g][e] = 0.0f;
  float runningMax = -INFINITY, runningSum = 0.0f;
  __syncthreads();  // the first tile overwrites the staged queries

  for (int k0 = begin; k0 < stop; k0 += BKV) {
    for (int i = threadIdx.x; i < BKV * QUADS; i += kAttentionThreads) {
      const int j = i / QUADS, d = (i % QUADS) * 4;
      const bool inside = k0 + j < stop;
      const int64_t offset = int64_t(inside ? k0 + j : begin) * op.headDim;
      *reinterpret_cast<float4*>(&keys[j * D_MAX + d]) = loadHeadQuad(kBase + offset, d, op.headDim, vector, inside);
      *reinterpret_cast<float4*>(&values[j * D_MAX + d]) = loadHeadQuad(vBase + offset, d, op.headDim, vector, inside);
    }
    __syncthreads();
    float s[BKV];
    float tileMax = -INFINITY;
#pragma unroll
    for (int j = 0; j < BKV; j++) {
      float acc = 0.0f;
#pragma unroll
      for (int g = 0; g < GROUPS; g++) {
        const float4 k = *reinterpret_cast<const float4*>(&keys[j * D_MAX + 4 * (sub + LANES * g)]);
        acc = fmaf(q[g][0], k.x, acc);
        acc = fmaf(q[g][1], k.y, acc);
        acc = fmaf(q[g][2], k.z, acc);
        acc = fmaf(q[g][3], k.w, acc);
      }
      // The row's lanes each hold part of the dot product; the butterfly gives every lane the same sum.
#pragma unroll
      for (int offset = 1; offset < LANES; offset *= 2) acc += shuffleXor(acc, offset);
      s[j] = k0 + j <= queryPosition && k0 + j < stop ? acc : -INFINITY;  // causal, and inside the split
      tileMax = fmaxf(tileMax, s[j]);
    }
    // Online softmax in base 2: rescale what was summed so far to the new maximum, then add this tile.
    const float newMax = fmaxf(runningMax, tileMax);
    const float shift = newMax == -INFINITY ? 0.0f : newMax;  // a row that has seen no position yet
    const float rescale = exp2f(runningMax - shift);
    runningSum *= rescale;
#pragma unroll
    for (int g = 0; g < GROUPS; g++)
#pragma unroll
      for (int e = 0; e < 4; e++) o[g][e] *= rescale;
#pragma unroll
    for (int j = 0; j < BKV; j++) {
      const float p = exp2f(s[j] - shift);
      runningSum += p;
#pragma unroll
      for (int g = 0; g < GROUPS; g++) {
        const float4 v = *reinterpret_cast<const float4*>(&values[j * D_MAX + 4 * (sub + LANES * g)]);
        o[g][0] = fmaf(p, v.x, o[g][0]);
        o[g][1] = fmaf(p, v.y, o[g][1]);
        o[g][2] = fmaf(p, v.z, o[g][2]);
        o[g][3] = fmaf(p, v.w, o[g][3]);
      }
    }
    runningMax = newMax;
    __syncthreads();  // the next tile (or the outputs) overwrite keys and values
  }

  // One split: the output. Several: this split's unnormalised output with its (max, sum), for
  // attentionCombineKernel; a row without positions in this split leaves (-inf, 0, zeros).
  const bool single = a.splits == 1;
  outputToStage<LANES, GROUPS, D_MAX>(tiles, r, sub, o, single ? approxReciprocal(runningSum) : 1.0f);
  __syncthreads();
  const int64_t stride = op.headDim + 2;  // partials: [rows][heads][splits][headDim + 2]
  for (int i = threadIdx.x; i < ROWS * D_MAX; i += kAttentionThreads) {
    const int64_t it = firstItem + i / D_MAX;
    const int d = i % D_MAX;
    if (it < items && d < op.headDim) {
      const int64_t row = int64_t(b) * op.tokens + it / group;
      const int64_t head = int64_t(kvHead) * group + it % group;
      if (single) {
        storeFromF32(a.out, op.dtypeOut, row * op.ldout + head * op.headDim + d, tiles[i]);
      } else {
        a.partials[((row * op.heads + head) * a.splits + split) * stride + 2 + d] = tiles[i];
      }
    }
  }
  if (!single && sub == 0 && firstItem + r < items) {
    const int64_t row = int64_t(b) * op.tokens + item / group;
    const int64_t head = int64_t(kvHead) * group + item % group;
    float* partial = a.partials + ((row * op.heads + head) * a.splits + split) * stride;
    partial[0] = runningMax;
    partial[1] = runningSum;
  }
}

// The splits' partials of one (row, head) into its output. grid: (rows, heads); block:
// kAttentionThreads (threads over dimensions).
__global__ void __launch_bounds__(kAttentionThreads) attentionCombineKernel(OpArgs a) {
  const OpDesc& op = a.op;
  const int64_t row = blockIdx.x;
  const int head = blockIdx.y;
  const int64_t stride = op.headDim + 2;
  const float* partial = a.partials + (row * op.heads + head) * a.splits * stride;
  float largest = -INFINITY;
  for (int s = 0; s < a.splits; s++) largest = fmaxf(largest, partial[s * stride]);
  // Split 0 always holds position 0, so `largest` is finite; splits without positions weigh 0.
  float sum = 0.0f;
  for (int s = 0; s < a.splits; s++) sum += partial[s * stride + 1] * exp2f(partial[s * stride] - largest);
  const float inverse = approxReciprocal(sum);
  for (int d = threadIdx.x; d < op.headDim; d += kAttentionThreads) {
    float acc = 0.0f;
    for (int s = 0; s < a.splits; s++) acc = fmaf(partial[s * stride + 2 + d], exp2f(partial[s * stride] - largest), acc);
    storeFromF32(a.out, op.dtypeOut, row * op.ldout + int64_t(head) * op.headDim + d, acc * inverse);
  }
}

}  // namespace gemmkit
