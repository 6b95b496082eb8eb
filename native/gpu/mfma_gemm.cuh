// AMD matrix-core GEMM (CDNA2 gfx90a, CDNA3 gfx942; bf16 or f16 inputs, f32 accumulation): MFMA
// 32x32x8 on wave64, both operands K-contiguous in LDS with a double buffer, the next K tile
// prefetched from global memory into registers while the matrix cores work on the current one.
// Variants: block tile BM x BN x BK and waves (family mfma, always .s2), and the four storage
// layouts of A and B (M- or N-contiguous operands are transposed on their way into LDS). Limits:
// each wave's tile a multiple of 32x32, at most 256 accumulators per lane, 2 x (BM + BN) x (BK + 4)
// x 2 bytes of LDS within 64 KiB (gpu_config.cpp checks). Any M, N, K and leading dimension:
// ragged tiles are zero-filled in registers, the epilogue masks.
#pragma once

#include "amd_intrinsics.cuh"
#include "device_common.cuh"

namespace gemmkit {

// Reads the global block [rowBegin, +ROWS) x [colBegin, +ROW_ELEMS) of a row-major operand (row
// stride ld; rows < rowLimit, columns < colLimit valid, zeros elsewhere) as 16-byte vectors, one
// register quad per 8 elements along the contiguous dimension.
template <int ROWS, int ROW_ELEMS, int THREADS>
__device__ __forceinline__ void loadTileRegisters(uint4* regs, const uint16_t* src, int64_t ld, int rowBegin, int rowLimit,
                                                  int colBegin, int colLimit, bool vectorLoads) {
  constexpr int kChunks = ROW_ELEMS / 8;
  static_assert((ROWS * kChunks) % THREADS == 0, "vectors must split evenly over the threads");
#pragma unroll
  for (int j = 0; j < ROWS * kChunks / THREADS; j++) {
    const int index = threadIdx.x + j * THREADS;
    const int grow = rowBegin + index / kChunks, gcol = colBegin + (index % kChunks) * 8;
    int valid = grow < rowLimit ? colLimit - gcol : 0;
    valid = valid < 0 ? 0 : valid > 8 ? 8 : valid;
    const uint16_t* from = src + int64_t(grow) * ld + gcol;
    if (vectorLoads && valid == 8) {
      regs[j] = load16Bytes(from);
    } else {
      uint32_t w[4];
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const uint32_t lo = 2 * e < valid ? from[2 * e] : 0u;
        const uint32_t hi = 2 * e + 1 < valid ? from[2 * e + 1] : 0u;
        w[e] = lo | (hi << 16);
      }
      regs[j] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

// Writes those registers into an LDS tile that is K-contiguous: [TILE_ROWS][STRIDE]. When the global
// operand was already K-contiguous (K_CONTIGUOUS) a vector lands in one row; otherwise its 8
// elements are 8 rows of one K column.
template <int ROWS, int ROW_ELEMS, int THREADS, int STRIDE, bool K_CONTIGUOUS>
__device__ __forceinline__ void storeTileLds(uint16_t* lds, const uint4* regs) {
  constexpr int kChunks = ROW_ELEMS / 8;
#pragma unroll
  for (int j = 0; j < ROWS * kChunks / THREADS; j++) {
    const int index = threadIdx.x + j * THREADS;
    const int row = index / kChunks, chunk = index % kChunks;
    if constexpr (K_CONTIGUOUS) {
      uint2* to = reinterpret_cast<uint2*>(lds + row * STRIDE + chunk * 8);  // rows are 8-byte aligned
      to[0] = make_uint2(regs[j].x, regs[j].y);
      to[1] = make_uint2(regs[j].z, regs[j].w);
    } else {
      const uint32_t w[4] = {regs[j].x, regs[j].y, regs[j].z, regs[j].w};
#pragma unroll
      for (int e = 0; e < 8; e++) lds[(chunk * 8 + e) * STRIDE + row] = uint16_t(w[e / 2] >> (16 * (e % 2)));
    }
  }
}

template <DType T, int BM, int BN, int BK, int WAVES, bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void mfmaGemmBody(const GemmArgs& args) {
  constexpr int THREADS = WAVES * 64;
  constexpr WarpGridShape kGrid = warpGridFor(WAVES, BM, BN);
  constexpr int WM = BM / kGrid.warpsM, WN = BN / kGrid.warpsN;
  constexpr int MI = WM / 32, NI = WN / 32;  // 32x32 MFMA tiles per wave
  static_assert(WM % 32 == 0 && WN % 32 == 0 && BK % 8 == 0, "wave tiles are multiples of 32x32");
  // LDS rows of BK elements plus 4 of padding (8 bytes): lanes 0-31 of an MFMA operand read 32
  // consecutive rows at one K offset, which the odd 18-dword stride spreads over the banks.
  constexpr int STRIDE = BK + 4;
  // Registers per thread for one prefetched tile: A as stored ([BM][BK] or [BK][BM]), B likewise.
  constexpr int VA = BM * BK / 8 / THREADS, VB = BN * BK / 8 / THREADS;
  // LDS: A buffers [2][BM][STRIDE], then B buffers [2][BN][STRIDE]; the epilogue reuses it.
  constexpr int LDS_ELEMS = 2 * (BM + BN) * STRIDE;
  GEMMKIT_SHARED_ARRAY(16, uint16_t, lds, [LDS_ELEMS]);
  uint16_t* const ldsA = lds;
  uint16_t* const ldsB = lds + 2 * BM * STRIDE;

  const int tilesM = ceilDivInt(args.m, BM), tilesN = ceilDivInt(args.n, BN);
  int tileRow, tileCol;
  rasterTile(blockIdx.x, tilesM, tilesN, args.group, &tileRow, &tileCol);
  const int item = blockIdx.z / args.splitK, split = blockIdx.z % args.splitK;
  int kBegin, kEnd;
  splitKRange(args.k, args.splitK, BK, split, &kBegin, &kEnd);
  const uint16_t* a = reinterpret_cast<const uint16_t*>(itemA(args, item));
  const uint16_t* b = reinterpret_cast<const uint16_t*>(itemB(args, item));
  const int m0 = tileRow * BM, n0 = tileCol * BN;
  const int lane = threadIdx.x % 64, wave = threadIdx.x / 64;
  const int waveRow = wave / kGrid.warpsN, waveCol = wave % kGrid.warpsN;

  uint4 regsA[VA], regsB[VB];
  auto loadGlobal = [&](int k0) {
    if constexpr (TRANS_A) {
      loadTileRegisters<BK, BM, THREADS>(regsA, a, args.lda, k0, kEnd, m0, args.m, args.vectorA);
    } else {
      loadTileRegisters<BM, BK, THREADS>(regsA, a, args.lda, m0, args.m, k0, kEnd, args.vectorA);
    }
    if constexpr (TRANS_B) {
      loadTileRegisters<BN, BK, THREADS>(regsB, b, args.ldb, n0, args.n, k0, kEnd, args.vectorB);
    } else {
      loadTileRegisters<BK, BN, THREADS>(regsB, b, args.ldb, k0, kEnd, n0, args.n, args.vectorB);
    }
  };
  auto storeLds = [&](int buffer) {
    if constexpr (TRANS_A) {
      storeTileLds<BK, BM, THREADS, STRIDE, false>(ldsA + buffer * BM * STRIDE, regsA);
    } else {
      storeTileLds<BM, BK, THREADS, STRIDE, true>(ldsA + buffer * BM * STRIDE, regsA);
    }
    if constexpr (TRANS_B) {
      storeTileLds<BN, BK, THREADS, STRIDE, true>(ldsB + buffer * BN * STRIDE, regsB);
    } else {
      storeTileLds<BK, BN, THREADS, STRIDE, false>(ldsB + buffer * BN * STRIDE, regsB);
    }
  };

  MfmaAccumulator acc[MI][NI];
#pragma unroll
  for (int i = 0; i < MI; i++)
#pragma unroll
    for (int j = 0; j < NI; j++)
#pragma unroll
      for (int e = 0; e < 16; e++) acc[i][j][e] = 0.0f;

  const int kTiles = ceilDivInt(kEnd - kBegin, BK);
  if (kTiles > 0) {
    loadGlobal(kBegin);
    storeLds(0);
  }
  __syncthreads();
  // Operand fragments: lane l reads row l % 32 of its 32-row slice at K offset 4 * (l / 32).
  const int fragRow = lane % 32, fragK = 4 * (lane / 32);
  for (int kt = 0; kt < kTiles; kt++) {
    const bool more = kt + 1 < kTiles;
    if (more) loadGlobal(kBegin + (kt + 1) * BK);  // in flight while the matrix cores run
    const uint16_t* tileA = ldsA + (kt % 2) * BM * STRIDE;
    const uint16_t* tileB = ldsB + (kt % 2) * BN * STRIDE;
#pragma unroll
    for (int kk = 0; kk < BK / 8; kk++) {
      uint2 fragA[MI], fragB[NI];
#pragma unroll
      for (int i = 0; i < MI; i++) {
        fragA[i] = *reinterpret_cast<const uint2*>(tileA + (waveRow * WM + i * 32 + fragRow) * STRIDE + kk * 8 + fragK);
      }
#pragma unroll
      for (int j = 0; j < NI; j++) {
        fragB[j] = *reinterpret_cast<const uint2*>(tileB + (waveCol * WN + j * 32 + fragRow) * STRIDE + kk * 8 + fragK);
      }
#pragma unroll
      for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++) mfma32x32x8<T>(acc[i][j], fragA[i], fragB[j]);
    }
    if (more) storeLds((kt + 1) % 2);  // the other buffer: nobody reads it until the barrier
#if !defined(GEMMKIT_PLANT_MISSING_BARRIER)
    __syncthreads();
#endif
  }

  // Epilogue through LDS: per slice of SLICE rows of its tile, each wave stages its accumulators and
  // then stores them row by row. Lane l holds D[8 * (e / 4) + 4 * (l / 32) + e % 4][l % 32] of each
  // 32x32 tile; a 16-row slice is half of a tile's e values.
  constexpr int STAGE_STRIDE = WN + 4;  // floats
  constexpr int SLICE = WAVES * 32 * STAGE_STRIDE * 4 <= LDS_ELEMS * 2 ? 32 : 16;
  static_assert(WAVES * SLICE * STAGE_STRIDE * 4 <= LDS_ELEMS * 2, "staging fits the LDS");
  float* stage = reinterpret_cast<float*>(lds) + wave * SLICE * STAGE_STRIDE;
  __syncthreads();
#pragma unroll
  for (int i = 0; i < MI; i++) {
#pragma unroll
    for (int h = 0; h < 32 / SLICE; h++) {
#pragma unroll
      for (int j = 0; j < NI; j++) {
#pragma unroll
        for (int e = h * SLICE / 2; e < (h + 1) * SLICE / 2; e++) {
          const int row = 8 * (e / 4) + 4 * (lane / 32) + e % 4 - h * SLICE;
          stage[row * STAGE_STRIDE + j * 32 + lane % 32] = acc[i][j][e];
        }
      }
      __syncthreads();
      storeStagedSlice<SLICE, WN, 64>(args, item, split, stage, STAGE_STRIDE, m0 + waveRow * WM + i * 32 + h * SLICE,
                                      n0 + waveCol * WN, lane);
      __syncthreads();
    }
  }
}

// grid: (tiles of C, 1, batch items x splitK); block: WAVES x 64; LDS static.
template <DType T, int BM, int BN, int BK, int WAVES, bool TRANS_A, bool TRANS_B, GpuArch ARCH>
__global__ void __launch_bounds__(WAVES * 64) mfmaGemmKernel(GemmArgs args) {
  if constexpr (compiledForArch<ARCH>()) mfmaGemmBody<T, BM, BN, BK, WAVES, TRANS_A, TRANS_B>(args);
}

}  // namespace gemmkit
