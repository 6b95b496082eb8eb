// What this CPU can run, read once with cpuid/xgetbv (x86-64) so one binary picks its kernels at run
// time. On other architectures every SIMD flag is false and only the scalar kernels are offered.
#pragma once

#include <string>
#include <vector>

namespace gemmkit {

struct CpuFeatures {
  std::string model;          // brand string, e.g. "AMD EPYC 9R14 96-Core Processor"
  int cores = 1;              // CPUs this process may run on (affinity mask)
  bool avx2 = false;          // AVX2 with OS support for ymm state
  bool fma = false;
  bool f16c = false;
  bool avx512 = false;        // AVX-512 F + BW + VL + DQ with OS support for zmm state
  bool avx512bf16 = false;    // VDPBF16PS, VCVTNEPS2BF16
  bool avx512fp16 = false;    // native f16 arithmetic
  bool amxBf16 = false;       // AMX-TILE + AMX-BF16 reported by cpuid and enabled in XCR0
  // The names of the flags above that are set, in a fixed order, for info() and the tuned-file header.
  std::vector<std::string> names() const;
};

const CpuFeatures& cpuFeatures();

// Linux hands out AMX tile-data state only on request (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA));
// the first call asks once for the process and remembers the answer. For the emulated AMX kernel the
// request is simulated (granted). GEMMKIT_CPU_AMX_REFUSE=1 makes the request report refusal, so the
// fallback can be tested. On refusal, *why says so.
bool amxTilePermission(bool emulated, std::string* why);

}  // namespace gemmkit
