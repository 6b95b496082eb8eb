#include "cpu_backend.h"

#include <memory>
#include <mutex>

#include "../core/timing.h"
#include "cpu_features.h"
#include "gemm_frame.h"
#include "micro_kernels.h"
#include "system_blas.h"
#include "thread_pool.h"

namespace gemmkit {

namespace {

// Below this many flops per call, handing work to a second thread costs more than it saves.
constexpr double kMinFlopsPerExtraThread = 4.0e6;
// Above this many flops per call, one thread never beats the pool; the tuner does not try it.
constexpr double kMaxFlopsForOneThread = 1.0e9;

// A block size is worth trying when it is smaller than the problem's extent, or is the smallest choice
// that covers it (larger ones then run identically).
bool coversFirst(int64_t block, int64_t extent, std::initializer_list<int64_t> choices) {
  if (block < extent) return true;
  for (int64_t c : choices) {
    if (c >= extent && c < block) return false;
  }
  return true;
}

int defaultThreads(const Problem& p) {
  int pool = ThreadPool::instance().size();
  int useful = int(p.flops() / kMinFlopsPerExtraThread);
  if (useful < 1) useful = 1;
  return useful < pool ? useful : pool;
}

// Cache blocks for a register block: the A block (mc x kc) fits L2, a B sliver (kc x NR) fits L1,
// the B panel (kc x nc) fits a share of L3. Values for current x86 server cores; the tuner refines.
CpuConfig blockedConfig(const MicroKernel& k, int threads) {
  CpuConfig c;
  c.kernel = k.id;
  c.kc = 384;
  c.mc = (k.mr >= 8 ? 12 : 24) * k.mr;
  c.nc = (4096 / k.nr) * k.nr;
  c.threads = threads;
  return c;
}

const MicroKernel& preferredKernel() {
  static const char* order[] = {"avx512.f32.14x32", "avx2.f32.6x16", "scalar.f32.4x8"};
  for (const char* id : order) {
    const MicroKernel* k = findMicroKernel(id);
    if (k && isaAvailable(k->isa)) return *k;
  }
  return *findMicroKernel("scalar.f32.4x8");
}

Status parseRunnable(const std::string& name, CpuConfig* cfg, const MicroKernel** kernel) {
  Status s = CpuConfig::parse(name, cfg);
  if (!s.isOk()) return s;
  const MicroKernel* k = findMicroKernel(cfg->kernel);
  if (!isaAvailable(k->isa)) {
    return unsupported("config " + name + " needs " + isaName(k->isa) + ", which this CPU (" + cpuFeatures().model +
                       ") does not have");
  }
  *kernel = k;
  return Status::ok();
}

class CpuBackend : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  std::vector<DeviceInfo> devices() const override {
    DeviceInfo d;
    d.name = cpuFeatures().model;
    d.arch = "cpu";
    for (const std::string& f : cpuFeatures().names()) d.arch += "." + f;
    d.computeUnits = ThreadPool::instance().size();
    return {d};
  }

