// gemmkit-cpu-breakdown: where one thread's time goes in the blocked GEMM, for the default config of each
// compute-bound target shape (square 1024 / 2048, x @ W^T on a prepacked W 4096x4096 at M = 32..512; f32
// and bf16, which runs on the f32 kernel where the CPU lacks AVX512-BF16). Every figure is GFLOP/s per second of the measuring thread's CPU
// time (CLOCK_THREAD_CPUTIME_ID), so time slices lost to other processes on a shared machine drop out:
//   peak     a register-only loop of the kernel's instruction (VFMADD231PS on zmm or ymm registers,
//            VDPBF16PS; 14-16 independent accumulators), what bench/ceilings measures in wall time;
//   kernel   the config's micro-kernel on packed operands that stay in cache (one A block of mc rows times
//            8 B slivers, depth kc; C [mc, 8*NR] in L2);
//   frame    runCpuGemm on 1 thread: the kernel plus packing A and B, the C tiles' traffic through the
//            caches, edges and the weight from memory;
//   packing  the CPU time of packing A (once per column block) and B (once) for the frame's problem, as a
//            share of the frame's time.
// The rounds alternate the measurements; each figure is the median round. Usage:
//   gemmkit-cpu-breakdown [--quick]   (--quick: square 256 and M = 32 only, short rounds)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../cpu/cpu_backend.h"
#include "../cpu/cpu_config.h"
#include "../cpu/gemm_frame.h"
#include "../cpu/micro_kernels.h"
#include "../cpu/pack.h"
#include "../cpu/packed_weight.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

using namespace gemmkit;

