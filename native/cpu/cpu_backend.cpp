#include "cpu_backend.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

#include "../core/timing.h"
#include "cpu_features.h"
#include "gemm_frame.h"
#include "gemv.h"
#include "micro_kernels.h"
#include "ops.h"
#include "packed_weight.h"
#include "system_blas.h"
#include "thread_pool.h"

namespace gemmkit {

namespace {

// Below this many flops per call, handing work to a second thread costs more than it saves.
constexpr double kMinFlopsPerExtraThread = 4.0e6;
// Above this many flops per call, one thread never beats the pool; the tuner does not try it.
constexpr double kMaxFlopsForOneThread = 1.0e9;
// GEMV is memory bound: a second thread pays off once the weight no longer streams from L2 in a few us.
constexpr double kMinWeightBytesPerExtraThread = 256.0 * 1024;

// A block size is worth trying when it is smaller than the problem's extent, or is the smallest choice
// that covers it (larger ones then run identically).
bool coversFirst(int64_t block, int64_t extent, std::initializer_list<int64_t> choices) {
  if (block < extent) return true;
  for (int64_t c : choices) {
    if (c >= extent && c < block) return false;
  }
  return true;
}

int poolThreads() { return ThreadPool::instance().size(); }

int clampThreads(double useful) {
  int pool = poolThreads();
  if (useful < 1) return 1;
  return useful < pool ? int(useful) : pool;
}

int defaultThreads(const Problem& p) { return clampThreads(p.flops() / kMinFlopsPerExtraThread); }

// Cache blocks for a register block on current x86 server cores (measured on Zen 4, 1 MiB L2): a deep
// kc (512 f32 / 1024 bf16 k, 64 KiB per B sliver; CPU time per call 8% below kc 384 / 768) amortises
// the C tile's load and store, an A block of 12 slivers (344 KiB) stays in L2 and the B panel in L3;
// the tuner refines per shape.
CpuConfig blockedConfig(const MicroKernel& k, int threads) {
  CpuConfig c;
  c.kernel = k.id;
  c.kc = k.bFormat == PanelFormat::F32 ? 512 : 1024;
  if (k.mr >= 32) c.kc = 512;  // AMX: 32x32 per call, 16 tile steps of 32 k
  c.mc = (k.mr >= 8 ? (k.mr >= 32 ? 4 : 12) : 48) * k.mr;
  c.nc = (4096 / k.nr) * k.nr;
  c.threads = threads;
  return c;
}

bool kernelUsable(const MicroKernel& k, const Problem& p) {
  return isaAvailable(k.isa) && panelAccepts(k.aFormat, p.dtypeA) && panelAccepts(k.bFormat, p.dtypeB);
}

const MicroKernel& preferredKernel(const Problem& p) {
  static const char* order[] = {"amx.bf16.32x32",   "amxemu.bf16.32x32", "avx512bf16.bf16.14x32",
                                "avx512.f32.14x32", "avx2.f32.6x16",     "scalar.f32.4x8"};
  for (const char* id : order) {
    const MicroKernel* k = findMicroKernel(id);
    if (k && kernelUsable(*k, p)) return *k;
  }
  return *findMicroKernel("scalar.f32.4x8");
}

// "<kernel id>.kc<N>" -> kernel and kc.
bool parseLayout(const std::string& layout, const MicroKernel** kernel, int* kc) {
  size_t dot = layout.rfind(".kc");
  if (dot == std::string::npos) return false;
  *kernel = findMicroKernel(layout.substr(0, dot));
  *kc = std::atoi(layout.c_str() + dot + 3);
  return *kernel != nullptr && *kc > 0;
}

// A weight packed for a kernel that multiplies bf16 inputs only (a bf16 panel of the AMX or AVX512-BF16
// kernels) serves f32 and f16 inputs through the f32 kernels, which widen each block of the panel to f32
// as they pack it (exact, as packing the bf16 weight itself is): rounding the inputs to bf16 would lose
// precision the unpacked call keeps. Only there may a blocked config read a panel of another layout.
bool widensPanel(const Problem& p, const MicroKernel& k) {
  const MicroKernel* panel;
  int kc;
  return parseLayout(p.packedB, &panel, &kc) && !panelAccepts(panel->aFormat, p.dtypeA) && k.bFormat == PanelFormat::F32;
}

bool gemvUsable(const GemvKernel& g, const Problem& p) {
  return isaAvailable(g.isa) && (!g.bf16Only() || (p.dtypeA == DType::BF16 && p.dtypeB == DType::BF16));
}

const GemvKernel* preferredGemv(const Problem& p) {
  for (const char* id : {"gemv.avx512bf16", "gemv.avx512", "gemv.avx2"}) {
    const GemvKernel* k = findGemvKernel(id);
    if (k && gemvUsable(*k, p)) return k;
  }
  return nullptr;
}

CpuConfig gemvConfig(const GemvKernel& k, const Problem& p) {
  CpuConfig c;
  c.kernel = k.id;
  c.kc = gemvDepthBlock(p, k);
  c.ks = 1;
  double weightBytes = double(p.k) * double(p.n) * dtypeSize(p.dtypeB) * double(p.strideB ? p.batch : 1);
  c.threads = std::max(clampThreads(weightBytes / kMinWeightBytesPerExtraThread), defaultThreads(p));
  return c;
}

// Ok when cfg can run p on this CPU, else why not (ISA, dtypes, prepacked layout). Every run() checks this,
// so the config's name is only built for a message.
Status checkRunnable(const Problem& p, const CpuConfig& cfg) {
  if (cfg.isGemv()) {
    const GemvKernel* g = findGemvKernel(cfg.kernel);
    std::string why = isaUnavailableReason(g->isa);
    if (!why.empty()) return unsupported("config " + cfg.name() + " cannot run here: " + why + " (" + cpuFeatures().model + ")");
    if (!p.packedB.empty()) {
      return unsupported("config " + cfg.name() + " reads plain weights; this problem's weight is prepacked as " + p.packedB);
    }
    if (!gemvUsable(*g, p)) return unsupported("config " + cfg.name() + " needs bf16 A and B; this problem is " + p.describe());
    return Status::ok();
  }
  const MicroKernel* k = findMicroKernel(cfg.kernel);
  std::string why = isaUnavailableReason(k->isa);
  if (!why.empty()) return unsupported("config " + cfg.name() + " cannot run here: " + why + " (" + cpuFeatures().model + ")");
  if (!panelAccepts(k->aFormat, p.dtypeA) || !panelAccepts(k->bFormat, p.dtypeB)) {
    return unsupported("config " + cfg.name() + " needs bf16 A and B; this problem is " + p.describe());
  }
  if (!p.packedB.empty()) {
    std::string want = packedLayoutName(k->id, cfg.kc);
    if (want != p.packedB && !widensPanel(p, *k)) {
      return unsupported("config " + cfg.name() + " needs a weight packed as " + want + ", but it was prepacked as " + p.packedB);
    }
  }
  return Status::ok();
}

// The system BLAS behind config, or why it cannot run p (it reads plain weights only).
Status systemBlasFor(const Problem& p, const std::string& config, const SystemBlas** blas) {
  if (!p.packedB.empty()) return unsupported("config " + config + " reads plain weights, not prepacked ones");
  return findSystemBlas(p, config, blas);
}

class CpuBackend : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  std::vector<DeviceInfo> devices() const override {
    DeviceInfo d;
    d.name = cpuFeatures().model;
    d.arch = "cpu";
    for (const std::string& f : cpuFeatures().names()) d.arch += "." + f;
    d.computeUnits = poolThreads();
    return {d};
  }

