// Every row of this vendor's config tables (config_tables.h) expanded into its kernel instantiations
// and a launcher: nvcc builds the sm80 and sm90a tables, the HIP compiler the gfx942 and gfx90a ones,
// and the CPU emulator (native/emu) either pair as plain C++ (GEMMKIT_EMU_CUDA / GEMMKIT_EMU_HIP).
// The compile check (check-compile.sh) builds one row at a time with GEMMKIT_ONLY_ARCH and
// GEMMKIT_ONLY_ROW, so each kernel's registers and shared memory can be read off separately.
#include <cstddef>
#include <utility>

#include "config_tables.h"
#include "device_common.cuh"
#include "kernel_table.h"
#include "simt_gemm.cuh"
#include "skinny_gemm.cuh"
#include "vendor_runtime.h"
#if defined(GEMMKIT_HIP_DIALECT)
#include "mfma_gemm.cuh"
#else
#include "mma_gemm.cuh"
#endif

namespace gemmkit {

namespace {

using Kernel = void (*)(GemmArgs);

Status launchError(const GpuConfig& c, const char* what) {
  vendor::Error e = vendor::getLastError();
  if (e == vendor::kSuccess) return Status::ok();
  return Status(StatusCode::Internal, std::string(vendor::kRuntimeName) + " launch of " + what + " for " + c.name() +
                                          " failed: " + vendor::describe(e));
}

// Queues `kernel` over the grid (gridX, gridY, batch items x zPerItem) for every chunk of the batch
// that gridDim.z can hold, then the split-K reduction of that chunk.
Status launchGrid(const GpuConfig& c, GemmArgs args, const LaunchContext& ctx, Kernel kernel, unsigned gridX, unsigned gridY,
                  int zPerItem, int sharedBytes) {
  vendor::Stream stream = static_cast<vendor::Stream>(ctx.stream);
  args.splitK = c.splitK;
  args.group = c.group;
  args.workspace = ctx.workspace;
  const int totalItems = args.batch;
  const int perLaunch = 65535 / zPerItem;
  for (int first = 0; first < totalItems; first += perLaunch) {
    GemmArgs chunk = args;
    chunk.batch = totalItems - first < perLaunch ? totalItems - first : perLaunch;
    chunk.a = static_cast<const char*>(args.a) + int64_t(first) * args.strideA * dtypeSize(args.dtypeA);
    chunk.b = static_cast<const char*>(args.b) + int64_t(first) * args.strideB * dtypeSize(args.dtypeB);
    chunk.c = static_cast<char*>(args.c) + int64_t(first) * args.strideC * dtypeSize(args.dtypeC);
    GEMMKIT_LAUNCH(kernel, dim3(gridX, gridY, unsigned(chunk.batch * zPerItem)), dim3(unsigned(c.threads())), size_t(sharedBytes), stream,
                   c.name(), c.sharedBytes(), chunk);
    Status s = launchError(c, "the GEMM kernel");
    if (!s.isOk()) return s;
    if (c.splitK > 1) {
      const int64_t elements = int64_t(chunk.m) * chunk.n;
      const int64_t blocks = (elements + 255) / 256;
      GEMMKIT_LAUNCH(splitKReduceKernel, dim3(unsigned(blocks < 4096 ? blocks : 4096), 1, unsigned(chunk.batch)), dim3(256), 0, stream,
                     c.name() + " (split-K reduction)", 0, chunk);
      s = launchError(c, "the split-K reduction");
      if (!s.isOk()) return s;
    }
  }
  return Status::ok();
}

Status launchTiles(const GpuConfig& c, const GemmArgs& args, const LaunchContext& ctx, Kernel kernel, int sharedBytes) {
  const int64_t tiles = int64_t(ceilDivInt(args.m, c.tileM)) * ceilDivInt(args.n, c.tileN);
  if (tiles > 2147483647) return unsupported("config " + c.name() + ": too many tiles for one grid");
  return launchGrid(c, args, ctx, kernel, unsigned(tiles), 1, c.splitK, sharedBytes);
}


template <GpuArch ARCH, DType T, int MT, int BN, int BK, int WARPS>
Status launchSkinny(const GpuConfig& c, GemmArgs args, const LaunchContext& ctx) {
  Kernel kernel = args.transB ? skinnyGemmKernel<T, MT, BN, BK, WARPS, true, ARCH> : skinnyGemmKernel<T, MT, BN, BK, WARPS, false, ARCH>;
  // The block count along N alone may not fill the GPU: .sk spreads K over more blocks.
  return launchGrid(c, args, ctx, kernel, unsigned(ceilDivInt(args.n, BN)), unsigned(c.splitK), 1, 0);
}

template <template <bool, bool> class Pick>
Kernel pickLayout(const GemmArgs& args) {
  return args.transA ? (args.transB ? Pick<true, true>::kernel : Pick<true, false>::kernel)
                     : (args.transB ? Pick<false, true>::kernel : Pick<false, false>::kernel);
}

template <GpuArch ARCH, int BM, int BN, int BK, int WARPS>
struct SimtLayouts {
  template <bool TA, bool TB>
  struct Pick {
    static constexpr Kernel kernel = simtGemmKernel<BM, BN, BK, WARPS * kWarpSize, TA, TB, ARCH>;
  };
};

template <GpuArch ARCH, int BM, int BN, int BK, int WARPS>
Status launchSimt(const GpuConfig& c, GemmArgs args, const LaunchContext& ctx) {
  return launchTiles(c, args, ctx, pickLayout<SimtLayouts<ARCH, BM, BN, BK, WARPS>::template Pick>(args), 0);
}

#if defined(GEMMKIT_HIP_DIALECT)
template <GpuArch ARCH, DType T, int BM, int BN, int BK, int WAVES>
struct MfmaLayouts {
  template <bool TA, bool TB>
  struct Pick {
    static constexpr Kernel kernel = mfmaGemmKernel<T, BM, BN, BK, WAVES, TA, TB, ARCH>;
  };
};

template <GpuArch ARCH, DType T, int BM, int BN, int BK, int WAVES>
Status launchMfma(const GpuConfig& c, GemmArgs args, const LaunchContext& ctx) {
  return launchTiles(c, args, ctx, pickLayout<MfmaLayouts<ARCH, T, BM, BN, BK, WAVES>::template Pick>(args), 0);
}
#else
template <GpuArch ARCH, DType T, int BM, int BN, int BK, int WARPS, int STAGES>
struct MmaLayouts {
  template <bool TA, bool TB>
  struct Pick {
    static constexpr Kernel kernel = mmaGemmKernel<T, BM, BN, BK, WARPS, STAGES, TA, TB, ARCH>;
  };
};

template <GpuArch ARCH, DType T, int BM, int BN, int BK, int WARPS, int STAGES>
Status launchMma(const GpuConfig& c, GemmArgs args, const LaunchContext& ctx) {
  Kernel kernel = pickLayout<MmaLayouts<ARCH, T, BM, BN, BK, WARPS, STAGES>::template Pick>(args);
  constexpr int kShared = STAGES * (BM + BN) * BK * 2;
  if (kShared > 48 * 1024) {
    // Above 48 KiB a kernel must opt in to dynamic shared memory (per device, idempotent).
    vendor::Error e = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, kShared);
    if (e != vendor::kSuccess) {
      vendor::getLastError();
      return unsupported("config " + c.name() + " needs " + std::to_string(kShared) + " bytes of shared memory: " + vendor::describe(e));
    }
  }
  return launchTiles(c, args, ctx, kernel, kShared);
}
#endif

constexpr DType dtypeOf(GpuInput t) {
  return t == GpuInput::BF16 ? DType::BF16 : t == GpuInput::F16 ? DType::F16 : DType::F32;
}

// The architecture's row of kGpuConfigTables (config_tables.h).
constexpr const GpuConfigTable& tableOf(GpuArch arch) {
  size_t i = 0;
  while (kGpuConfigTables[i].arch != arch) i++;
  return kGpuConfigTables[i];
}

// Whether this compilation builds row ROW of table ARCH (all rows unless the compile check asks for one).
template <GpuArch ARCH, size_t ROW>
constexpr bool rowSelected() {
#if defined(GEMMKIT_ONLY_ARCH) && defined(GEMMKIT_ONLY_ROW)
  return ARCH == GpuArch::GEMMKIT_ONLY_ARCH && ROW == GEMMKIT_ONLY_ROW;
#else
  return true;
#endif
}

template <GpuArch ARCH, size_t ROW>
LaunchFn launcherFor() {
  constexpr GpuConfig c = tableOf(ARCH).configs[ROW];
  constexpr DType T = dtypeOf(c.input);
  if constexpr (!rowSelected<ARCH, ROW>()) {
    return nullptr;
  } else if constexpr (c.family == GpuFamily::Simt) {
    return &launchSimt<ARCH, c.tileM, c.tileN, c.tileK, c.warps>;
  } else if constexpr (c.family == GpuFamily::Skinny) {
    return &launchSkinny<ARCH, T, c.tileM, c.tileN, c.tileK, c.warps>;
#if defined(GEMMKIT_HIP_DIALECT)
  } else if constexpr (c.family == GpuFamily::Mfma) {
    return &launchMfma<ARCH, T, c.tileM, c.tileN, c.tileK, c.warps>;
#else
  } else if constexpr (c.family == GpuFamily::Mma) {
    return &launchMma<ARCH, T, c.tileM, c.tileN, c.tileK, c.warps, c.stages>;
#endif
  } else {
    static_assert(ROW != ROW, "a table row of a family this vendor does not build");
    return nullptr;
  }
}

template <GpuArch ARCH, size_t... ROWS>
std::vector<KernelEntry> buildTable(std::index_sequence<ROWS...>) {
  std::vector<KernelEntry> entries;
  const KernelEntry all[] = {KernelEntry{tableOf(ARCH).configs[ROWS], launcherFor<ARCH, ROWS>()}...};
  for (const KernelEntry& e : all) {
    if (e.launch) entries.push_back(e);
  }
  return entries;
}

template <GpuArch ARCH>
std::vector<KernelEntry> buildTable() {
  return buildTable<ARCH>(std::make_index_sequence<tableOf(ARCH).size>());
}

}  // namespace

const std::vector<KernelEntry>& compiledKernels(GpuArch arch) {
#if defined(GEMMKIT_HIP_DIALECT)
  static const std::vector<KernelEntry> gfx942 = buildTable<GpuArch::Gfx942>();
  static const std::vector<KernelEntry> gfx90a = buildTable<GpuArch::Gfx90a>();
  static const std::vector<KernelEntry> none;
  return arch == GpuArch::Gfx942 ? gfx942 : arch == GpuArch::Gfx90a ? gfx90a : none;
#else
  static const std::vector<KernelEntry> sm80 = buildTable<GpuArch::Sm80>();
  static const std::vector<KernelEntry> sm90a = buildTable<GpuArch::Sm90a>();
  static const std::vector<KernelEntry> none;
  return arch == GpuArch::Sm80 ? sm80 : arch == GpuArch::Sm90a ? sm90a : none;
#endif
}

}  // namespace gemmkit
