// gemmkit-check: the engine's correctness check without Node. Runs every registered backend's
// available configurations (forced with small cache blocks so every loop wraps; every blocked kernel,
// GEMV kernel and, through GEMMKIT_CPU_EMULATE_AMX, the AMX kernel's logic on emulated tiles) against the
// float64 reference at awkward sizes, all transposes and dtypes; prepacked weights against unpacked runs
// bit for bit; every config on 1, 2 and 3 threads bit for bit; the vectorised packing, rounding and
// epilogue against their portable versions; and the simulated refusal of AMX permission. Exit status 0
// when everything agrees.
// Used by .ci/run on x86-64 and, cross-compiled, on arm64 under qemu (portable kernels only there).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/reference_gemm.h"
#include "../cpu/cpu_backend.h"
#include "../cpu/cpu_config.h"
#include "../cpu/cpu_features.h"
#include "../cpu/epilogue.h"
#include "../cpu/gemv.h"
#include "../cpu/micro_kernels.h"
#include "../cpu/pack.h"
#include "../cpu/packed_weight.h"
#include "../cpu/system_blas.h"
#include "check_support.h"

using namespace gemmkit;

namespace {

void checkOne(const Backend& be, const std::string& config, Problem p, std::mt19937& rng) {
  p.lda = p.colsA() > 0 ? p.colsA() : 1;
  p.ldb = p.colsB() > 0 ? p.colsB() : 1;
  p.ldc = p.n > 0 ? p.n : 1;
  p.strideA = p.rowsA() * p.lda;
  p.strideB = p.rowsB() * p.ldb;
  p.strideC = p.m * p.ldc;
  HostMatrix a = randomMatrix(p.batch * p.strideA, p.dtypeA, rng);
  HostMatrix b = randomMatrix(p.batch * p.strideB, p.dtypeB, rng);
  HostMatrix c0 = randomMatrix(p.batch * p.strideC, p.dtypeC, rng);
  HostMatrix bias = randomMatrix(p.n, p.dtypeBias, rng);
  HostMatrix got = c0, want = c0;
  std::vector<double> c64(size_t(p.batch * p.m * p.n) + 1);
  referenceGemm(p, Buffers{a.data(), b.data(), want.data(), bias.data()}, c64.data());
  Status s = be.run(p, config, Buffers{a.data(), b.data(), got.data(), bias.data()});
  expectReference(p, p.describe() + " " + config, s, got.data(), c64.data());
}

// A blocked config of kernel k whose cache blocks hold two register blocks each way and kc, the first
// multiple of the kernel's K alignment from minKc, a few steps of depth: every loop of the frame wraps.
CpuConfig smallBlocks(const MicroKernel& k, int minKc, int threads) {
  CpuConfig c;
  c.kernel = k.id;
  c.mc = 2 * k.mr;
  c.kc = (minKc + k.kAlign - 1) / k.kAlign * k.kAlign;
  c.nc = 2 * k.nr;
  c.threads = threads;
  return c;
}

CpuConfig gemvConfig(const GemvKernel& g, int kc, int ks, int threads) {
  CpuConfig c;
  c.kernel = g.id;
  c.kc = kc;
  c.ks = ks;
  c.threads = threads;
  return c;
}

// Every config this CPU runs, with cache blocks small enough that every loop of the frame wraps.
std::vector<std::string> forcedConfigs() {
  std::vector<std::string> configs;
  for (const MicroKernel& k : microKernels()) {
    if (isaAvailable(k.isa)) configs.push_back(smallBlocks(k, 13, 2).name());
  }
  for (const GemvKernel& g : gemvKernels()) {
    if (!isaAvailable(g.isa)) continue;
    // Depth blocks of 32 and 64 make every sum of the checked sizes span several blocks.
    configs.push_back(gemvConfig(g, 32, 1, 2).name());
    configs.push_back(gemvConfig(g, 64, 3, 3).name());
    configs.push_back(gemvConfig(g, 1024, 1, 1).name());
  }
  return configs;
}

void checkConfigsAgainstReference(const Backend& be, std::mt19937& rng) {
  const int64_t sizes[][3] = {{1, 1, 1}, {7, 7, 7}, {45, 45, 45}, {77, 45, 129}, {127, 127, 127}, {33, 65, 31},
                              {5, 6, 700}, {64, 1, 100}, {1, 64, 100}, {0, 5, 3}, {4, 0, 3}, {3, 4, 0}};
  const DType dtypes[] = {DType::F32, DType::F16, DType::BF16};
  std::vector<std::string> configs = forcedConfigs();
  Problem probe;
  configs.push_back(be.heuristic(probe));
  for (const SystemBlas& blas : systemBlasLibraries()) configs.push_back(blas.config);  // f32 problems only
  for (const std::string& config : configs) {
    for (const auto& s : sizes) {
      for (int t = 0; t < 4; t++) {
        for (DType da : dtypes) {
          Problem p;
          p.m = s[0];
          p.n = s[1];
          p.k = s[2];
          p.transA = t & 1;
          p.transB = t & 2;
          p.dtypeA = da;
          p.dtypeB = dtypes[(int(da) + t) % 3];
          p.dtypeC = dtypes[(int(da) + 2 * t) % 3];
          p.batch = t == 3 ? 2 : 1;
          p.hasBias = t >= 2;
          p.activation = t == 2 ? Activation::Relu : Activation::None;
          p.beta = t == 1 ? 2.0f : 0.0f;
          if (!be.supports(p, config).isOk()) {
            // bf16-only kernels: the same problem with bf16 operands instead.
            p.dtypeA = p.dtypeB = DType::BF16;
            if (!be.supports(p, config).isOk()) continue;
          }
          checkOne(be, config, p, rng);
        }
      }
    }
  }
  std::printf("%s: %zu configs checked against the reference\n", be.name(), configs.size());
}

// A weight prepacked for each blocked kernel gives results identical to the unpacked run.
void checkPrepacked(const Backend& be, std::mt19937& rng) {
  int count = 0;
  for (const MicroKernel& k : microKernels()) {
    if (!isaAvailable(k.isa)) continue;
    const CpuConfig cfg = smallBlocks(k, 40, 2);
    const int kc = cfg.kc;
    const std::string config = cfg.name();
    for (bool transB : {false, true}) {
      for (int64_t m : {int64_t(1), int64_t(k.mr + 1), int64_t(37)}) {
        Problem p;
        p.m = m;
        p.n = k.nr + 3;
        p.k = 2 * kc + 5;
        p.transB = transB;
        p.dtypeA = p.dtypeB = k.bFormat == PanelFormat::F32 ? DType::F16 : DType::BF16;
        p.hasBias = true;
        p.activation = Activation::Gelu;
        p.lda = p.k;
        p.ldb = p.colsB() + 3;  // a padded leading dimension
        p.ldc = p.n;
        HostMatrix a = randomMatrix(p.m * p.lda, p.dtypeA, rng), b = randomMatrix(p.rowsB() * p.ldb, p.dtypeB, rng);
        HostMatrix bias = randomMatrix(p.n, p.dtypeBias, rng);
        std::vector<float> plain(size_t(p.m * p.n)), packed(size_t(p.m * p.n));
        Status s = be.run(p, config, Buffers{a.data(), b.data(), plain.data(), bias.data()});
        std::unique_ptr<PackedWeight> w;
        if (s.isOk()) s = prepackWeight(p, b.data(), k, kc, &w);
        Problem pp = p;
        if (s.isOk()) {
          pp.packedB = w->layout();
          s = be.run(pp, config, Buffers{a.data(), w.get(), packed.data(), bias.data()});
        }
        checks++;
        count++;
        if (!s.isOk()) {
          fail("prepacked " + pp.describe() + " " + config + ": " + s.message());
        } else if (std::memcmp(plain.data(), packed.data(), plain.size() * sizeof(float)) != 0) {
          fail("prepacked " + pp.describe() + " " + config + " differs from the unpacked result");
        }
      }
    }
  }
  std::printf("prepacked: %d weights checked bit for bit\n", count);
}

// Every config gives bit-identical results whatever the thread count (1, 2, 3; the pool is sized 3 for this
// run): tall problems (the threads split M and share packed panels of B as a team), wide ones (they split
// N), x @ W^T (the GEMV dot kernels), f32 and bf16 outputs.
void checkThreadInvariance(const Backend& be, std::mt19937& rng) {
  int count = 0;
  std::vector<CpuConfig> families;  // run with 1, 2 and 3 threads
  for (const MicroKernel& k : microKernels()) {
    if (isaAvailable(k.isa)) families.push_back(smallBlocks(k, 40, 1));
  }
  for (const GemvKernel& g : gemvKernels()) {
    if (isaAvailable(g.isa)) families.push_back(gemvConfig(g, 64, 2, 1));
  }
  const int64_t shapes[][3] = {{131, 45, 97}, {45, 131, 97}, {200, 33, 64}};
  for (CpuConfig family : families) {
    for (const auto& s : shapes) {
      for (int t = 0; t < 4; t++) {
        Problem p;
        p.m = s[0];
        p.n = s[1];
        p.k = s[2];
        p.transA = t & 1;
        p.transB = t & 2;
        p.dtypeA = p.dtypeB = DType::BF16;
        p.dtypeC = t == 1 ? DType::BF16 : DType::F32;
        p.hasBias = t == 3;
        p.lda = p.colsA();
        p.ldb = p.colsB();
        p.ldc = p.n;
        family.threads = 1;
        if (!be.supports(p, family.name()).isOk()) continue;
        HostMatrix a = randomMatrix(p.rowsA() * p.lda, p.dtypeA, rng), b = randomMatrix(p.rowsB() * p.ldb, p.dtypeB, rng);
        HostMatrix bias = randomMatrix(p.n, p.dtypeBias, rng);
        std::vector<float> first;
        for (int threads = 1; threads <= 3; threads++) {
          std::vector<float> c(size_t(p.m * p.n), NAN);
          family.threads = threads;
          const std::string config = family.name();
          Status st = be.run(p, config, Buffers{a.data(), b.data(), c.data(), bias.data()});
          checks++;
          count++;
          if (!st.isOk()) {
            fail(p.describe() + " " + config + ": " + st.message());
          } else if (threads == 1) {
            first = c;
          } else if (std::memcmp(first.data(), c.data(), c.size() * sizeof(float)) != 0) {
            fail(p.describe() + " " + config + " differs from the result on 1 thread");
          }
        }
      }
    }
  }
  std::printf("thread counts: %d runs compared bit for bit with 1 thread\n", count);
}

// The vectorised packing equals the portable packing, byte for byte, for every format and source layout:
// what packSlivers picks on this CPU, and each vector path the CPU can run on its own (an AVX-512 machine
// also checks the AVX2 path it would take on a CPU without AVX-512).
void checkPacking(std::mt19937& rng) {
  // A vector path that has no case for a layout returns false having written nothing: the portable loops
  // fill it, as packSlivers does.
  using VectorPack = bool (*)(DType, const void*, int64_t, int64_t, int64_t, int, int64_t, int64_t, PanelFormat, void*, int64_t);
  struct Path {
    const char* name;
    VectorPack vector;  // null: packSlivers itself
  };
  std::vector<Path> paths = {{"packSlivers", nullptr}};
  if (cpuFeatures().avx2 && cpuFeatures().f16c) paths.push_back({"AVX2", packSliversAvx2});
  if (cpuFeatures().avx512) paths.push_back({"AVX-512", packSliversAvx512});
  int count = 0;
  const PanelFormat formats[] = {PanelFormat::F32, PanelFormat::Bf16Pairs, PanelFormat::Bf16K32};
  for (PanelFormat f : formats) {
    for (DType t : {DType::F32, DType::F16, DType::BF16}) {
      if (!panelAccepts(f, t)) continue;
      for (int R : {4, 6, 14, 16, 32, 64}) {
        for (int64_t kb : {int64_t(1), int64_t(15), int64_t(33), int64_t(64)}) {
          for (bool kContiguous : {false, true}) {
            const int64_t count_ = 2 * R + 3, kAlign = f == PanelFormat::Bf16K32 ? 32 : 2;
            const int64_t kPad = (kb + kAlign - 1) / kAlign * kAlign + (f == PanelFormat::F32 ? 1 : 0);
            const int64_t ld = (kContiguous ? kb : count_) + 5;
            const int64_t strideX = kContiguous ? ld : 1, strideK = kContiguous ? 1 : ld;
            HostMatrix src = randomMatrix((kContiguous ? count_ : kb) * ld, t, rng);
            const int64_t slivers = (count_ + R - 1) / R, stride = kPad * R + 7;
            const size_t bytes = size_t(slivers * stride) * panelElementSize(f);
            std::vector<char> portable(bytes, 0x55);
            packSliversPortable(t, src.data(), count_, kb, kPad, R, strideX, strideK, f, portable.data(), stride);
            for (const Path& path : paths) {
              std::vector<char> fast(bytes, 0x55);
              if (!path.vector) {
                packSlivers(t, src.data(), count_, kb, kPad, R, strideX, strideK, f, fast.data(), stride);
              } else if (!path.vector(t, src.data(), count_, kb, kPad, R, strideX, strideK, f, fast.data(), stride)) {
                packSliversPortable(t, src.data(), count_, kb, kPad, R, strideX, strideK, f, fast.data(), stride);
              }
              checks++;
              count++;
              if (fast != portable) {
                fail(std::string("packing (") + path.name + ") " + dtypeName(t) + " format " + std::to_string(int(f)) +
                     " R=" + std::to_string(R) + " kb=" + std::to_string(kb) + (kContiguous ? " k-contiguous" : " sliver-contiguous"));
              }
            }
          }
        }
      }
    }
  }
  std::printf("packing: %d layouts x paths compared with the portable packing\n", count);
}

// Rounding to bf16/f16 on every path is f32ToBf16 / f32ToF16, bit for bit, special values included;
// the vectorised epilogue equals the portable one exactly where it must (none/relu) and within a few ulps
// for gelu/silu.
void checkRoundingAndEpilogue(std::mt19937& rng) {
  std::vector<float> values = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65520.0f, 65519.99f, 1e-8f,
                               5.96e-8f, 2.98e-8f, 6.1e-5f, 3.4e38f, -1.5f, 1.00390625f, 1.0078125f, 1.01171875f};
  std::uniform_int_distribution<uint32_t> bits;
  while (values.size() < 4096) values.push_back(bitsFloat(bits(rng)));
  for (DType t : {DType::BF16, DType::F16}) {
    std::vector<uint16_t> fast(values.size());
    storeRowFromF32(t, values.data(), int64_t(values.size()), fast.data());
    for (size_t i = 0; i < values.size(); i++) {
      uint16_t want = t == DType::BF16 ? f32ToBf16(values[i]) : f32ToF16(values[i]);
      checks++;
      if (fast[i] != want) {
        fail(std::string("rounding to ") + dtypeName(t) + " of bits 0x" + std::to_string(floatBits(values[i])) + " gave " +
             std::to_string(fast[i]) + ", want " + std::to_string(want));
        break;
      }
    }
  }
  std::uniform_real_distribution<float> uni(-12.0f, 12.0f);
  for (Activation act : {Activation::None, Activation::Relu, Activation::Gelu, Activation::Silu}) {
    for (DType out : {DType::F32, DType::BF16, DType::F16}) {
      Problem p;
      p.m = 3;
      p.n = 37;
      p.k = 1;
      p.ldc = p.n;
      p.dtypeC = out;
      p.activation = act;
      p.beta = out == DType::F32 ? 0.0f : 0.5f;
      std::vector<float> acc(size_t(p.m * p.n)), bias(size_t(p.n));
      for (float& v : acc) v = uni(rng);
      for (float& v : bias) v = uni(rng);
      std::vector<uint16_t> c0(size_t(p.m * p.n) * 2);
      for (int64_t i = 0; i < p.m * p.n; i++) storeFromF32(c0.data(), out, i, uni(rng));
      std::vector<uint16_t> cFast = c0, cPortable = c0;
      std::vector<float> accFast = acc, accPortable = acc;
      // f32 outputs finalize in place (the accumulator is C).
      float* af = out == DType::F32 ? reinterpret_cast<float*>(cFast.data()) : accFast.data();
      float* ap = out == DType::F32 ? reinterpret_cast<float*>(cPortable.data()) : accPortable.data();
      if (out == DType::F32) {
        std::memcpy(af, acc.data(), acc.size() * 4);
        std::memcpy(ap, acc.data(), acc.size() * 4);
      }
      finalizeRows(p, af, p.n, cFast.data(), bias.data(), 0, p.m, 0, p.n);
      finalizeRowsPortable(p, ap, p.n, cPortable.data(), bias.data(), 0, p.m, 0, p.n);
      checks++;
      for (int64_t i = 0; i < p.m * p.n; i++) {
        float f = loadAsF32(cFast.data(), out, i), q = loadAsF32(cPortable.data(), out, i);
        bool exact = act == Activation::None || act == Activation::Relu;
        double tol = exact ? 0.0 : (out == DType::F32 ? 8.0 * 0x1p-24 : (out == DType::BF16 ? 0x1p-8 : 0x1p-11)) * (1.0 + std::fabs(q));
        if (!(std::fabs(double(f) - double(q)) <= tol) && !(std::isnan(f) && std::isnan(q))) {
          fail(std::string("finalize ") + activationName(act) + " -> " + dtypeName(out) + " element " + std::to_string(i) + ": " +
               std::to_string(f) + " vs portable " + std::to_string(q));
          break;
        }
      }
    }
  }
  std::printf("rounding and epilogue: compared with the scalar conversions\n");
}

