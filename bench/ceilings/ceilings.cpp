// Hardware ceilings for the CPU GEMM figures: what this machine can do at most, on 1..T threads.
//   f32 FMA peak, AVX-512 (vfmadd on 16 independent zmm accumulators) and AVX2 (12 ymm accumulators),
//   AVX512-BF16 peak (vdpbf16ps, 16 accumulators), AMX-BF16 peak (tdpbf16ps on 4 accumulator tiles,
//   after asking the kernel for tile-data permission), and streaming read bandwidth of a buffer far
//   larger than the last-level cache (plain loads, and loads with software prefetch: the faster). Each kernel is compiled for its ISA with a function-level target
//   attribute and runs only when cpuid (and XCR0) say the CPU and OS support it; absent ones print null.
// A ceiling is the best of several runs (what the hardware can do at most: interference only ever
// slows a run down); the read bandwidth's median is printed too, as this shared machine's is noisy.
// Output: one JSON object on stdout (see bench/peers/index.ts, measureCeilings).
// Usage: ceilings [--threads T] [--read-mib MIB] [--reps R]
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Features {
  bool avx2Fma = false, avx512f = false, avx512Bf16 = false, amxBf16 = false;
};

uint64_t xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

Features detect() {
  Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  bool fma = c & (1u << 12), osxsave = c & (1u << 27);
  if (!osxsave) return f;
  uint64_t xcr = xcr0();
  bool ymmOs = (xcr & 0x6) == 0x6, zmmOs = (xcr & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2Fma = ymmOs && fma && (b & (1u << 5));
  f.avx512f = zmmOs && (b & (1u << 16));
  bool amxTile = d & (1u << 24), amxBf16 = d & (1u << 22);
  f.amxBf16 = amxTile && amxBf16;  // still needs the kernel's permission, see requestAmx
  unsigned a1 = 0, b1, c1, d1;
  __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
  f.avx512Bf16 = f.avx512f && (a1 & (1u << 5));
  return f;
}

// Linux keeps AMX tile data off until a process asks (arch_prctl ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA); the permission then holds for every thread of the process.
bool requestAmx(std::string* why) {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
    *why = std::string("arch_prctl(ARCH_REQ_XCOMP_PERM) refused: ") + std::strerror(errno);
    return false;
  }
  return true;
}

// ---- compute kernels: each returns a value derived from its accumulators so none is optimised away.

constexpr int kFmaAcc512 = 16;  // >= FMA latency x FMA ports on current cores (4 x 2)
constexpr double kFlopsFma512 = kFmaAcc512 * 16 * 2;

__attribute__((target("avx512f"))) float fmaAvx512(int64_t iters) {
  __m512 acc[kFmaAcc512];
  for (int j = 0; j < kFmaAcc512; j++) acc[j] = _mm512_set1_ps(float(j));
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);  // converges, no denormals
  for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 16
    for (int j = 0; j < kFmaAcc512; j++) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
  for (int j = 1; j < kFmaAcc512; j++) acc[0] = _mm512_add_ps(acc[0], acc[j]);
  alignas(64) float out[16];
  _mm512_store_ps(out, acc[0]);
  return out[0] + out[15];
}

constexpr int kFmaAcc256 = 12;  // 16 ymm registers without AVX-512: 12 accumulators + 2 constants
constexpr double kFlopsFma256 = kFmaAcc256 * 8 * 2;

__attribute__((target("avx2,fma"))) float fmaAvx2(int64_t iters) {
  __m256 acc[kFmaAcc256];
  for (int j = 0; j < kFmaAcc256; j++) acc[j] = _mm256_set1_ps(float(j));
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 16
    for (int j = 0; j < kFmaAcc256; j++) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
  for (int j = 1; j < kFmaAcc256; j++) acc[0] = _mm256_add_ps(acc[0], acc[j]);
  alignas(32) float out[8];
  _mm256_store_ps(out, acc[0]);
  return out[0] + out[7];
}