namespace {

double threadSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Calls fn (which does `flops` of work) for at least `seconds` of thread CPU time; GFLOP/s of CPU time.
double rate(double flops, double seconds, const std::function<void()>& fn) {
  const double t0 = threadSeconds();
  long calls = 0;
  double el = 0;
  do {
    fn();
    calls++;
    el = threadSeconds() - t0;
  } while (el < seconds);
  return flops * double(calls) / el / 1e9;
}

#if defined(__x86_64__)
__attribute__((target("avx512f,fma"), noinline)) float peakFmaLoop(long n) {
  __m512 acc[16];
  for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps(float(i) * 1e-9f);
  const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < n; i++) {
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(a, acc[j], b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

// The AVX2 kernels' unit: 256-bit FMAs, 14 accumulators (the two constants take the other ymm registers).
__attribute__((target("avx2,fma"), noinline)) float peakFmaAvx2Loop(long n) {
  __m256 acc[14];
  for (int i = 0; i < 14; i++) acc[i] = _mm256_set1_ps(float(i) * 1e-9f);
  const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < n; i++) {
#pragma GCC unroll 14
    for (int j = 0; j < 14; j++) acc[j] = _mm256_fmadd_ps(a, acc[j], b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 14; i++) s = _mm256_add_ps(s, acc[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  return lanes[0] + lanes[7];
}

__attribute__((target("avx512f,avx512bw,avx512bf16"), noinline)) float peakBf16Loop(long n) {
  __m512 acc[16];
  for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps(float(i) * 1e-9f);
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3300);
  for (long i = 0; i < n; i++) {
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}
#endif

volatile float sink;

struct Case {
  std::string label;
  Problem p;
  std::vector<char> a, b;
  std::vector<float> c;
  CpuConfig cfg;
  const MicroKernel* uk = nullptr;
  std::unique_ptr<PackedWeight> packed;
  std::vector<char> kernelA, kernelB;  // the in-cache kernel's operands
  std::vector<float> kernelC;
  std::vector<char> packScratch;
  std::vector<double> peak, kernel, frame, packMs, frameMs;
};

void setUp(Case& c, int64_t m, int64_t n, int64_t k, DType t, bool prepacked) {
  Problem& p = c.p;
  p.m = m;
  p.n = n;
  p.k = k;
  p.transB = prepacked;  // x @ W^T against W [n, k]; squares A [m, k] @ B [k, n]
  p.lda = k;
  p.ldb = prepacked ? k : n;
  p.ldc = n;
  p.dtypeA = p.dtypeB = t;
  p.dtypeC = DType::F32;
  const size_t es = size_t(dtypeSize(t));
  c.a.assign(size_t(m * k) * es, 0);
  c.b.assign(size_t(n * k) * es, 0);
  // 1.0 (f32: 0x3f800000, bf16: 0x3f80) in every element: the figures do not depend on values.
  for (size_t i = 0; i + es <= c.a.size(); i += es) std::memcpy(&c.a[i + es - 2], "\x80\x3f", 2);
  for (size_t i = 0; i + es <= c.b.size(); i += es) std::memcpy(&c.b[i + es - 2], "\x80\x3f", 2);
  c.c.assign(size_t(m * n), 0.0f);
  // A prepacked weight gets the panel prepack() makes; the heuristic then runs its blocked kernel at every M
  // (plain small-M calls would take the GEMV path instead).
  c.cfg = prepacked ? cpuDefaultPackedConfig(p) : cpuHeuristic(p);
  if (c.cfg.isGemv()) return;
  c.uk = findMicroKernel(c.cfg.kernel);
  if (prepacked) {
    Status s = prepackWeight(p, c.b.data(), *c.uk, c.cfg.kc, &c.packed);
    if (!s.isOk()) {
      std::fprintf(stderr, "prepack failed: %s\n", s.message().c_str());
      std::exit(1);
    }
    p.packedB = c.packed->layout();
    c.cfg = cpuHeuristic(p);
  }
  c.cfg.threads = 1;
  const size_t ps = size_t(panelElementSize(c.uk->aFormat));
  c.kernelA.assign(size_t(c.cfg.mc) * size_t(c.cfg.kc) * ps + 64, 0);
  c.kernelB.assign(size_t(8 * c.uk->nr) * size_t(c.cfg.kc) * ps + 64, 0);
  for (size_t i = 0; i + ps <= c.kernelA.size(); i += ps) std::memcpy(&c.kernelA[i + ps - 2], "\x80\x3f", 2);
  for (size_t i = 0; i + ps <= c.kernelB.size(); i += ps) std::memcpy(&c.kernelB[i + ps - 2], "\x80\x3f", 2);
  c.kernelC.assign(size_t(c.cfg.mc) * 8 * c.uk->nr, 0.0f);
  const int64_t kPad = c.uk->paddedK(std::min<int64_t>(k, c.cfg.kc));
  c.packScratch.assign(size_t(std::max<int64_t>((m + c.uk->mr) * kPad, (std::min<int64_t>(n, c.cfg.nc) + c.uk->nr) * kPad)) * ps + 64, 0);
}

void measure(Case& c, double seconds) {
  const MicroKernel& uk = *c.uk;
  const CpuConfig& cfg = c.cfg;
  const Problem& p = c.p;
#if defined(__x86_64__)
  if (uk.isa == Isa::Avx512) {
    c.peak.push_back(rate(1e6 * 16 * 32, seconds / 4, [] { sink = peakFmaLoop(1000000); }));
  } else if (uk.isa == Isa::Avx2) {
    c.peak.push_back(rate(1e6 * 14 * 16, seconds / 4, [] { sink = peakFmaAvx2Loop(1000000); }));
  } else {
    c.peak.push_back(rate(1e6 * 16 * 64, seconds / 4, [] { sink = peakBf16Loop(1000000); }));
  }
#endif
  // The kernel in cache: mc/MR A slivers under each of 8 B slivers, as the frame sweeps one block.
  const int64_t slivers = cfg.mc / uk.mr, kb = cfg.kc;
  const int ps = panelElementSize(uk.aFormat);
  const int64_t ldc = 8 * uk.nr;
  c.kernel.push_back(rate(2.0 * double(cfg.mc) * double(kb) * double(ldc), seconds, [&] {
    for (int64_t j = 0; j < 8; j++) {
      for (int64_t s = 0; s < slivers; s++) {
        uk.run(kb, c.kernelA.data() + s * kb * uk.mr * ps, c.kernelB.data() + j * kb * uk.nr * ps,
               c.kernelC.data() + s * uk.mr * ldc + j * uk.nr, ldc, uk.mr, uk.nr, 1.0f, 1.0f);
      }
    }
  }));
  Buffers buf;
  buf.a = c.a.data();
  buf.b = c.packed ? static_cast<const void*>(c.packed.get()) : c.b.data();
  buf.c = c.c.data();
  c.frame.push_back(rate(p.flops(), seconds, [&] { runCpuGemm(p, cfg, uk, buf); }));
  c.frameMs.push_back(p.flops() / c.frame.back() / 1e6);
  // Packing as the frame does it on one thread: A once per column block of nc, B once (not at all for a
  // prepacked weight), each in blocks of kc.
  double packSeconds = 0;
  {
    const double s0 = threadSeconds();
    const int64_t columnBlocks = (p.n + cfg.nc - 1) / cfg.nc;
    for (int64_t jb = 0; jb < columnBlocks; jb++) {
      for (int64_t pc = 0; pc < p.k; pc += cfg.kc) {
        const int64_t kbk = std::min<int64_t>(cfg.kc, p.k - pc);
        for (int64_t ic = 0; ic < p.m; ic += cfg.mc) {
          packA(p, c.a.data(), ic, std::min<int64_t>(cfg.mc, p.m - ic), pc, kbk, uk.paddedK(kbk), uk.mr, uk.aFormat,
                c.packScratch.data());
        }
        if (!c.packed) {
          const int64_t j0 = jb * cfg.nc;
          packB(p, c.b.data(), pc, kbk, uk.paddedK(kbk), j0, std::min<int64_t>(cfg.nc, p.n - j0), uk.nr, uk.bFormat,
                c.packScratch.data(), uk.paddedK(kbk) * uk.nr);
        }
      }
    }
    packSeconds = threadSeconds() - s0;
  }
  c.packMs.push_back(packSeconds * 1e3);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::vector<std::unique_ptr<Case>> cases;
  for (DType t : {DType::F32, DType::BF16}) {
    std::vector<int64_t> squares = quick ? std::vector<int64_t>{256} : std::vector<int64_t>{1024, 2048};
    std::vector<int64_t> ms = quick ? std::vector<int64_t>{32} : std::vector<int64_t>{32, 128, 512};
    const int64_t w = quick ? 1024 : 4096;
    for (int64_t s : squares) {
      std::unique_ptr<Case> c(new Case());
      c->label = "square " + std::to_string(s);
      setUp(*c, s, s, s, t, false);
      cases.push_back(std::move(c));
    }
    for (int64_t m : ms) {
      std::unique_ptr<Case> c(new Case());
      c->label = "M=" + std::to_string(m) + " W " + std::to_string(w) + "x" + std::to_string(w) + " prepacked";
      setUp(*c, m, w, w, t, true);
      cases.push_back(std::move(c));
    }
  }
  // The x86 SIMD kernels only, for which there is a peak loop (AMX and scalar have none).
  cases.erase(std::remove_if(cases.begin(), cases.end(),
                             [](const std::unique_ptr<Case>& c) {
                               return c->uk == nullptr || (c->uk->isa != Isa::Avx512 && c->uk->isa != Isa::Avx512Bf16 &&
                                                           c->uk->isa != Isa::Avx2);
                             }),
              cases.end());
  if (cases.empty()) {
    std::printf("gemmkit-cpu-breakdown: this CPU runs no AVX2 or AVX-512 blocked kernel; nothing to break down\n");
    return 0;
  }
  const int rounds = quick ? 2 : 5;
  const double seconds = quick ? 0.02 : 0.15;
  for (int r = 0; r < rounds; r++) {
    for (auto& c : cases) measure(*c, seconds);
  }
  std::printf("one thread, GFLOP/s per second of thread CPU time (median of %d rounds)\n", rounds);
  std::printf("%-30s %-5s %-36s %8s %8s %6s %8s %6s %8s %8s %7s\n", "shape", "dtype", "config", "peak", "kernel",
              "%peak", "frame", "%peak", "%kernel", "frame ms", "packing");
  for (auto& c : cases) {
    const double peak = median(c->peak), kernel = median(c->kernel), frame = median(c->frame);
    const double frameMs = median(c->frameMs), packMs = median(c->packMs);
    std::printf("%-30s %-5s %-36s %8.1f %8.1f %5.0f%% %8.1f %5.0f%% %7.0f%% %8.3f %6.1f%%\n", c->label.c_str(),
                dtypeName(c->p.dtypeA), c->cfg.name().c_str(), peak, kernel, 100 * kernel / peak, frame,
                100 * frame / peak, 100 * frame / kernel, frameMs, 100 * packMs / frameMs);
  }
  return 0;
}
