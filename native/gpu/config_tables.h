// The GPU tuner's search space: per architecture, exactly the configurations this build instantiates
// (kernel_tables.cu expands every entry into a kernel; native/gpu/check-compile.sh compiles each one
// for its target and fails on spills). Entries that differ only in split-K or rasterisation share one
// kernel. Keep the distinct tiles few: each costs compile time for every target architecture.
#pragma once

#include <cstddef>

#include "gpu_config.h"

namespace gemmkit {
namespace config_tables {

// Short names for the table rows below.
constexpr GpuInput Any = GpuInput::Any, F32 = GpuInput::F32, F16 = GpuInput::F16, BF16 = GpuInput::BF16;
constexpr GpuFamily Simt = GpuFamily::Simt, Mma = GpuFamily::Mma, Mfma = GpuFamily::Mfma, Skinny = GpuFamily::Skinny;
constexpr GpuArch Sm80 = GpuArch::Sm80, Sm90a = GpuArch::Sm90a, Gfx90a = GpuArch::Gfx90a, Gfx942 = GpuArch::Gfx942;

// Row fields: arch, input, family, BM, BN, BK, warps, stages, splitK, group.
#define GEMMKIT_MMA_TILES(ARCH, T)          \
  {ARCH, T, Mma, 128, 128, 32, 4, 3, 1, 8}, \
  {ARCH, T, Mma, 128, 128, 32, 4, 3, 2, 8}, \
  {ARCH, T, Mma, 128, 256, 32, 8, 3, 1, 8}, \
  {ARCH, T, Mma, 256, 128, 32, 8, 3, 1, 8}, \
  {ARCH, T, Mma, 64, 128, 32, 4, 4, 1, 8},  \
  {ARCH, T, Mma, 64, 64, 64, 4, 3, 1, 1},   \
  {ARCH, T, Mma, 64, 64, 64, 4, 3, 4, 1}

// Skinny BK is one step of every thread's 16-byte load: threads x (16 / element size).
#define GEMMKIT_SKINNY_TILES(ARCH, T, STEP)   \
  {ARCH, T, Skinny, 1, 16, STEP, 4, 1, 1, 1}, \
  {ARCH, T, Skinny, 4, 8, STEP, 4, 1, 1, 1},  \
  {ARCH, T, Skinny, 4, 8, STEP, 4, 1, 4, 1},  \
  {ARCH, T, Skinny, 8, 8, STEP, 4, 1, 1, 1},  \
  {ARCH, T, Skinny, 16, 4, STEP, 4, 1, 1, 1}, \
  {ARCH, T, Skinny, 16, 4, STEP, 4, 1, 4, 1}

#define GEMMKIT_MFMA_TILES(ARCH, T)          \
  {ARCH, T, Mfma, 128, 128, 32, 4, 2, 1, 8}, \
  {ARCH, T, Mfma, 128, 128, 32, 4, 2, 2, 8}, \
  {ARCH, T, Mfma, 256, 128, 32, 8, 2, 1, 8}, \
  {ARCH, T, Mfma, 64, 64, 64, 4, 2, 1, 1},   \
  {ARCH, T, Mfma, 64, 64, 64, 4, 2, 4, 1}

#define GEMMKIT_AMD_TABLE(ARCH)                 \
  {ARCH, Any, Simt, 64, 64, 16, 4, 1, 1, 1},    \
  {ARCH, Any, Simt, 64, 64, 16, 4, 1, 4, 1},    \
  {ARCH, Any, Simt, 128, 128, 8, 4, 1, 1, 8},   \
  GEMMKIT_MFMA_TILES(ARCH, BF16),               \
  GEMMKIT_MFMA_TILES(ARCH, F16),                \
  GEMMKIT_SKINNY_TILES(ARCH, BF16, 2048),       \
  GEMMKIT_SKINNY_TILES(ARCH, F16, 2048),        \
  GEMMKIT_SKINNY_TILES(ARCH, F32, 1024)

// NVIDIA compute capability 8.0 and newer (Ampere, Ada; Hopper runs it next to its own table).
constexpr GpuConfig kSm80[] = {
  {Sm80, Any, Simt, 64, 64, 16, 4, 1, 1, 1},
  {Sm80, Any, Simt, 64, 64, 16, 4, 1, 4, 1},
  {Sm80, Any, Simt, 128, 128, 8, 8, 1, 1, 8},
  GEMMKIT_MMA_TILES(Sm80, BF16),
  GEMMKIT_MMA_TILES(Sm80, F16),
  GEMMKIT_SKINNY_TILES(Sm80, BF16, 1024),
  GEMMKIT_SKINNY_TILES(Sm80, F16, 1024),
  GEMMKIT_SKINNY_TILES(Sm80, F32, 512),
};

// Hopper (compute capability 9.0 exactly): deeper cp.async pipelines for its larger shared memory
// and higher memory latency, compiled for sm_90a only. (BK 64 with 128x128 warps' tiles spills.)
// The wgmma/TMA family will add its rows here.
constexpr GpuConfig kSm90a[] = {
  {Sm90a, BF16, Mma, 128, 256, 32, 8, 5, 1, 8},
  {Sm90a, BF16, Mma, 256, 128, 32, 8, 5, 1, 8},
  {Sm90a, BF16, Mma, 128, 128, 32, 4, 6, 1, 8},
  {Sm90a, F16, Mma, 128, 256, 32, 8, 5, 1, 8},
  {Sm90a, F16, Mma, 256, 128, 32, 8, 5, 1, 8},
  {Sm90a, F16, Mma, 128, 128, 32, 4, 6, 1, 8},
};

// AMD CDNA3 (MI300X, MI300A) and CDNA2 (MI210, MI250): the same tiles, compiled for each target.
constexpr GpuConfig kGfx942[] = {GEMMKIT_AMD_TABLE(Gfx942)};
constexpr GpuConfig kGfx90a[] = {GEMMKIT_AMD_TABLE(Gfx90a)};

#undef GEMMKIT_MMA_TILES
#undef GEMMKIT_SKINNY_TILES
#undef GEMMKIT_MFMA_TILES
#undef GEMMKIT_AMD_TABLE

}  // namespace config_tables

// One architecture's table.
struct GpuConfigTable {
  GpuArch arch;
  const GpuConfig* configs;
  size_t size;
};

constexpr GpuConfigTable kGpuConfigTables[] = {
  {GpuArch::Sm80, config_tables::kSm80, sizeof(config_tables::kSm80) / sizeof(GpuConfig)},
  {GpuArch::Sm90a, config_tables::kSm90a, sizeof(config_tables::kSm90a) / sizeof(GpuConfig)},
  {GpuArch::Gfx90a, config_tables::kGfx90a, sizeof(config_tables::kGfx90a) / sizeof(GpuConfig)},
  {GpuArch::Gfx942, config_tables::kGfx942, sizeof(config_tables::kGfx942) / sizeof(GpuConfig)},
};

}  // namespace gemmkit