// GEMMKIT_CPU_AMX_REFUSE=1: AMX (here the emulated kernel) is refused, the heuristic falls back.
void checkAmxRefusal(const Backend& be) {
  if (!findMicroKernel("amxemu.bf16.32x32") || !isaAvailable(Isa::AmxEmulated)) return;  // x86-64 builds only
  Problem p;
  p.m = p.n = p.k = 64;
  p.lda = p.ldb = p.ldc = 64;
  p.dtypeA = p.dtypeB = DType::BF16;
  const std::string amx = "cpu.amxemu.bf16.32x32.mc64.kc64.nc64.t1";
  checks += 3;
  if (be.heuristic(p).find("amx") == std::string::npos) fail("heuristic for bf16 does not pick the (emulated) AMX kernel");
  setenv("GEMMKIT_CPU_AMX_REFUSE", "1", 1);
  if (be.heuristic(p).find("amx") != std::string::npos) fail("heuristic still picks AMX after permission was refused");
  if (be.supports(p, amx).isOk()) fail("an AMX config is still supported after permission was refused");
  std::printf("AMX permission refusal (simulated): heuristic falls back to %s\n", be.heuristic(p).c_str());
  unsetenv("GEMMKIT_CPU_AMX_REFUSE");
}

}  // namespace

int main() {
  // The AMX kernel's logic runs on emulated tiles wherever the real instructions are absent.
  setenv("GEMMKIT_CPU_EMULATE_AMX", "1", 1);
  // Three pool threads (whatever the cores), so teams of 1, 2 and 3 threads all run.
  setenv("GEMMKIT_NUM_THREADS", "3", 0);
  registerCpuBackend();
  std::mt19937 rng(42);
  for (const Backend* be : allBackends()) {
    checkConfigsAgainstReference(*be, rng);
    checkPrepacked(*be, rng);
    checkThreadInvariance(*be, rng);
    checkAmxRefusal(*be);
  }
  checkPacking(rng);
  checkRoundingAndEpilogue(rng);
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
