// The emulated backends (emu-cuda, emu-hip): the shared GPU backend (native/gpu) compiled against the
// CPU emulator. No vendor libraries: the emulator runs our own kernels only.
#include "../gpu/gpu_backend.h"

namespace gemmkit {

void registerVendorBackend() { registerBackend(makeGpuBackend({})); }

}  // namespace gemmkit
