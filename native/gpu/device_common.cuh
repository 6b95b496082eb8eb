// What every GPU kernel shares, for both vendors: the few places where HIP differs from the CUDA
// dialect the kernels are written in (warp size, shuffles, 16-bit float conversion), which table
// architecture the current device pass compiles, 16-byte loads, and the epilogue.
//
// Device-only instructions are reached only through the small inline functions marked "wrapper"
// here and in nv_intrinsics.cuh / amd_intrinsics.cuh, never through asm or builtins in kernel bodies:
// a CPU emulation of exactly these wrappers can then run the kernels' logic without a GPU.
#pragma once

#if defined(__HIPCC__)
#include <hip/hip_runtime.h>
#else
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <cstdint>

#include "../core/activation.h"
#include "../core/dtype.h"
#include "gemm_args.h"
#include "gpu_config.h"
#include "tile_schedule.h"

namespace gemmkit {

#if defined(__HIPCC__)
constexpr int kWarpSize = 64;  // CDNA wavefronts
#else
constexpr int kWarpSize = 32;
#endif

// Whether the current device compilation pass builds kernels of table `arch`. Kernel bodies of other
// tables compile to nothing, so each target pays only for its own table. False in the host pass.
template <GpuArch ARCH>
__host__ __device__ constexpr bool compiledForArch() {
#if defined(__CUDA_ARCH__)
  return (ARCH == GpuArch::Sm80 && __CUDA_ARCH__ >= 800) || (ARCH == GpuArch::Sm90a && __CUDA_ARCH__ == 900);
#elif defined(__gfx942__)
  return ARCH == GpuArch::Gfx942;
#elif defined(__gfx90a__)
  return ARCH == GpuArch::Gfx90a;
#else
  return false;
#endif
}

// Wrapper: butterfly exchange across the lanes of a warp (all lanes participate).
__device__ __forceinline__ float shuffleXor(float v, int laneMask) {
#if defined(__HIPCC__)
  return __shfl_xor(v, laneMask);
#else
  return __shfl_xor_sync(0xffffffffu, v, laneMask);
#endif
}

// Wrapper: as shuffleXor, for a 32-bit integer (argmax carries its index through the exchange).
__device__ __forceinline__ int shuffleXor(int v, int laneMask) {
#if defined(GEMMKIT_EMU)
  return int(__float_as_uint(emu::shuffleXor(__uint_as_float(unsigned(v)), laneMask)));  // the bits, moved
#elif defined(__HIPCC__)
  return __shfl_xor(v, laneMask);
#else
  return __shfl_xor_sync(0xffffffffu, v, laneMask);
#endif
}

// Wrapper: 1 / x by the hardware's approximate division (within 2 ulp for |x| below 2^126). The IEEE
// quotient's slow path is a subroutine call, whose saved registers count as spills.
__device__ __forceinline__ float approxReciprocal(float x) {
#if defined(GEMMKIT_EMU)
  return 1.0f / x;
#else
  return __fdividef(1.0f, x);
#endif
}

// Wrapper: 1 / sqrt(x) by the hardware's approximation (within 2 ulp), likewise without a slow path.
__device__ __forceinline__ float approxInverseSqrt(float x) {
#if defined(GEMMKIT_EMU)
  return 1.0f / std::sqrt(x);
#else
  return rsqrtf(x);
#endif
}

// Wrapper: IEEE half bits to f32 (exact) with the hardware conversion; dtype.h's f16ToF32 is the same
// function in integer arithmetic.
__device__ __forceinline__ float halfBitsToFloat(uint16_t h) {
#if defined(__HIPCC__)
  return float(__builtin_bit_cast(_Float16, h));
#else
  return __half2float(__ushort_as_half(h));
#endif
}

// 16-bit and 32-bit elements of a 16-byte vector as f32.
template <DType T>
__device__ __forceinline__ void unpack16Bytes(const uint4& v, float* out) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
  if constexpr (T == DType::F32) {
    for (int i = 0; i < 4; i++) out[i] = __uint_as_float(w[i]);
  } else if constexpr (T == DType::BF16) {
    for (int i = 0; i < 4; i++) {
      out[2 * i] = __uint_as_float(w[i] << 16);
      out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  } else {
    for (int i = 0; i < 4; i++) {
      out[2 * i] = halfBitsToFloat(uint16_t(w[i] & 0xffffu));
      out[2 * i + 1] = halfBitsToFloat(uint16_t(w[i] >> 16));
    }
  }
}

__device__ __forceinline__ uint4 load16Bytes(const void* p) { return *static_cast<const uint4*>(p); }

// One element of a matrix of runtime dtype, as f32.
__device__ __forceinline__ float loadElement(const void* base, DType t, int64_t index) {
  if (t == DType::F32) return static_cast<const float*>(base)[index];
  const uint16_t h = static_cast<const uint16_t*>(base)[index];
  return t == DType::BF16 ? __uint_as_float(uint32_t(h) << 16) : halfBitsToFloat(h);
}

// This batch item's matrices.
__device__ __forceinline__ const char* itemA(const GemmArgs& a, int item) {
  return static_cast<const char*>(a.a) + int64_t(item) * a.strideA * dtypeSize(a.dtypeA);
}
__device__ __forceinline__ const char* itemB(const GemmArgs& a, int item) {
  return static_cast<const char*>(a.b) + int64_t(item) * a.strideB * dtypeSize(a.dtypeB);
}
__device__ __forceinline__ char* itemC(const GemmArgs& a, int item) {
  return static_cast<char*>(a.c) + int64_t(item) * a.strideC * dtypeSize(a.dtypeC);
}

// The epilogue of every kernel: C[row, col] = act(alpha * acc + beta * C + bias[col]), rounded once
// to C's dtype (round to nearest even, dtype.h), C read only when beta != 0.
__device__ __forceinline__ void storeResult(const GemmArgs& a, char* cItem, int row, int col, float acc) {
  const int64_t index = int64_t(row) * a.ldc + col;
  float v = a.alpha * acc;
  if (a.beta != 0.0f) v += a.beta * loadAsF32(cItem, a.dtypeC, index);
  if (a.hasBias) v += loadAsF32(a.bias, a.dtypeBias, col);
  storeFromF32(cItem, a.dtypeC, index, applyActivation(a.activation, v));
}

// Where a tile's raw sum goes: C through the epilogue, or split `split`'s slice of the workspace
// ([item][split][m][n] f32), which splitKReduceKernel sums and finishes.
__device__ __forceinline__ void storeAccumulator(const GemmArgs& a, int item, int split, int row, int col, float acc) {
  if (a.splitK == 1) {
    storeResult(a, itemC(a, item), row, col, acc);
  } else {
    a.workspace[((int64_t(item) * a.splitK + split) * a.m + row) * a.n + col] = acc;
  }
}

// Writes a ROWS x COLS slice of accumulators that a warp (or wave) has staged in shared memory
// (row stride `stride` floats) to C (or the workspace) at rowBase, colBase. Kernels stage their
// register tiles through here so that the epilogue's code exists once per slice, not once per
// accumulator register, and consecutive lanes store consecutive columns.
template <int ROWS, int COLS, int LANES>
__device__ __forceinline__ void storeStagedSlice(const GemmArgs& a, int item, int split, const float* stage, int stride,
                                                 int rowBase, int colBase, int lane) {
#pragma unroll 1
  for (int index = lane; index < ROWS * COLS; index += LANES) {
    const int r = index / COLS, c = index % COLS;
    const int row = rowBase + r, col = colBase + c;
    if (row < a.m && col < a.n) storeAccumulator(a, item, split, row, col, stage[r * stride + c]);
  }
}

// Second pass of split-K: sums the partial tiles of each output element and applies the epilogue.
// grid: (x: enough blocks to cover m*n, grid-stride, y: 1, z: batch items); any block size. Static:
// each kernel file that includes this header (GEMMs, ops) has its own copy.
[[maybe_unused]] static __global__ void splitKReduceKernel(GemmArgs a) {
  const int item = blockIdx.z;
  const int64_t elements = int64_t(a.m) * a.n;
  const float* partial = a.workspace + int64_t(item) * a.splitK * elements;
  char* c = itemC(a, item);
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < elements; e += int64_t(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int s = 0; s < a.splitK; s++) sum += partial[int64_t(s) * elements + e];
    storeResult(a, c, int(e / a.n), int(e % a.n), sum);
  }
}

}  // namespace gemmkit
