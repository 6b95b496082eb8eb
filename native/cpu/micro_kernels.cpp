#include "micro_kernels.h"

#include <cstdlib>
#include <cstring>

#include "cpu_features.h"

namespace gemmkit {

namespace {
bool amxEmulationRequested() {
  const char* v = std::getenv("GEMMKIT_CPU_EMULATE_AMX");
  return v && std::strcmp(v, "1") == 0;
}
}  // namespace

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512bf16";
    case Isa::Amx: return "amx";
    case Isa::AmxEmulated: return "amxemu";
  }
  return "?";
}

std::string isaUnavailableReason(Isa isa) {
  const CpuFeatures& f = cpuFeatures();
  std::string why;
  switch (isa) {
    case Isa::Scalar: return "";
    case Isa::Avx2: return f.avx2 && f.fma ? "" : "this CPU has no AVX2+FMA";
    case Isa::Avx512: return f.avx512 && f.fma ? "" : "this CPU has no AVX-512";
    case Isa::Avx512Bf16: return f.avx512bf16 && f.fma ? "" : "this CPU has no AVX512-BF16";
    case Isa::Amx:
      if (!f.amxBf16) return "this CPU has no AMX-BF16";
      return amxTilePermission(false, &why) ? "" : why;
    case Isa::AmxEmulated:
      if (!amxEmulationRequested()) return "the emulated AMX kernel is offered only with GEMMKIT_CPU_EMULATE_AMX=1";
      return amxTilePermission(true, &why) ? "" : why;
  }
  return "unknown ISA";
}

bool isaAvailable(Isa isa) { return isaUnavailableReason(isa).empty(); }

const std::vector<MicroKernel>& microKernels() {
  static const std::vector<MicroKernel> kernels = [] {
    std::vector<MicroKernel> k;
    addScalarKernels(k);
    addAvx2Kernels(k);
    addAvx512Kernels(k);
    addAvx512Bf16Kernels(k);
    addAmxKernels(k);
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