  // The search space: every SIMD kernel this CPU runs for these dtypes (the scalar one only where there is
  // none) x KC x MC x threads, the GEMV kernels, plus each system BLAS for f32. Blocks at least as large as
  // the problem all run alike, so only the smallest of those is kept; one thread is offered only where a
  // call is small enough for it to win. A prepacked B fixes the kernel and kc (and rules out GEMV and the
  // system BLAS). The heuristic default comes first (the tuner times it first, and a budget cut keeps it).
  std::vector<std::string> candidates(const Problem& p) const override {
    std::vector<std::string> out = {heuristic(p)};
    auto add = [&out](const std::string& name) {
      for (const std::string& have : out) {
        if (have == name) return;
      }
      out.push_back(name);
    };
    const MicroKernel* packedKernel = nullptr;
    int packedKc = 0;
    if (!p.packedB.empty() && !parseLayout(p.packedB, &packedKernel, &packedKc)) return out;
    // A panel whose kernel cannot take these inputs is read by the heuristic's f32 kernel (widensPanel).
    if (packedKernel && !kernelUsable(*packedKernel, p)) return out;
    std::vector<int> threadChoices = {poolThreads(), defaultThreads(p)};
    if (p.flops() < kMaxFlopsForOneThread) threadChoices.push_back(1);
    bool haveSimd = false;
    for (const MicroKernel& k : microKernels()) haveSimd = haveSimd || (k.isa != Isa::Scalar && kernelUsable(k, p));
    // The preferred kernel's variants first, so a shape whose time budget runs out has tried the best.
    std::vector<const MicroKernel*> kernels = {packedKernel ? packedKernel : &preferredKernel(p)};
    for (const MicroKernel& k : microKernels()) {
      if (packedKernel) break;
      if (&k != kernels[0] && kernelUsable(k, p) && !(haveSimd && k.isa == Isa::Scalar)) kernels.push_back(&k);
    }
    for (const MicroKernel* k : kernels) {
      const std::initializer_list<int64_t> kcChoices = {256, 384, 512, 768, 1024};
      for (int threads : threadChoices) {
        for (int64_t kc : kcChoices) {
          if (packedKernel ? kc != packedKc : !coversFirst(kc, p.k, kcChoices)) continue;
          for (int mcSlivers : {12, 4, 24}) {
            if (!coversFirst(mcSlivers * k->mr, p.m, {4 * k->mr, 12 * k->mr, 24 * k->mr})) continue;
            CpuConfig c = blockedConfig(*k, threads);
            c.kc = int(kc);
            c.mc = mcSlivers * k->mr;
            if (c.valid().isOk()) add(c.name());
          }
        }
        if (packedKernel) {  // the packed kc need not be one of the choices
          CpuConfig c = blockedConfig(*k, threads);
          c.kc = packedKc;
          if (c.valid().isOk()) add(c.name());
        }
      }
    }
    if (!p.packedB.empty()) return out;
    const GemvKernel* preferred = preferredGemv(p);
    for (const GemvKernel& g : gemvKernels()) {
      if (!gemvUsable(g, p) || (g.isa == Isa::Scalar && haveSimd)) continue;
      const int kc = gemvDepthBlock(p, g);
      for (int kcChoice : {kc, kc / 2, kc * 2}) {
        // Other depth blocks only for the preferred kernel's dot kernel, and only where they change the
        // blocking (the other kernels are there for the odd shape they win, at their default).
        if (kcChoice != kc && (&g != preferred || !p.transB || kcChoice < 256 || (kcChoice >= p.k && kc >= p.k))) continue;
        for (int ks : {1, 2}) {
          for (int threads : threadChoices) {
            CpuConfig c = gemvConfig(g, p);
            c.kc = kcChoice;
            c.ks = ks;
            c.threads = threads;
            if (c.valid().isOk()) add(c.name());
          }
        }
      }
    }
    for (const SystemBlas& blas : systemBlasLibraries()) {
      const SystemBlas* usable;
      if (findSystemBlas(p, blas.config, &usable).isOk()) add(blas.config);
    }
    return out;
  }

