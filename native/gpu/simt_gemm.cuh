// SIMT tiled GEMM: the kernel every CUDA and HIP GPU runs, and the one for inputs the tensor/matrix
// cores do not take (f32, mixed dtypes). Variants: block tile BM x BN x BK and the thread count of the
// config (family simt), and the four storage layouts of A and B. Inputs of any dtype are converted to
// f32 on their way into shared memory, four at a time (one 16-byte load for f32, 8 bytes for f16/bf16)
// in tiles wholly inside the matrices with aligned rows, element by element at the edges;
// each thread keeps a TM x 4 register block. Limits: BN/4 thread columns must divide the block, at
// most 16 rows per thread, static shared memory (<= 48 KiB). Correct at any M, N, K, any leading
// dimensions and transposes; not the fast path for f16/bf16 (that is mma / mfma).
#pragma once

#include "device_common.cuh"

namespace gemmkit {

// Four consecutive elements (r, c .. c + 3) of a row-major operand of runtime dtype `t` as f32, with
// one vector load: 16 bytes for f32, 8 for f16/bf16 (the caller knows they are inside and aligned).
__device__ __forceinline__ void loadQuad(float out[4], const char* base, DType t, int64_t index) {
#if defined(GEMMKIT_EMU)
  emu::checkVectorAlignment(base + index * dtypeSize(t), t == DType::F32 ? 16 : 8);
#endif
  if (t == DType::F32) {
    const float4 v = *reinterpret_cast<const float4*>(base + index * 4);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  } else {
    const uint2 v = *reinterpret_cast<const uint2*>(base + index * 2);
    const uint16_t h[4] = {uint16_t(v.x), uint16_t(v.x >> 16), uint16_t(v.y), uint16_t(v.y >> 16)};
    for (int e = 0; e < 4; e++) out[e] = t == DType::BF16 ? __uint_as_float(uint32_t(h[e]) << 16) : halfBitsToFloat(h[e]);
  }
}

template <int BM, int BN, int BK, int THREADS, bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void simtGemmBody(const GemmArgs& args) {
  constexpr int TN = 4;
  constexpr int THREADS_N = BN / TN;
  constexpr int THREADS_M = THREADS / THREADS_N;
  constexpr int TM = BM / THREADS_M;
  static_assert(THREADS_N * THREADS_M == THREADS && TM * THREADS_M == BM, "thread grid must tile the block");
  static_assert((BM * BK / 4) % THREADS == 0 && (BN * BK / 4) % THREADS == 0 && BK % 4 == 0, "tile loads split evenly");
  // As: [BK][BM + 4] and Bs: [BK][BN + 4], f32. K-major so a thread's TM rows (and 4 columns) are
  // contiguous; the padding spreads the transposing stores of A over the banks. The epilogue reuses
  // the space to stage PASS_ROWS of each thread's rows at a time (at most 16 KiB).
  constexpr int TILE_FLOATS = BK * (BM + 4) + BK * (BN + 4);
  constexpr int PASS_ROWS = THREADS_M * BN * TM <= 4096 ? TM : 4096 / (THREADS_M * BN);
  static_assert(PASS_ROWS >= 1 && TM % PASS_ROWS == 0, "epilogue passes split the register block");
  constexpr int STAGE_FLOATS = THREADS_M * PASS_ROWS * BN;
  GEMMKIT_SHARED_ARRAY(16, float, shared, [TILE_FLOATS > STAGE_FLOATS ? TILE_FLOATS : STAGE_FLOATS]);
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
    // Tiles wholly inside the matrices with 16-byte aligned rows load four elements along the
    // contiguous dimension at a time; the others (the edges) element by element with bounds checks.
    // Either way consecutive threads read consecutive addresses. The choice is uniform per block.
    const bool kInside = k0 + BK <= kEnd;
    if (args.vectorA && kInside && m0 + BM <= args.m) {
#pragma unroll
      for (int j = 0; j < BM * BK / 4 / THREADS; j++) {
        const int q = tid + j * THREADS;
        float v[4];
        if constexpr (TRANS_A) {  // stored [K][M]: a quad is 4 rows of one K column
          const int kk = q / (BM / 4), mq = q % (BM / 4) * 4;
          loadQuad(v, a, args.dtypeA, int64_t(k0 + kk) * args.lda + m0 + mq);
          for (int e = 0; e < 4; e++) As[kk][mq + e] = v[e];
        } else {  // stored [M][K]: a quad is 4 K values of one row
          const int mm = q / (BK / 4), kq = q % (BK / 4) * 4;
          loadQuad(v, a, args.dtypeA, int64_t(m0 + mm) * args.lda + k0 + kq);
          for (int e = 0; e < 4; e++) As[kq + e][mm] = v[e];
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < BM * BK / THREADS; j++) {
        const int i = tid + j * THREADS;
        const int mm = TRANS_A ? i % BM : i / BK;
        const int kk = TRANS_A ? i / BM : i % BK;
        const int row = m0 + mm, kcol = k0 + kk;
        float v = 0.0f;
#if defined(GEMMKIT_PLANT_BOUNDS_OFF_BY_ONE)
        if (row <= args.m && kcol < kEnd) {
#else
        if (row < args.m && kcol < kEnd) {
#endif
          v = loadElement(a, args.dtypeA, TRANS_A ? int64_t(kcol) * args.lda + row : int64_t(row) * args.lda + kcol);
        }
        As[kk][mm] = v;
      }
    }
    if (args.vectorB && kInside && n0 + BN <= args.n) {
#pragma unroll
      for (int j = 0; j < BN * BK / 4 / THREADS; j++) {
        const int q = tid + j * THREADS;
        float v[4];
        if constexpr (TRANS_B) {  // stored [N][K]
          const int nn = q / (BK / 4), kq = q % (BK / 4) * 4;
          loadQuad(v, b, args.dtypeB, int64_t(n0 + nn) * args.ldb + k0 + kq);
          for (int e = 0; e < 4; e++) Bs[kq + e][nn] = v[e];
        } else {  // stored [K][N]
          const int kk = q / (BN / 4), nq = q % (BN / 4) * 4;
          loadQuad(v, b, args.dtypeB, int64_t(k0 + kk) * args.ldb + n0 + nq);
          for (int e = 0; e < 4; e++) Bs[kk][nq + e] = v[e];
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < BN * BK / THREADS; j++) {
        const int i = tid + j * THREADS;
        const int nn = TRANS_B ? i / BK : i % BN;
        const int kk = TRANS_B ? i % BK : i / BN;
        const int col = n0 + nn, krow = k0 + kk;
        float v = 0.0f;
        if (col < args.n && krow < kEnd) {
          v = loadElement(b, args.dtypeB, TRANS_B ? int64_t(col) * args.ldb + krow : int64_t(krow) * args.ldb + col);
        }
        Bs[kk][nn] = v;
      }
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

// grid: (tiles of C, 1, batch items x splitK); block: THREADS. One instantiation per storage layout.
// Minimum one block per SM: without it ptxas caps the registers at 128 and spills.
template <int BM, int BN, int BK, int THREADS, bool TRANS_A, bool TRANS_B, GpuArch ARCH>
__global__ void __launch_bounds__(THREADS, 1) simtGemmKernel(GemmArgs args) {
  if constexpr (compiledForArch<ARCH>()) simtGemmBody<BM, BN, BK, THREADS, TRANS_A, TRANS_B>(args);
}

}  // namespace gemmkit