constexpr int kBf16Acc = 16;
constexpr double kFlopsBf16 = kBf16Acc * 16 * 2 * 2;  // 16 lanes x 2 bf16 products x (mul + add)

__attribute__((target("avx512f,avx512bf16"))) float dpbf16Avx512(int64_t iters) {
  __m512 acc[kBf16Acc];
  for (int j = 0; j < kBf16Acc; j++) acc[j] = _mm512_set1_ps(float(j));
  const __m512 small = _mm512_set1_ps(1e-3f);
  const __m512bh x = _mm512_cvtne2ps_pbh(small, small), y = _mm512_cvtne2ps_pbh(small, small);
  for (int64_t i = 0; i < iters; i++)
#pragma GCC unroll 16
    for (int j = 0; j < kBf16Acc; j++) acc[j] = _mm512_dpbf16_ps(acc[j], x, y);
  for (int j = 1; j < kBf16Acc; j++) acc[0] = _mm512_add_ps(acc[0], acc[j]);
  alignas(64) float out[16];
  _mm512_store_ps(out, acc[0]);
  return out[0] + out[15];
}

// AMX: tiles 0-3 accumulate f32 [16 x 16], tiles 4-5 hold A [16 rows x 32 bf16], tiles 6-7 hold B in
// the VNNI pair layout [16 x 32 bf16]; each tdpbf16ps is 16 x 16 x 32 multiply-adds. No loads in the
// loop: this is the dot-product unit's peak, not a GEMM. Written in inline assembly with the whole
// config as the ldtilecfg operand (GCC 12's _tile_loadconfig names only its first 8 bytes).
constexpr double kFlopsAmx = 4 * 16 * 16 * 32 * 2;

struct alignas(64) TileConfig {
  uint8_t palette = 1, startRow = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

float tdpbf16Amx(int64_t iters) {
  TileConfig cfg;
  for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
  alignas(64) uint16_t operand[16 * 32];
  for (auto& v : operand) v = 0x3a83;  // bf16 ~1e-3
  alignas(64) float out[16 * 16];
  const int64_t stride = 64;
  __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
  __asm__ volatile(
      "tilezero %%tmm0\n\ttilezero %%tmm1\n\ttilezero %%tmm2\n\ttilezero %%tmm3\n\t"
      "tileloadd (%0,%1,1), %%tmm4\n\ttileloadd (%0,%1,1), %%tmm5\n\t"
      "tileloadd (%0,%1,1), %%tmm6\n\ttileloadd (%0,%1,1), %%tmm7" ::"r"(operand), "r"(stride) : "memory");
  for (int64_t i = 0; i < iters; i++) {
    __asm__ volatile(
        "tdpbf16ps %%tmm6, %%tmm4, %%tmm0\n\ttdpbf16ps %%tmm7, %%tmm4, %%tmm1\n\t"
        "tdpbf16ps %%tmm6, %%tmm5, %%tmm2\n\ttdpbf16ps %%tmm7, %%tmm5, %%tmm3" ::);
  }
  __asm__ volatile("tilestored %%tmm0, (%0,%1,1)\n\ttilerelease" ::"r"(out), "r"(stride) : "memory");
  return out[0];
}

// ---- threads

void pinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % std::max(1, int(std::thread::hardware_concurrency())), &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // best effort: a failure only adds noise
}

using SteadyClock = std::chrono::steady_clock;

// Runs work(thread) on `threads` pinned threads started together; wall seconds until the last ends.
double runTogether(int threads, const std::function<void(int)>& work) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; t++) {
    pool.emplace_back([&, t] {
      pinTo(t);
      ready++;
      while (!go.load(std::memory_order_acquire)) {}
      work(t);
    });
  }
  while (ready.load() < threads) {}
  auto t0 = SteadyClock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

