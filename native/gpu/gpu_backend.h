// The GPU backend behind the Backend seam, written once for both vendors (compiled once per vendor):
// candidates are the device's table rows that fit the problem plus the vendor libraries' algorithms;
// run() takes device pointers (Buffers of device memory on problem.device); time() uses events on
// rotating device buffers.
#pragma once

#include <memory>
#include <vector>

#include "../core/backend.h"
#include "vendor_library.h"

namespace gemmkit {

std::unique_ptr<Backend> makeGpuBackend(std::vector<std::unique_ptr<VendorLibrary>> libraries);

// "cuda" or "hip" ("emu-cuda" or "emu-hip" in emulated builds): the name this build's backend
// registers under.
const char* gpuBackendName();

// Whether this build runs the NVIDIA tables (cuda, emu-cuda) rather than the AMD ones (hip, emu-hip).
bool gpuBackendRunsNvidiaTables();

// Whether the backend is the CPU emulator: its timings are host timings, never a GPU's.
bool gpuBackendIsEmulated();

// The vendor libraries the backend was built with (for info()).
std::vector<const VendorLibrary*> gpuVendorLibraries();

// Registers this vendor's backend ("cuda" or "hip") with its libraries: defined once per vendor in
// native/cuda/cuda_backend.cpp and native/hip/hip_backend.cpp (the emulated ones in native/emu).
void registerVendorBackend();

}  // namespace gemmkit
