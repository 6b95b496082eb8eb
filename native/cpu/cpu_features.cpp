#include "cpu_features.h"

#include <cstring>
#include <fstream>
#include <thread>

#include <cstdlib>

#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define GEMMKIT_X86 1
#endif

namespace gemmkit {

namespace {

int countUsableCpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? int(n) : 1;
}

#if GEMMKIT_X86
unsigned long long readXcr0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

std::string brandString() {
  unsigned regs[12] = {0};
  unsigned maxExt = __get_cpuid_max(0x80000000u, nullptr);
  if (maxExt < 0x80000004u) return "unknown x86-64";
  for (unsigned i = 0; i < 3; i++) {
    __get_cpuid(0x80000002u + i, &regs[i * 4], &regs[i * 4 + 1], &regs[i * 4 + 2], &regs[i * 4 + 3]);
  }
  char buf[49];
  std::memcpy(buf, regs, 48);
  buf[48] = 0;
  std::string s(buf);
  size_t a = s.find_first_not_of(' ');
  size_t b = s.find_last_not_of(' ');
  return a == std::string::npos ? "unknown x86-64" : s.substr(a, b - a + 1);
}

CpuFeatures detect() {
  CpuFeatures f;
  f.model = brandString();
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  bool osxsave = (c >> 27) & 1;
  bool hasFma = (c >> 12) & 1, hasF16c = (c >> 29) & 1, hasAvx = (c >> 28) & 1;
  unsigned long long xcr0 = osxsave ? readXcr0() : 0;
  bool ymmState = (xcr0 & 0x6) == 0x6;             // SSE + AVX state
  bool zmmState = ymmState && (xcr0 & 0xe0) == 0xe0;  // opmask + zmm hi256 + hi16 zmm
  bool tileState = (xcr0 & 0x60000ull) == 0x60000ull;  // XTILECFG + XTILEDATA
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  bool avx2 = (b >> 5) & 1;
  bool avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
  bool avx512fp16 = (d >> 23) & 1, amxBf16 = (d >> 22) & 1, amxTile = (d >> 24) & 1;
  unsigned a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  bool avx512bf16 = (a1 >> 5) & 1;
  f.avx2 = hasAvx && avx2 && ymmState;
  f.fma = hasFma && ymmState;
  f.f16c = hasF16c && ymmState;
  f.avx512 = avx512f && avx512dq && avx512bw && avx512vl && zmmState;
  f.avx512bf16 = f.avx512 && avx512bf16;
  f.avx512fp16 = f.avx512 && avx512fp16;
  f.amxBf16 = amxTile && amxBf16 && tileState;
  return f;
}
#else
CpuFeatures detect() {
  CpuFeatures f;
  f.model = "unknown";
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    // arm64 kernels report "CPU part"/"model name" inconsistently; take the first descriptive line.
    if (line.rfind("model name", 0) == 0 || line.rfind("Hardware", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) f.model = line.substr(colon + 2);
      break;
    }
  }
  return f;
}
#endif

}  // namespace

std::vector<std::string> CpuFeatures::names() const {
  std::vector<std::string> out;
  if (avx2) out.push_back("avx2");
  if (fma) out.push_back("fma");
  if (f16c) out.push_back("f16c");
  if (avx512) out.push_back("avx512");
  if (avx512bf16) out.push_back("avx512_bf16");
  if (avx512fp16) out.push_back("avx512_fp16");
  if (amxBf16) out.push_back("amx_bf16");
  return out;
}

bool amxTilePermission(bool emulated, std::string* why) {
  const char* refuse = std::getenv("GEMMKIT_CPU_AMX_REFUSE");
  if (refuse && std::strcmp(refuse, "1") == 0) {
    if (why) *why = "AMX tile-data permission refused (simulated by GEMMKIT_CPU_AMX_REFUSE=1)";
    return false;
  }
  if (emulated) return true;
#if defined(__linux__) && GEMMKIT_X86
  static const long result = [] {
    const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
  }();
  if (result == 0) return true;
  if (why) *why = "the kernel refused AMX tile-data permission (arch_prctl ARCH_REQ_XCOMP_PERM failed)";
  return false;
#else
  if (why) *why = "AMX needs Linux on x86-64";
  return false;
#endif
}

const CpuFeatures& cpuFeatures() {
  static const CpuFeatures features = [] {
    CpuFeatures f = detect();
    f.cores = countUsableCpus();
    return f;
  }();
  return features;
}

}  // namespace gemmkit