volatile float gSink;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double best(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

// GFLOP/s of `kernel` on every thread at once: iterations sized for ~0.2 s a run, best of reps runs.
double peakGflops(int threads, int reps, double flopsPerIter, float (*kernel)(int64_t)) {
  int64_t iters = 100000;
  for (;;) {  // calibrate on one thread
    auto t0 = SteadyClock::now();
    gSink = kernel(iters);
    double s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    if (s > 0.02) { iters = int64_t(double(iters) * 0.2 / s) + 1; break; }
    iters *= 4;
  }
  std::vector<double> gflops;
  for (int r = 0; r < reps; r++) {
    double s = runTogether(threads, [&](int) { gSink = kernel(iters); });
    gflops.push_back(flopsPerIter * double(iters) * threads / s / 1e9);
  }
  return best(gflops);
}

__attribute__((target("avx512f"))) uint64_t readAvx512(const uint8_t* p, size_t bytes) {
  __m512i acc[8];
  for (auto& a : acc) a = _mm512_setzero_si512();
  for (size_t i = 0; i + 512 <= bytes; i += 512)
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) acc[j] = _mm512_add_epi64(acc[j], _mm512_load_si512(p + i + 64 * j));
  for (int j = 1; j < 8; j++) acc[0] = _mm512_add_epi64(acc[0], acc[j]);
  alignas(64) uint64_t out[8];
  _mm512_store_si512(out, acc[0]);
  return out[0] + out[7];
}

// The same loop asking for each line kReadAheadBytes before it is read. One thread's hardware prefetchers
// keep too few lines in flight to fill the memory pipe on some CPUs (the AMD EPYC VMs this project is
// measured on read 1.8x faster with it); the GEMV kernel prefetches likewise, so without it a decode
// could beat its own "bound".
constexpr size_t kReadAheadBytes = 2048;
__attribute__((target("avx512f"))) uint64_t readAvx512Prefetch(const uint8_t* p, size_t bytes) {
  __m512i acc[8];
  for (auto& a : acc) a = _mm512_setzero_si512();
  for (size_t i = 0; i + 512 <= bytes; i += 512) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      _mm_prefetch(reinterpret_cast<const char*>(p + i + kReadAheadBytes + 64 * j), _MM_HINT_T0);
      acc[j] = _mm512_add_epi64(acc[j], _mm512_load_si512(p + i + 64 * j));
    }
  }
  for (int j = 1; j < 8; j++) acc[0] = _mm512_add_epi64(acc[0], acc[j]);
  alignas(64) uint64_t out[8];
  _mm512_store_si512(out, acc[0]);
  return out[0] + out[7];
}

__attribute__((target("avx2"))) uint64_t readAvx2(const uint8_t* p, size_t bytes) {
  __m256i acc[8];
  for (auto& a : acc) a = _mm256_setzero_si256();
  for (size_t i = 0; i + 256 <= bytes; i += 256)
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
      acc[j] = _mm256_add_epi64(acc[j], _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32 * j)));
  for (int j = 1; j < 8; j++) acc[0] = _mm256_add_epi64(acc[0], acc[j]);
  alignas(32) uint64_t out[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), acc[0]);
  return out[0] + out[1] + out[2] + out[3];
}

uint64_t readScalar(const uint8_t* p, size_t bytes) {
  uint64_t s = 0;
  for (size_t i = 0; i + 8 <= bytes; i += 8) { uint64_t v; std::memcpy(&v, p + i, 8); s += v; }
  return s;
}

volatile uint64_t gSinkU;

struct Bandwidth {
  double best, median;
};

