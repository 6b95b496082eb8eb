// The seam between the host runtime (plain C++) and the compiled kernels (kernel_tables.cu, built by
// nvcc or the HIP compiler): per table architecture, each instantiated configuration with the
// function that launches it.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/status.h"
#include "gemm_args.h"
#include "gpu_config.h"

namespace gemmkit {

struct LaunchContext {
  void* stream = nullptr;         // cudaStream_t / hipStream_t the kernels are queued on
  float* workspace = nullptr;     // at least gpuWorkspaceBytes(config, problem) bytes when splitK > 1
};

// Queues the kernel (and the split-K reduction) for every batch item of `args`; returns the launch
// error, if any. `config` is the table entry; args.splitK and args.group are taken from it.
using LaunchFn = Status (*)(const GpuConfig& config, GemmArgs args, const LaunchContext& ctx);

struct KernelEntry {
  GpuConfig config;
  LaunchFn launch;
};

// The kernels compiled into this library for table `arch`: every row of config_tables.h for this
// vendor (empty for the other vendor's tables).
const std::vector<KernelEntry>& compiledKernels(GpuArch arch);

}  // namespace gemmkit