  std::string heuristic(const Problem& p) const override { return cpuHeuristic(p).name(); }

  // Blocked configs read a packed B panel whose layout is their kernel and kc; GEMV and the system BLAS
  // read B as stored.
  std::string packedLayout(const std::string& config) const override {
    if (isSystemBlasConfig(config)) return "";
    CpuConfig cfg;
    if (!CpuConfig::parse(config, &cfg).isOk() || cfg.isGemv()) return "";
    return packedLayoutName(cfg.kernel, cfg.kc);
  }

  Status supports(const Problem& p, const std::string& config) const override {
    if (isSystemBlasConfig(config)) {
      const SystemBlas* blas;
      return systemBlasFor(p, config, &blas);
    }
    CpuConfig cfg;
    Status s = CpuConfig::parse(config, &cfg);
    if (!s.isOk()) return s;
    return checkRunnable(p, cfg);
  }

  Status run(const Problem& p, const std::string& config, const Buffers& buf) const override {
    Status s = checkProblem(p);
    if (!s.isOk()) return s;
    if (isSystemBlasConfig(config)) {
      const SystemBlas* blas;
      s = systemBlasFor(p, config, &blas);
      // As many of the pool's threads as the engine's own default would use for this problem.
      return s.isOk() ? runSystemBlas(p, *blas, buf, defaultThreads(p)) : s;
    }
    CpuConfig cfg;
    s = CpuConfig::parse(config, &cfg);
    if (!s.isOk()) return s;
    s = checkRunnable(p, cfg);
    if (!s.isOk()) return s;
    try {
      if (cfg.isGemv()) return runCpuGemv(p, cfg, *findGemvKernel(cfg.kernel), buf);
      return runCpuGemm(p, cfg, *findMicroKernel(cfg.kernel), buf);
    } catch (const std::bad_alloc&) {
      return Status(StatusCode::OutOfMemory, "out of memory for packing buffers in " + p.describe());
    }
  }