  // The search space: every SIMD kernel this CPU runs (the scalar one only where there is none) x KC x MC
  // x threads, plus each system BLAS for f32. Blocks at least as large as the problem all run alike, so
  // only the smallest of those is kept; one thread is offered only where a call is small enough for it to
  // win. The heuristic default comes first (the tuner times it first, and a budget cut keeps it).
  std::vector<std::string> candidates(const Problem& p) const override {
    std::vector<std::string> out = {heuristic(p)};
    auto add = [&out](const std::string& name) {
      for (const std::string& have : out) {
        if (have == name) return;
      }
      out.push_back(name);
    };
    const int pool = ThreadPool::instance().size();
    std::vector<int> threadChoices = {pool, defaultThreads(p)};
    if (p.flops() < kMaxFlopsForOneThread) threadChoices.push_back(1);
    bool haveSimd = false;
    for (const MicroKernel& k : microKernels()) haveSimd = haveSimd || (k.isa != Isa::Scalar && isaAvailable(k.isa));
    // The preferred kernel's variants first, so a shape whose time budget runs out has tried the best.
    std::vector<const MicroKernel*> kernels = {&preferredKernel()};
    for (const MicroKernel& k : microKernels()) {
      if (&k != kernels[0] && isaAvailable(k.isa) && !(haveSimd && k.isa == Isa::Scalar)) kernels.push_back(&k);
    }
    for (const MicroKernel* k : kernels) {
      for (int threads : threadChoices) {
        for (int kc : {384, 256, 512, 128}) {
          if (!coversFirst(kc, p.k, {128, 256, 384, 512})) continue;
          for (int mcSlivers : {12, 4, 24}) {
            if (!coversFirst(mcSlivers * k->mr, p.m, {4 * k->mr, 12 * k->mr, 24 * k->mr})) continue;
            CpuConfig c = blockedConfig(*k, threads);
            c.kc = kc;
            c.mc = mcSlivers * k->mr;
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

  std::string heuristic(const Problem& p) const override {
    return cpuHeuristic(p).name();
  }

  Status supports(const Problem& p, const std::string& config) const override {
    if (isSystemBlasConfig(config)) {
      const SystemBlas* blas;
      return findSystemBlas(p, config, &blas);
    }
    CpuConfig cfg;
    const MicroKernel* k;
    return parseRunnable(config, &cfg, &k);
  }

  Status run(const Problem& p, const std::string& config, const Buffers& buf) const override {
    Status s = checkProblem(p);
    if (!s.isOk()) return s;
    if (isSystemBlasConfig(config)) {
      const SystemBlas* blas;
      s = findSystemBlas(p, config, &blas);
      return s.isOk() ? runSystemBlas(p, *blas, buf) : s;
    }
    CpuConfig cfg;
    const MicroKernel* k;
    s = parseRunnable(config, &cfg, &k);
    if (!s.isOk()) return s;
    try {
      return runCpuGemm(p, cfg, *k, buf);
    } catch (const std::bad_alloc&) {
      return Status(StatusCode::OutOfMemory, "out of memory for packing buffers in " + p.describe());
    }
  }

  // Times `config` on inputs that rotate through copies totalling at least opts.rotatingBytes, so each
  // run starts with A and B out of cache when that exceeds the last-level cache. The copies are kept for
  // the next call with the same sizes (the tuner times every candidate of a shape in a row), and timings
  // in one process are serialised: two at once would each measure the other.
  Status time(const Problem& p, const std::string& config, const TimingOptions& opts,
              std::vector<double>* microseconds) const override {
    Status s = checkProblem(p);
    if (!s.isOk()) return s;
    s = supports(p, config);
    if (!s.isOk()) return s;
    if (opts.warmup < 0 || opts.iterations < 1) return outOfRange("timing needs warmup >= 0 and iterations >= 1");
    std::lock_guard<std::mutex> lock(timingMutex_);
    try {
      prepareTimingInputs(p, opts.rotatingBytes);
    } catch (const std::bad_alloc&) {
      timing_ = TimingInputs();
      return Status(StatusCode::OutOfMemory, "out of memory for the rotating timing inputs of " + p.describe());
    }
    microseconds->clear();
    const size_t copies = timing_.a.size();
    const double started = nowMicroseconds();
    const int total = opts.warmup + opts.iterations;
    for (int it = 0; it < total; it++) {
      // The rotation continues across calls, so one-iteration calls do not all reuse (cached) copy 0.
      const size_t i = timing_.next++ % copies;
      Buffers buf{timing_.a[i].data(), timing_.b[i].data(), timing_.c.data(), timing_.bias.data()};
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
  // Timing inputs: copies of A and B (and one C and bias), as raw 16-bit words for every dtype.
  struct TimingInputs {
    size_t bytesA = 0, bytesB = 0, bytesC = 0, bytesBias = 0;
    std::vector<std::vector<uint16_t>> a, b;
    std::vector<uint16_t> c, bias;
    size_t next = 0;  // the copy the next timed run uses
  };

  void prepareTimingInputs(const Problem& p, int64_t rotatingBytes) const {
    const size_t bytesA = size_t(p.batch * p.rowsA() * p.lda) * dtypeSize(p.dtypeA);
    const size_t bytesB = size_t(p.batch * p.rowsB() * p.ldb) * dtypeSize(p.dtypeB);
    const size_t bytesC = size_t(p.batch * p.m * p.ldc) * dtypeSize(p.dtypeC);
    const size_t bytesBias = size_t(p.n) * 4;
    size_t copies = 1;
    if (rotatingBytes > 0 && bytesA + bytesB > 0) copies = std::min<size_t>(size_t(rotatingBytes) / (bytesA + bytesB) + 1, 64);
    TimingInputs& t = timing_;
    if (t.bytesA == bytesA && t.bytesB == bytesB && t.bytesC == bytesC && t.bytesBias >= bytesBias && t.a.size() == copies) return;
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

  mutable std::mutex timingMutex_;
  mutable TimingInputs timing_;
};

}  // namespace

CpuConfig cpuHeuristic(const Problem& p) {
  return blockedConfig(preferredKernel(), defaultThreads(p));
}

void registerCpuBackend() {
  registerBackend(std::unique_ptr<Backend>(new CpuBackend()));
}

}  // namespace gemmkit
