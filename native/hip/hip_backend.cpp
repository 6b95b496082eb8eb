// The HIP backend: the shared GPU backend (native/gpu) compiled against the HIP runtime, plus the AMD
// libraries this build found.
#include "../gpu/gpu_backend.h"
#include "hip_libraries.h"

namespace gemmkit {

void registerVendorBackend() {
  std::vector<std::unique_ptr<VendorLibrary>> libraries;
#if defined(GEMMKIT_HAVE_HIPBLASLT)
  libraries.push_back(makeHipblasLtLibrary());
#endif
#if defined(GEMMKIT_HAVE_ROCBLAS)
  libraries.push_back(makeRocblasLibrary());
#endif
  registerBackend(makeGpuBackend(std::move(libraries)));
}

}  // namespace gemmkit