  // The ops beyond GEMM (ops.h): checked, then run on the widest instruction set this CPU has.
  Status runOp(const OpDesc& op, const OpBuffers& buf) const override { return runCpuOp(op, buf); }

  // Times `config` on inputs that rotate through copies totalling at least opts.rotatingBytes, so each
  // run starts with A and B out of cache when that exceeds the last-level cache. The copies are kept for
  // the next call with the same sizes (the tuner times every candidate of a shape in a row), and timings
  // in one process are serialised: two at once would each measure the other. A problem with a prepacked B
  // is timed on B copies packed in its layout.
  Status time(const Problem& p, const std::string& config, const TimingOptions& opts,
              std::vector<double>* microseconds) const override {
    Status s = checkProblem(p);
    if (!s.isOk()) return s;
    s = supports(p, config);
    if (!s.isOk()) return s;
    if (opts.warmup < 0 || opts.iterations < 1) return outOfRange("timing needs warmup >= 0 and iterations >= 1");
    std::lock_guard<std::mutex> lock(timingMutex_);
    try {
      s = prepareTimingInputs(p, opts.rotatingBytes);
    } catch (const std::bad_alloc&) {
      timing_ = TimingInputs();
      return Status(StatusCode::OutOfMemory, "out of memory for the rotating timing inputs of " + p.describe());
    }
    if (!s.isOk()) {
      timing_ = TimingInputs();
      return s;
    }
    microseconds->clear();
    const size_t copies = timing_.a.size();
    const double started = nowMicroseconds();
    const int total = opts.warmup + opts.iterations;
    for (int it = 0; it < total; it++) {
      // The rotation continues across calls, so one-iteration calls do not all reuse (cached) copy 0.
      const size_t i = timing_.next++ % copies;
      const void* b = p.packedB.empty() ? static_cast<const void*>(timing_.b[i].data()) : timing_.packed[p.packedB][i].get();
      Buffers buf{timing_.a[i].data(), b, timing_.c.data(), timing_.bias.data()};
      const double t0 = nowMicroseconds();
      s = run(p, config, buf);
      const double t1 = nowMicroseconds();
      if (!s.isOk()) return s;
      if (it >= opts.warmup) microseconds->push_back(t1 - t0);
      if (opts.maxMilliseconds > 0 && (t1 - started) > opts.maxMilliseconds * 1000.0 && !microseconds->empty()) break;
    }
    return Status::ok();
  }

 private:
  // Timing inputs: copies of A and B (and one C and bias), as raw 16-bit words for every dtype, and the
  // B copies packed in each layout a prepacked problem asked for (kept, so configs of several layouts can
  // be timed in turn without packing again).
  struct TimingInputs {
    size_t bytesA = 0, bytesB = 0, bytesC = 0, bytesBias = 0;
    std::vector<std::vector<uint16_t>> a, b;
    std::map<std::string, std::vector<std::unique_ptr<PackedWeight>>> packed;  // layout -> one per B copy
    std::vector<uint16_t> c, bias;
    size_t next = 0;  // the copy the next timed run uses
  };

