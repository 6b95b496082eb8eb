// NVIDIA tensor-core GEMM (sm_80 and newer, bf16 or f16 inputs, f32 accumulation): mma.sync m16n8k16
// fed by ldmatrix from XOR-swizzled shared memory, a STAGES-deep cp.async pipeline, rasterised block
// order. Variants: block tile BM x BN x BK, warps, stages (family mma), and the four storage layouts
// of A and B (the tile stays in the global layout in shared memory; ldmatrix.trans transposes the
// M- or N-contiguous ones). Limits: BM, BN powers of two, each warp's tile a multiple of 16x16,
// BK in {16, 32, 64}, STAGES x (BM + BN) x BK x 2 bytes of shared memory (gpu_config.cpp checks).
// Any M, N, K: ragged tiles are zero-filled (cp.async src-size) and the epilogue masks; leading
// dimensions that are not multiples of 8 elements fall back to element loads into the same tiles.
#pragma once

#include "device_common.cuh"
#include "nv_intrinsics.cuh"

namespace gemmkit {

// One operand's tile in shared memory: ROWS rows of ROW_ELEMS 16-bit elements, stored as 16-byte
// chunks whose position inside the row is swizzled (tile_schedule.h) against ldmatrix bank conflicts.
template <int ROWS, int ROW_ELEMS>
struct SwizzledTile {
  static constexpr int kChunks = ROW_ELEMS / 8;
  static constexpr int kElems = ROWS * ROW_ELEMS;
  __device__ static __forceinline__ int offset(int row, int chunk) {  // in elements
    return (row * kChunks + swizzleChunk(row, chunk, kChunks)) * 8;
  }
};

// Copies the global block [rowBegin, +ROWS) x [colBegin, +ROW_ELEMS) of a row-major operand (row
// stride ld, rows < rowLimit and columns < colLimit valid, zeros elsewhere) into a swizzled tile.
template <int ROWS, int ROW_ELEMS, int THREADS>
__device__ __forceinline__ void loadTileAsync(uint16_t* tile, const uint16_t* src, int64_t ld, int rowBegin, int rowLimit,
                                              int colBegin, int colLimit, bool vectorLoads) {
  using Tile = SwizzledTile<ROWS, ROW_ELEMS>;
  static_assert((ROWS * Tile::kChunks) % THREADS == 0, "chunks must split evenly over the threads");
#pragma unroll
  for (int j = 0; j < ROWS * Tile::kChunks / THREADS; j++) {
    const int index = threadIdx.x + j * THREADS;
    const int row = index / Tile::kChunks, chunk = index % Tile::kChunks;
    const int grow = rowBegin + row, gcol = colBegin + chunk * 8;
    int valid = grow < rowLimit ? colLimit - gcol : 0;  // elements of this chunk inside the matrix
    valid = valid < 0 ? 0 : valid > 8 ? 8 : valid;
    const uint16_t* from = src + (valid > 0 ? int64_t(grow) * ld + gcol : 0);
    uint16_t* to = tile + Tile::offset(row, chunk);
    if (vectorLoads) {
      cpAsync16(to, from, valid * 2);
    } else {
      uint32_t w[4];
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const uint32_t lo = 2 * e < valid ? from[2 * e] : 0u;
        const uint32_t hi = 2 * e + 1 < valid ? from[2 * e + 1] : 0u;
        w[e] = lo | (hi << 16);
      }
      *reinterpret_cast<uint4*>(to) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

template <DType T, int BM, int BN, int BK, int WARPS, int STAGES, bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void mmaGemmBody(const GemmArgs& args) {
  constexpr int THREADS = WARPS * 32;
  constexpr WarpGridShape kGrid = warpGridFor(WARPS, BM, BN);
  constexpr int WM = BM / kGrid.warpsM, WN = BN / kGrid.warpsN;
  constexpr int MI = WM / 16, NI = WN / 8;  // m16n8 tiles per warp
  static_assert(WM % 16 == 0 && WN % 16 == 0 && BK % 16 == 0, "warp tiles are multiples of 16x16");
  // A stage holds A as stored: [BM][BK] (K contiguous) or, with TRANS_A, [BK][BM]; B likewise
  // [BN][BK] with TRANS_B (a Linear weight) or [BK][BN].
  using TileA = SwizzledTile<TRANS_A ? BK : BM, TRANS_A ? BM : BK>;
  using TileB = SwizzledTile<TRANS_B ? BN : BK, TRANS_B ? BK : BN>;
  GEMMKIT_DYNAMIC_SHARED(16, uint16_t, sharedTiles);
  uint16_t* stagesA = sharedTiles;                          // [STAGES][TileA]
  uint16_t* stagesB = sharedTiles + STAGES * TileA::kElems;  // [STAGES][TileB]

  const int tilesM = ceilDivInt(args.m, BM), tilesN = ceilDivInt(args.n, BN);
  int tileRow, tileCol;
  rasterTile(blockIdx.x, tilesM, tilesN, args.group, &tileRow, &tileCol);
  const int item = blockIdx.z / args.splitK, split = blockIdx.z % args.splitK;
  int kBegin, kEnd;
  splitKRange(args.k, args.splitK, BK, split, &kBegin, &kEnd);
  const uint16_t* a = reinterpret_cast<const uint16_t*>(itemA(args, item));
  const uint16_t* b = reinterpret_cast<const uint16_t*>(itemB(args, item));
  const int m0 = tileRow * BM, n0 = tileCol * BN;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warpRow = warp / kGrid.warpsN, warpCol = warp % kGrid.warpsN;

  auto loadStage = [&](int stage, int k0) {
    if constexpr (TRANS_A) {
      loadTileAsync<BK, BM, THREADS>(stagesA + stage * TileA::kElems, a, args.lda, k0, kEnd, m0, args.m, args.vectorA);
    } else {
      loadTileAsync<BM, BK, THREADS>(stagesA + stage * TileA::kElems, a, args.lda, m0, args.m, k0, kEnd, args.vectorA);
    }
    if constexpr (TRANS_B) {
      loadTileAsync<BN, BK, THREADS>(stagesB + stage * TileB::kElems, b, args.ldb, n0, args.n, k0, kEnd, args.vectorB);
    } else {
      loadTileAsync<BK, BN, THREADS>(stagesB + stage * TileB::kElems, b, args.ldb, k0, kEnd, n0, args.n, args.vectorB);
    }
  };

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; i++)
#pragma unroll
    for (int j = 0; j < NI; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

  const int kTiles = ceilDivInt(kEnd - kBegin, BK);
#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < kTiles) loadStage(s, kBegin + s * BK);
    cpAsyncCommit();
  }

  // Lane roles in ldmatrix: lane l addresses row l % 8 of 8x8 matrix l / 8.
  const int matrix = lane / 8, matrixRow = lane % 8;
  for (int kt = 0; kt < kTiles; kt++) {
#if !defined(GEMMKIT_PLANT_MISSING_CP_ASYNC_WAIT)
    cpAsyncWait<STAGES - 2>();
#endif
    __syncthreads();  // stage kt is complete for every thread, and stage kt - 1 is free to refill
    const int next = kt + STAGES - 1;
    if (next < kTiles) loadStage(next % STAGES, kBegin + next * BK);
    cpAsyncCommit();

    const uint16_t* tileA = stagesA + (kt % STAGES) * TileA::kElems;
    const uint16_t* tileB = stagesB + (kt % STAGES) * TileB::kElems;
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
      uint32_t fragA[MI][4], fragB[NI][2];
#pragma unroll
      for (int i = 0; i < MI; i++) {
        const int mBase = warpRow * WM + i * 16;
        if constexpr (TRANS_A) {  // matrices: (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15, k 8-15)
          const int krow = kk * 16 + (matrix / 2) * 8 + matrixRow;
          ldmatrixX4Trans(fragA[i], tileA + TileA::offset(krow, (mBase + (matrix % 2) * 8) / 8));
        } else {  // lanes 0-15 rows 0-15 at k 0-7, lanes 16-31 rows 0-15 at k 8-15
          ldmatrixX4(fragA[i], tileA + TileA::offset(mBase + lane % 16, kk * 2 + lane / 16));
        }
      }
#pragma unroll
      for (int j = 0; j < NI / 2; j++) {  // one x4 load feeds two n8 tiles
        const int nBase = warpCol * WN + j * 16;
        uint32_t r[4];
        if constexpr (TRANS_B) {  // matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
          ldmatrixX4(r, tileB + TileB::offset(nBase + (matrix / 2) * 8 + matrixRow, kk * 2 + matrix % 2));
        } else {  // stored [k][n]: matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
          ldmatrixX4Trans(r, tileB + TileB::offset(kk * 16 + (matrix % 2) * 8 + matrixRow, (nBase + (matrix / 2) * 8) / 8));
        }
#if defined(GEMMKIT_PLANT_SWAPPED_FRAGMENT)
        fragB[2 * j][0] = r[1];
        fragB[2 * j][1] = r[0];
#else
        fragB[2 * j][0] = r[0];
        fragB[2 * j][1] = r[1];
#endif
        fragB[2 * j + 1][0] = r[2];
        fragB[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++) mmaM16N8K16<T>(acc[i][j], fragA[i], fragB[j]);
    }
  }
  cpAsyncWait<0>();

  // Epilogue through shared memory (the pipeline's, now free): per 16-row slice of its tile, each warp
  // stages its accumulators, then stores them row by row. Lane l holds D[g][2t..2t+1] and
  // D[g+8][2t..2t+1] of each m16n8 tile (g = l / 4, t = l % 4).
  constexpr int STAGE_STRIDE = WN + 4;  // floats; the padding spreads the staging writes over the banks
  static_assert(WARPS * 16 * STAGE_STRIDE * 4 <= STAGES * (TileA::kElems + TileB::kElems) * 2, "staging fits the pipeline");
  float* stage = reinterpret_cast<float*>(sharedTiles) + warp * 16 * STAGE_STRIDE;
  const int g = lane / 4, t = lane % 4;
  __syncthreads();
#pragma unroll
  for (int i = 0; i < MI; i++) {
#pragma unroll
    for (int j = 0; j < NI; j++) {
#pragma unroll
      for (int e = 0; e < 4; e++) stage[(g + (e / 2) * 8) * STAGE_STRIDE + j * 8 + 2 * t + e % 2] = acc[i][j][e];
    }
    __syncthreads();
    storeStagedSlice<16, WN, 32>(args, item, split, stage, STAGE_STRIDE, m0 + warpRow * WM + i * 16, n0 + warpCol * WN, lane);
    __syncthreads();
  }
}

// grid: (tiles of C, 1, batch items x splitK); block: WARPS x 32; dynamic shared memory:
// STAGES x (BM + BN) x BK x 2 bytes.
template <DType T, int BM, int BN, int BK, int WARPS, int STAGES, bool TRANS_A, bool TRANS_B, GpuArch ARCH>
__global__ void __launch_bounds__(WARPS * 32) mmaGemmKernel(GemmArgs args) {
  if constexpr (compiledForArch<ARCH>()) mmaGemmBody<T, BM, BN, BK, WARPS, STAGES, TRANS_A, TRANS_B>(args);
}

}  // namespace gemmkit
