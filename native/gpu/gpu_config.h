// GPU kernel configurations (DESIGN.md seam 3). One plain struct describes a configuration of every GPU
// kernel family; config_tables.h lists, per architecture, exactly the configurations the build
// instantiates, and those tables are the GPU tuner's search space. Canonical name:
//
//   <vendor>.<arch>.<input>.<family>.<BM>x<BN>x<BK>.w<warps>.s<stages>[.sk<splitK>][.g<group>]
//
//   cuda.sm80.bf16.mma.128x128x32.w4.s3.g8     tensor cores (mma.sync), 3-stage cp.async pipeline
//   hip.gfx942.f16.mfma.128x128x32.w4.s2       matrix cores (MFMA), LDS double buffer
//   cuda.sm80.any.simt.64x64x16.w4.s1          plain FMA, any input dtypes
//   hip.gfx942.bf16.skinny.8x8x1024.w4.s1.sk4  decode GEMM (M <= 8), K split over 4 blocks
//
// `.sk` and `.g` are left out when 1, so every configuration has exactly one name. Plain C++ (no GPU
// headers): the host side, the Node-free drivers and the tests use it without a GPU toolkit.
#pragma once

#include <cstdint>
#include <string>

#include "../core/dtype.h"
#include "../core/problem.h"
#include "../core/status.h"

namespace gemmkit {

// A table of configurations and the code generation it is compiled for. A device runs the tables
// whose arch it can execute (see gpuArchRunsOn).
enum class GpuArch : int32_t {
  Sm80,    // NVIDIA Ampere and newer through compute_80 (A100, L40S, ..., H100/H200 via the sm80 table)
  Sm90a,   // NVIDIA Hopper only (H100/H200, compute capability 9.0): configs that need its 227 KiB of smem
  Gfx90a,  // AMD CDNA2 (MI210/MI250)
  Gfx942,  // AMD CDNA3 (MI300X/MI300A)
};

enum class GpuFamily : int32_t {
  Simt,    // shared-memory tiles, per-thread register blocks, FMA in f32; any input dtypes; both vendors
  Mma,     // NVIDIA tensor cores: mma.sync m16n8k16 + ldmatrix + cp.async pipeline (sm_80+)
  Wgmma,   // NVIDIA Hopper wgmma + TMA: the name and struct have room for it; no kernels are built yet
  Mfma,    // AMD matrix cores: MFMA 32x32x8 through compiler builtins, wave64, LDS double buffer
  Skinny,  // decode GEMM for M <= BM: weight streaming with vector loads and split-K; both vendors
};

// The input element type a kernel is specialised for (A and B both). Any: converted on load (SIMT).
enum class GpuInput : int32_t { Any, F32, F16, BF16 };

struct GpuConfig {
  GpuArch arch = GpuArch::Sm80;
  GpuInput input = GpuInput::Any;
  GpuFamily family = GpuFamily::Simt;
  int tileM = 0;   // BM: rows of C per block (skinny: the largest M it runs, all rows in one block)
  int tileN = 0;   // BN: columns of C per block
  int tileK = 0;   // BK: depth of one shared-memory / LDS stage (skinny: K a block consumes per step)
  int warps = 0;   // warps (NVIDIA, 32 threads) or wavefronts (AMD, 64 threads) per block
  int stages = 1;  // pipeline depth: cp.async stages (mma), LDS buffers (mfma, always 2), 1 otherwise
  int splitK = 1;  // blocks sharing one tile's K range; partial sums meet in a second, reducing kernel
  int group = 1;   // block rasterisation: blocks walk `group` tile rows together so B tiles stay in L2

  std::string name() const;
  // In range and within the target's limits (registers, shared memory / LDS, threads per block).
  Status valid() const;
  static Status parse(const std::string& name, GpuConfig* out);

  bool isCuda() const { return arch == GpuArch::Sm80 || arch == GpuArch::Sm90a; }
  int warpSize() const { return isCuda() ? 32 : 64; }
  int threads() const { return warps * warpSize(); }
  // Bytes of shared memory (CUDA) or LDS (AMD) one block uses.
  int64_t sharedBytes() const;
  // A coarse upper bound on 32-bit registers per thread (accumulators + fragments + addressing); the
  // compile check measures the real figure.
  int estimatedRegisters() const;
  // Kernels that differ only in splitK or group share one instantiation; this names it.
  std::string instantiationKey() const;
};

// Arrangement of warps (waves) over a block tile for the mma, mfma families: warpsM x warpsN.
struct WarpGrid {
  int warpsM = 1, warpsN = 1;
};
WarpGrid warpGrid(const GpuConfig& c);

const char* gpuArchName(GpuArch a);  // "sm80", "sm90a", "gfx90a", "gfx942"
const char* gpuFamilyName(GpuFamily f);
const char* gpuInputName(GpuInput t);

// Limits of an architecture's block: shared memory (opt-in maximum) and threads.
int64_t gpuArchSharedLimit(GpuArch a);

// Whether a device with this architecture string runs code from table `a`:
// NVIDIA "sm_<major><minor>", AMD "gfx942:sramecc+:xnack-" (features after ':' ignored).
bool gpuArchRunsOn(GpuArch a, const std::string& deviceArch);

// Whether `c`'s kernel can compute `p` (dtypes, M limit of skinny, sizes that fit its index types);
// device limits (shared memory of the actual GPU) are checked by the backend.
Status gpuConfigFits(const GpuConfig& c, const Problem& p);

// Bytes of f32 workspace a launch of `c` on `p` needs for split-K partial sums (0 when splitK == 1).
int64_t gpuWorkspaceBytes(const GpuConfig& c, const Problem& p);

}  // namespace gemmkit
