// Index arithmetic shared by the GPU kernels and their host-side tests: which output tile a block
// computes (rasterisation), which K range a split-K block sums, and the XOR swizzle of shared-memory
// tiles. Host-and-device, no GPU headers, so gemmkit-gpu-check can test it on any CPU.
#pragma once

#include "../core/host_device.h"

namespace gemmkit {

// Block `pid` of a 1-D grid over tilesM x tilesN tiles, walked in groups of `group` tile rows: the
// blocks running at the same time share a few B column panels and A row panels, which then stay in
// L2. A bijection from [0, tilesM * tilesN) onto the tiles for every group >= 1.
GEMMKIT_HD inline void rasterTile(int pid, int tilesM, int tilesN, int group, int* tm, int* tn) {
  const int width = group * tilesN;        // blocks in one group of tile rows
  const int groupId = pid / width;
  const int firstM = groupId * group;
  const int rows = (tilesM - firstM) < group ? (tilesM - firstM) : group;  // the last group may be short
  const int inGroup = pid - groupId * width;
  *tm = firstM + inGroup % rows;
  *tn = inGroup / rows;
}

// The K range [*begin, *end) that split `split` of `splits` sums. Ranges are multiples of `step`
// (the kernel's K tile) so only the last one has a ragged edge; a range may be empty when K is small.
GEMMKIT_HD inline void splitKRange(int k, int splits, int step, int split, int* begin, int* end) {
  const int perSplit = ((k + splits - 1) / splits + step - 1) / step * step;
  long long b = (long long)split * perSplit;
  long long e = b + perSplit;
  if (b > k) b = k;
  if (e > k) e = k;
  *begin = int(b);
  *end = int(e);
}

// Shared-memory tiles are rows of 16-byte chunks. The chunk a row's logical chunk `chunk` is stored
// at, so that the 8 rows one ldmatrix (or one wave's 16-byte reads) touches at the same logical chunk
// land in 8 different 16-byte bank groups: XOR with the row's position inside its 128-byte span.
// `chunksPerRow` is a power of two.
GEMMKIT_HD inline int swizzleChunk(int row, int chunk, int chunksPerRow) {
  const int rowsPer128 = chunksPerRow >= 8 ? 1 : 8 / chunksPerRow;
  const int span = chunksPerRow < 8 ? chunksPerRow : 8;
  return chunk ^ ((row / rowsPer128) % span);
}

// Warps (waves) over a block tile for the mma and mfma families: warpsM x warpsN, with the longer
// side of the tile getting more warps. gpu_config.cpp's warpGrid() and the kernels both use it.
struct WarpGridShape {
  int warpsM, warpsN;
};
GEMMKIT_HD constexpr WarpGridShape warpGridFor(int warps, int tileM, int tileN) {
  return warps == 1   ? WarpGridShape{1, 1}
         : warps == 2 ? (tileM >= tileN ? WarpGridShape{2, 1} : WarpGridShape{1, 2})
         : warps == 4 ? WarpGridShape{2, 2}
         : warps == 8 ? (tileN >= tileM ? WarpGridShape{2, 4} : WarpGridShape{4, 2})
                      : WarpGridShape{4, warps / 4};
}

GEMMKIT_HD inline int ceilDivInt(int a, int b) { return (a + b - 1) / b; }

}  // namespace gemmkit
