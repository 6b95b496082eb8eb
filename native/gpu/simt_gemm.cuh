// SIMT tiled GEMM: the kernel every CUDA and HIP GPU runs, and the one for inputs the tensor/matrix
// cores do not take (f32, mixed dtypes). Variants: block tile BM x BN x BK and the thread count of the
// config (family simt). Inputs of any dtype are converted to f32 on their way into shared memory;
// each thread keeps a TM x 4 register block. Limits: BN/4 thread columns must divide the block, at
// most 16 rows per thread, static shared memory (<= 48 KiB). Correct at any M, N, K, any leading
// dimensions and transposes; not the fast path for f16/bf16 (that is mma / mfma).
#pragma once

#include "device_common.cuh"

namespace gemmkit {

template <int BM, int BN, int BK, int THREADS>
__device__ __forceinline__ void simtGemmBody(const GemmArgs& args) {
  constexpr int TN = 4;
  constexpr int THREADS_N = BN / TN;
  constexpr int THREADS_M = THREADS / THREADS_N;
  constexpr int TM = BM / THREADS_M;
  static_assert(THREADS_N * THREADS_M == THREADS && TM * THREADS_M == BM, "thread grid must tile the block");
  static_assert((BM * BK) % THREADS == 0 && (BN * BK) % THREADS == 0, "tile loads must split evenly");
  // As: [BK][BM + 4] and Bs: [BK][BN + 4], f32. K-major so a thread's TM rows (and 4 columns) are
  // contiguous; the padding spreads the transposing stores of A over the banks. The epilogue reuses
  // the space to stage PASS_ROWS of each thread's rows at a time (at most 16 KiB).
  constexpr int TILE_FLOATS = BK * (BM + 4) + BK * (BN + 4);
  constexpr int PASS_ROWS = THREADS_M * BN * TM <= 4096 ? TM : 4096 / (THREADS_M * BN);
  static_assert(PASS_ROWS >= 1 && TM % PASS_ROWS == 0, "epilogue passes split the register block");
  constexpr int STAGE_FLOATS = THREADS_M * PASS_ROWS * BN;
  alignas(16) __shared__ float shared[TILE_FLOATS > STAGE_FLOATS ? TILE_FLOATS : STAGE_FLOATS];
  float (*As)[BM + 4] = reinterpret_cast<float (*)[BM + 4]>(shared);
  float (*Bs)[BN + 4] = reinterpret_cast<float (*)[BN + 4]>(shared + BK * (BM + 4));

  const int tilesM = ceilDivInt(args.m, BM), tilesN = ceilDivInt(args.n, BN);
  int tileRow, tileCol;
  rasterTile(blockIdx.x, tilesM, tilesN, args.group, &tileRow, &tileCol);
  const int item = blockIdx.z / args.splitK, split = blockIdx.z % args.splitK;
  int kBegin, kEnd;
  splitKRange(args.k, args.splitK, BK, split, &kBegin, &kEnd);
  const char* a = itemA(args, item);
  const char* b = itemB(args, item);
  const int m0 = tileRow * BM, n0 = tileCol * BN;
  const int tid = threadIdx.x;
  const int tx = tid % THREADS_N, ty = tid / THREADS_N;

  float acc[TM][TN];
  for (int i = 0; i < TM; i++)
    for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;

  for (int k0 = kBegin; k0 < kEnd; k0 += BK) {
    // Consecutive threads read consecutive addresses: along K when that is A's contiguous dimension.
#pragma unroll
    for (int j = 0; j < BM * BK / THREADS; j++) {
      const int i = tid + j * THREADS;
      const int mm = args.transA ? i % BM : i / BK;
      const int kk = args.transA ? i / BM : i % BK;
      const int row = m0 + mm, kcol = k0 + kk;
      float v = 0.0f;
      if (row < args.m && kcol < kEnd) {
        v = loadElement(a, args.dtypeA, args.transA ? int64_t(kcol) * args.lda + row : int64_t(row) * args.lda + kcol);
      }
      As[kk][mm] = v;
    }
#pragma unroll
    for (int j = 0; j < BN * BK / THREADS; j++) {
      const int i = tid + j * THREADS;
      const int nn = args.transB ? i / BK : i % BN;
      const int kk = args.transB ? i % BK : i / BN;
      const int col = n0 + nn, krow = k0 + kk;
      float v = 0.0f;
      if (col < args.n && krow < kEnd) {
        v = loadElement(b, args.dtypeB, args.transB ? int64_t(col) * args.ldb + krow : int64_t(krow) * args.ldb + col);
      }
      Bs[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk++) {
      float av[TM], bv[TN];
#pragma unroll
      for (int i = 0; i < TM; i++) av[i] = As[kk][ty * TM + i];
#pragma unroll
      for (int j = 0; j < TN; j++) bv[j] = Bs[kk][tx * TN + j];
#pragma unroll
      for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }

  // Epilogue: per pass, rows [p * PASS_ROWS, +PASS_ROWS) of every thread's block go through shared
  // memory (stage row ty * PASS_ROWS + r is C row m0 + ty * TM + p * PASS_ROWS + r), then every
  // thread stores consecutive columns, so the epilogue's code exists once per pass.
#pragma unroll
  for (int p = 0; p < TM / PASS_ROWS; p++) {
#pragma unroll
    for (int r = 0; r < PASS_ROWS; r++)
#pragma unroll
      for (int j = 0; j < TN; j++) shared[(ty * PASS_ROWS + r) * BN + tx * TN + j] = acc[p * PASS_ROWS + r][j];
    __syncthreads();
#pragma unroll 1
    for (int index = tid; index < STAGE_FLOATS; index += THREADS) {
      const int stageRow = index / BN;
      const int row = m0 + (stageRow / PASS_ROWS) * TM + p * PASS_ROWS + stageRow % PASS_ROWS;
      const int col = n0 + index % BN;
      if (row < args.m && col < args.n) storeAccumulator(args, item, split, row, col, shared[index]);
    }
    __syncthreads();
  }
}

// grid: (tiles of C, 1, batch items x splitK); block: THREADS.
template <int BM, int BN, int BK, int THREADS, GpuArch ARCH>
__global__ void __launch_bounds__(THREADS) simtGemmKernel(GemmArgs args) {
  if constexpr (compiledForArch<ARCH>()) simtGemmBody<BM, BN, BK, THREADS>(args);
}

}  // namespace gemmkit