  Status prepareTimingInputs(const Problem& p, int64_t rotatingBytes) const {
    const size_t bytesA = size_t(p.batch * p.rowsA() * p.lda) * dtypeSize(p.dtypeA);
    const size_t bytesB = size_t((p.packedB.empty() ? p.batch : 1) * p.rowsB() * p.ldb) * dtypeSize(p.dtypeB);
    const size_t bytesC = size_t(p.batch * p.m * p.ldc) * dtypeSize(p.dtypeC);
    const size_t bytesBias = size_t(p.n) * 4;
    size_t copies = 1;
    if (rotatingBytes > 0 && bytesA + bytesB > 0) copies = std::min<size_t>(size_t(rotatingBytes) / (bytesA + bytesB) + 1, 64);
    TimingInputs& t = timing_;
    if (!(t.bytesA == bytesA && t.bytesB == bytesB && t.bytesC == bytesC && t.bytesBias >= bytesBias && t.a.size() == copies)) {
      t = TimingInputs();
      // Small normal values in every dtype: a word 0x3cxx is ~[1, 2) as f16, ~[0.008, 0.03) as bf16, and the
      // high half of an f32 in the same range. A multiplicative hash fills fast and never makes subnormals.
      auto fill = [](std::vector<uint16_t>& v, size_t bytes, uint32_t seed) {
        v.resize(bytes / 2 + 1);
        for (size_t i = 0; i < v.size(); i++) v[i] = uint16_t(0x3c00u + ((uint32_t(i) + seed) * 2654435761u >> 22) % 0x300u);
      };
      t.a.resize(copies);
      t.b.resize(copies);
      for (size_t i = 0; i < copies; i++) {
        fill(t.a[i], bytesA, uint32_t(2 * i));
        fill(t.b[i], bytesB, uint32_t(2 * i + 1));
      }
      fill(t.c, bytesC, 7);
      fill(t.bias, bytesBias, 9);
      t.bytesA = bytesA;
      t.bytesB = bytesB;
      t.bytesC = bytesC;
      t.bytesBias = bytesBias;
    }
    if (!p.packedB.empty() && t.packed.count(p.packedB) == 0) {
      const MicroKernel* k;
      int kc;
      if (!parseLayout(p.packedB, &k, &kc)) return outOfRange("unknown packed layout " + p.packedB);
      std::vector<std::unique_ptr<PackedWeight>> packed(copies);
      for (size_t i = 0; i < copies; i++) {
        Status s = prepackWeight(p, t.b[i].data(), *k, kc, &packed[i]);
        if (!s.isOk()) return s;
      }
      t.packed[p.packedB] = std::move(packed);
    }
    return Status::ok();
  }

  mutable std::mutex timingMutex_;
  mutable TimingInputs timing_;
};

}  // namespace

CpuConfig cpuHeuristic(const Problem& p) {
  const MicroKernel* packedKernel = nullptr;
  int packedKc = 0;
  if (!p.packedB.empty() && parseLayout(p.packedB, &packedKernel, &packedKc)) {
    // A panel whose kernel cannot take these inputs (bf16 panel, f32 inputs) is widened by the f32
    // kernel the unpacked call would run (widensPanel).
    if (!kernelUsable(*packedKernel, p)) return blockedConfig(preferredKernel(p), defaultThreads(p));
    CpuConfig c = blockedConfig(*packedKernel, defaultThreads(p));
    c.kc = packedKc;
    return c;
  }
  const GemvKernel* g = preferredGemv(p);
  if (g && p.m <= (p.transB ? g->defaultMaxMTransB : kGemvMaxM)) return gemvConfig(*g, p);
  return blockedConfig(preferredKernel(p), defaultThreads(p));
}

CpuConfig cpuDefaultPackedConfig(const Problem& p) {
  return blockedConfig(preferredKernel(p), 1);
}

void registerCpuBackend() {
  registerBackend(std::unique_ptr<Backend>(new CpuBackend()));
}

}  // namespace gemmkit
