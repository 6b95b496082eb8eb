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

// "cuda" or "hip": the name this build's backend registers under.
const char* gpuBackendName();

// The vendor libraries the backend was built with (for info()).
std::vector<const VendorLibrary*> gpuVendorLibraries();

// Registers this vendor's backend ("cuda" or "hip") with its libraries: defined once per vendor in
// native/cuda/cuda_backend.cpp and native/hip/hip_backend.cpp.
void registerVendorBackend();

}  // namespace gemmkit