// GB/s (1e9 bytes) reading `mib` MiB once per run, each thread its own contiguous slice, over reps runs.
Bandwidth readGBps(int threads, int reps, size_t mib, const Features& f) {
  size_t bytes = mib << 20;
  const size_t huge = size_t(2) << 20;
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(huge, bytes));
  if (!buf) return {0, 0};
  madvise(buf, bytes, MADV_HUGEPAGE);  // fewer TLB misses; the figure is DRAM's, not the page walker's
  std::memset(buf, 1, bytes);
  // Each run reads with every reader this CPU has (plain loads, and with AVX-512 also prefetching ahead)
  // and counts the faster: the bandwidth is what the machine streams at best.
  std::vector<uint64_t (*)(const uint8_t*, size_t)> readers;
  if (f.avx512f) readers = {readAvx512, readAvx512Prefetch};
  else readers = {f.avx2Fma ? readAvx2 : readScalar};
  size_t slice = bytes / size_t(threads) / 512 * 512;
  std::vector<double> rates;
  for (int r = 0; r < reps + 1; r++) {
    double rate = 0;
    for (auto reader : readers) {
      double s = runTogether(threads, [&](int t) { gSinkU = reader(buf + slice * size_t(t), slice); });
      rate = std::max(rate, double(slice) * threads / s / 1e9);
    }
    if (r > 0) rates.push_back(rate);  // the first pass warms TLB and pages
  }
  std::free(buf);
  return {best(rates), median(rates)};
}

std::string jsonNumberOrNull(bool present, double v) {
  if (!present) return "null";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

std::string cpuModel() {
  unsigned regs[12];
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000004) return "unknown";
  for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
  std::string s(reinterpret_cast<char*>(regs), 48);
  s = s.c_str();
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, reps = 5;
  size_t readMib = 1024;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
    else if (a == "--read-mib" && i + 1 < argc) readMib = std::max(64, std::atoi(argv[++i]));
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: ceilings [--threads T] [--read-mib MIB] [--reps R]\n");
      return 2;
    }
  }
  Features f = detect();
  std::string amxNote = f.amxBf16 ? "" : "CPU has no AMX-BF16";
  bool amx = f.amxBf16 && requestAmx(&amxNote);

  double fma512 = f.avx512f ? peakGflops(threads, reps, kFlopsFma512, fmaAvx512) : 0;
  double fma256 = f.avx2Fma ? peakGflops(threads, reps, kFlopsFma256, fmaAvx2) : 0;
  double bf16 = f.avx512Bf16 ? peakGflops(threads, reps, kFlopsBf16, dpbf16Avx512) : 0;
  double amxGflops = amx ? peakGflops(threads, reps, kFlopsAmx, tdpbf16Amx) : 0;
  Bandwidth read = readGBps(threads, 2 * reps, readMib, f);

  std::string features = std::string(f.avx2Fma ? "avx2+fma " : "") + (f.avx512f ? "avx512f " : "") +
                         (f.avx512Bf16 ? "avx512_bf16 " : "") + (f.amxBf16 ? "amx_bf16 " : "");
  if (!features.empty()) features.pop_back();
  // fmaF32Gflops is the best f32 FMA peak this CPU has (AVX-512 where present).
  std::printf(
      "{\"threads\":%d,\"cpu\":\"%s\",\"features\":\"%s\",\"fmaF32Gflops\":%s,\"avx512FmaF32Gflops\":%s,"
      "\"avx2FmaF32Gflops\":%s,\"avx512Bf16Gflops\":%s,\"amxBf16Gflops\":%s,\"amxNote\":\"%s\",\"readGBps\":%.1f,"
      "\"readMedianGBps\":%.1f,\"readMiB\":%zu}\n",
      threads, cpuModel().c_str(), features.c_str(), jsonNumberOrNull(true, std::max(fma512, fma256)).c_str(),
      jsonNumberOrNull(f.avx512f, fma512).c_str(), jsonNumberOrNull(f.avx2Fma, fma256).c_str(),
      jsonNumberOrNull(f.avx512Bf16, bf16).c_str(), jsonNumberOrNull(amx, amxGflops).c_str(), amxNote.c_str(), read.best,
      read.median, readMib);
  return 0;
}
