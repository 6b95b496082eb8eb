// The NVIDIA vendor libraries the CUDA backend can offer as candidates (each built only where found).
#pragma once

#include <memory>

#include "../gpu/vendor_library.h"

namespace gemmkit {

std::unique_ptr<VendorLibrary> makeCublasLtLibrary();  // cublaslt_library.cpp, with GEMMKIT_HAVE_CUBLASLT

}  // namespace gemmkit
