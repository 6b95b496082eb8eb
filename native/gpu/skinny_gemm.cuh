// Skinny GEMM for decode (M <= 16: the shapes token generation spends its time in), both vendors:
// the weight B is streamed once with 16-byte vector loads, every row of A is applied to each vector,
// and K is split over the threads of a block (reduced by shuffles, then shared memory) and, with
// .sk, over blocks (reduced by splitKReduceKernel). Variants: MT = the config's BM (rows kept in
// registers), BN columns per block, BK = threads x 16 bytes (x1, x2, x4 unroll), warps, f32/f16/bf16
// inputs, and B's layout: [N, K] (a Linear weight, transB; lanes split K) or [K, N] (lanes split N
// in 16-byte groups and K in slots). Limits: M <= MT <= 16, MT x BN <= 128 accumulators, A (one
// batch item) below 2^31 elements. Any K, N and leading dimension: ragged vectors and unaligned rows
// use element loads; rows past M or N repeat the last one instead of branching (never stored).
#pragma once

#include <type_traits>

#include "device_common.cuh"

namespace gemmkit {

// `valid` (0..16 / element size) elements at p, p + stride, ... as one 16-byte vector, zero-filled.
// With stride 1, aligned and complete, a single vector load.
template <DType T>
__device__ __forceinline__ uint4 loadVector(const void* p, int64_t stride, int valid, bool vectorLoad) {
  constexpr int V = T == DType::F32 ? 4 : 8;
  if (vectorLoad && stride == 1 && valid == V) return load16Bytes(p);
  uint32_t w[4] = {0u, 0u, 0u, 0u};
  if constexpr (T == DType::F32) {
    const uint32_t* q = static_cast<const uint32_t*>(p);
#pragma unroll
    for (int e = 0; e < 4; e++) w[e] = e < valid ? q[e * stride] : 0u;
  } else {
    const uint16_t* q = static_cast<const uint16_t*>(p);
#pragma unroll
    for (int e = 0; e < 8; e++) w[e / 2] |= (e < valid ? uint32_t(q[e * stride]) : 0u) << (16 * (e % 2));
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

template <DType T, class Elem>
__device__ __forceinline__ float elementToFloat(Elem v) {
  if constexpr (T == DType::F32) return v;
  else if constexpr (T == DType::BF16) return __uint_as_float(uint32_t(v) << 16);
  else return halfBitsToFloat(v);
}

template <DType T, int MT, int BN, int BK, int WARPS, bool TRANS_B>
__device__ __forceinline__ void skinnyGemmBody(const GemmArgs& args) {
  using Elem = typename std::conditional<T == DType::F32, float, uint16_t>::type;
  constexpr int THREADS = WARPS * kWarpSize;
  constexpr int V = 16 / int(sizeof(Elem));  // elements per 16-byte vector
  constexpr int UNROLL = BK / (THREADS * V);
  static_assert(UNROLL >= 1 && UNROLL * THREADS * V == BK, "BK is threads x vector x unroll");
  // One partial sum per warp for each output of the block, added up after the barrier.
  GEMMKIT_SHARED_ARRAY(4, float, partials, [WARPS][MT * BN]);

  const int n0 = blockIdx.x * BN, split = blockIdx.y, item = blockIdx.z;
  int kBegin, kEnd;
  splitKRange(args.k, args.splitK, V, split, &kBegin, &kEnd);
  const Elem* a = reinterpret_cast<const Elem*>(itemA(args, item));
  const Elem* b = reinterpret_cast<const Elem*>(itemB(args, item));
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int m = args.m;

  if constexpr (TRANS_B) {
    // B: [N][K]. Thread t reads K elements [k, k + V) of each of the BN weight rows per step.
    float acc[MT][BN];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int j = 0; j < BN; j++) acc[i][j] = 0.0f;
    // Elements of op(A) row i lie at i * rowStep + k * kStep: 32-bit offsets (the host admits A of
    // fewer than 2^31 elements), so a row costs one scalar register, not a 64-bit pair.
    const uint32_t rowStep = args.transA ? 1u : uint32_t(args.lda), kStep = args.transA ? uint32_t(args.lda) : 1u;
    const bool vectorA = args.vectorA && !args.transA;
#pragma unroll UNROLL
    for (int k = kBegin + tid * V; k < kEnd; k += THREADS * V) {
      const int valid = kEnd - k < V ? kEnd - k : V;
      uint4 w[BN];
#pragma unroll
      for (int j = 0; j < BN; j++) {
        // Weight rows past N repeat the last one (their sums are never stored) instead of branching.
        const int n = n0 + j < args.n ? n0 + j : args.n - 1;
        w[j] = loadVector<T>(b + int64_t(n) * args.ldb + k, 1, valid, args.vectorB);
      }
#pragma unroll
      for (int i = 0; i < MT; i++) {
        const uint32_t row = uint32_t(i < m ? i : m - 1);  // rows past M likewise repeat the last row
        const uint4 xv = loadVector<T>(a + (row * rowStep + uint32_t(k) * kStep), kStep, valid, vectorA);
        float x[V];
        unpack16Bytes<T>(xv, x);
#pragma unroll
        for (int j = 0; j < BN; j++) {
          float wf[V];
          unpack16Bytes<T>(w[j], wf);
#pragma unroll
          for (int e = 0; e < V; e++) acc[i][j] = fmaf(x[e], wf[e], acc[i][j]);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < MT; i++) {
#pragma unroll
      for (int j = 0; j < BN; j++) {
        float v = acc[i][j];
#pragma unroll
        for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += shuffleXor(v, offset);
        if (lane == 0) partials[warp][i * BN + j] = v;
      }
    }
  } else {
    // B: [K][N]. Column group cg (VN consecutive columns, one vector when VN == V) times K slot ks.
    constexpr int VN = V < BN ? V : BN;
    constexpr int CG = BN / VN;
    constexpr int KS = THREADS / CG;
    static_assert(CG <= kWarpSize, "a warp holds every column group");
    const int cg = tid % CG, ks = tid / CG;
    const int col = n0 + cg * VN;
    const int validN = args.n - col < VN ? (args.n - col < 0 ? 0 : args.n - col) : VN;
    float acc[MT][VN];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int e = 0; e < VN; e++) acc[i][e] = 0.0f;
    // A's element (row, k) lies at row * rowStep + k * kStep (32-bit, as above); rows past M repeat
    // the last row.
    const uint32_t rowStep = args.transA ? 1u : uint32_t(args.lda), kStep = args.transA ? uint32_t(args.lda) : 1u;
#pragma unroll UNROLL
    for (int k = kBegin + ks; k < kEnd; k += KS) {
      const uint4 wv = loadVector<T>(b + int64_t(k) * args.ldb + col, 1, validN, args.vectorB && VN == V);
      float w[V];
      unpack16Bytes<T>(wv, w);
      const Elem* ak = a + uint32_t(k) * kStep;
#pragma unroll
      for (int i = 0; i < MT; i++) {
        const float x = elementToFloat<T>(ak[uint32_t(i < m ? i : m - 1) * rowStep]);
#pragma unroll
        for (int e = 0; e < VN; e++) acc[i][e] = fmaf(x, w[e], acc[i][e]);
      }
    }
    // Lanes of one column group differ in the bits above log2(CG).
#pragma unroll
    for (int i = 0; i < MT; i++) {
#pragma unroll
      for (int e = 0; e < VN; e++) {
        float v = acc[i][e];
#pragma unroll
        for (int offset = kWarpSize / 2; offset >= CG; offset /= 2) v += shuffleXor(v, offset);
        if (lane < CG) partials[warp][i * BN + cg * VN + e] = v;
      }
    }
  }
  __syncthreads();
  for (int o = tid; o < MT * BN; o += THREADS) {
    const int i = o / BN, n = n0 + o % BN;
    if (i < m && n < args.n) {
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < WARPS; w++) sum += partials[w][o];
      storeAccumulator(args, item, split, i, n, sum);
    }
  }
}

// grid: (column blocks ceil(N / BN), splitK, batch items); block: WARPS x warp size.
// One block per SM is enough to stream the weights, so the compiler may use every register.
template <DType T, int MT, int BN, int BK, int WARPS, bool TRANS_B, GpuArch ARCH>
__global__ void __launch_bounds__(WARPS * kWarpSize, 1) skinnyGemmKernel(GemmArgs args) {
  if constexpr (compiledForArch<ARCH>()) skinnyGemmBody<T, MT, BN, BK, WARPS, TRANS_B>(args);
}

}  // namespace gemmkit
