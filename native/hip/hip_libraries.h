// The AMD vendor libraries the HIP backend can offer as candidates (each built only where found).
#pragma once

#include <memory>

#include "../gpu/vendor_library.h"

namespace gemmkit {

std::unique_ptr<VendorLibrary> makeHipblasLtLibrary();  // hipblaslt_library.cpp, with GEMMKIT_HAVE_HIPBLASLT
std::unique_ptr<VendorLibrary> makeRocblasLibrary();    // rocblas_library.cpp, with GEMMKIT_HAVE_ROCBLAS

}  // namespace gemmkit
