#include "micro_kernels.h"

#include "cpu_features.h"

namespace gemmkit {

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

bool isaAvailable(Isa isa) {
  const CpuFeatures& f = cpuFeatures();
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return f.avx2 && f.fma;
    case Isa::Avx512: return f.avx512 && f.fma;
  }
  return false;
}

const std::vector<MicroKernel>& microKernels() {
  static const std::vector<MicroKernel> kernels = [] {
    std::vector<MicroKernel> k;
    addScalarKernels(k);
    addAvx2Kernels(k);
    addAvx512Kernels(k);
    return k;
  }();
  return kernels;
}

const MicroKernel* findMicroKernel(const std::string& id) {
  for (const MicroKernel& k : microKernels()) {
    if (k.id == id) return &k;
  }
  return nullptr;
}

}  // namespace gemmkit
