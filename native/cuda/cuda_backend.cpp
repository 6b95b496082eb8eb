// The CUDA backend: the shared GPU backend (native/gpu) compiled against the CUDA runtime, plus the
// NVIDIA libraries this build found.
#include "../gpu/gpu_backend.h"
#include "cuda_libraries.h"

namespace gemmkit {

void registerVendorBackend() {
  std::vector<std::unique_ptr<VendorLibrary>> libraries;
#if defined(GEMMKIT_HAVE_CUBLASLT)
  libraries.push_back(makeCublasLtLibrary());
#endif
  registerBackend(makeGpuBackend(std::move(libraries)));
}

}  // namespace gemmkit
