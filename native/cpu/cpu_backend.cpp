#include "cpu_backend.h"

#include <memory>
#include <random>

#include "../core/timing.h"
#include "cpu_features.h"
#include "gemm_frame.h"
#include "micro_kernels.h"
#include "thread_pool.h"

namespace gemmkit {

namespace {

// Below this many flops per call, handing work to a second thread costs more than it saves.
constexpr double kMinFlopsPerExtraThread = 4.0e6;

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

  std::vector<std::string> candidates(const Problem& p) const override {
    (void)p;
    std::vector<std::string> out;
    int pool = ThreadPool::instance().size();
    std::vector<int> threadChoices = {1};
    if (pool > 1) threadChoices.push_back(pool);
    for (const MicroKernel& k : microKernels()) {
      if (!isaAvailable(k.isa)) continue;
      for (int kc : {128, 256, 384, 512}) {
        for (int mcSlivers : {4, 12, 24}) {
          for (int threads : threadChoices) {
            CpuConfig c = blockedConfig(k, threads);
            c.kc = kc;
            c.mc = mcSlivers * k.mr;
            if (c.valid().isOk()) out.push_back(c.name());
          }
        }
      }
    }
    return out;
  }

  std::string heuristic(const Problem& p) const override {
    return cpuHeuristic(p).name();
  }

  Status supports(const Problem& p, const std::string& config) const override {
    CpuConfig cfg;
    const MicroKernel* k;
    (void)p;
    return parseRunnable(config, &cfg, &k);
  }

  Status run(const Problem& p, const std::string& config, const Buffers& buf) const override {
    Status s = checkProblem(p);
    if (!s.isOk()) return s;
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

  Status time(const Problem& p, const std::string& config, const TimingOptions& opts,
              std::vector<double>* microseconds) const override {
    Status s = supports(p, config);
    if (!s.isOk()) return s;
    // Rotating copies of the inputs, so each timed run starts with A and B out of cache.
    const size_t bytesA = size_t(p.batch * p.rowsA() * p.lda) * dtypeSize(p.dtypeA);
    const size_t bytesB = size_t(p.batch * p.rowsB() * p.ldb) * dtypeSize(p.dtypeB);
    const size_t bytesC = size_t(p.batch * p.m * p.ldc) * dtypeSize(p.dtypeC);
    size_t copies = 1;
    if (opts.rotatingBytes > 0 && bytesA + bytesB > 0) {
      copies = size_t(opts.rotatingBytes) / (bytesA + bytesB) + 1;
      if (copies > 64) copies = 64;
    }
    std::vector<std::vector<uint16_t>> as(copies), bs(copies);
    std::vector<uint16_t> cbuf(bytesC / 2 + 1), bias(size_t(p.n) * 2 + 1);
    std::mt19937 rng(1234);
    for (size_t i = 0; i < copies; i++) {
      as[i].resize(bytesA / 2 + 1);
      bs[i].resize(bytesB / 2 + 1);
      // Small values in every dtype: bits 0x3c00..0x3fff are in [1, 2) for f16 and ~[0.0078, 2) for bf16.
      for (auto& v : as[i]) v = uint16_t(0x3c00 + rng() % 0x300);
      for (auto& v : bs[i]) v = uint16_t(0x3c00 + rng() % 0x300);
    }
    microseconds->clear();
    double started = nowMicroseconds();
    int total = opts.warmup + opts.iterations;
    for (int it = 0; it < total; it++) {
      Buffers buf{as[size_t(it) % copies].data(), bs[size_t(it) % copies].data(), cbuf.data(), bias.data()};
      double t0 = nowMicroseconds();
      s = run(p, config, buf);
      double t1 = nowMicroseconds();
      if (!s.isOk()) return s;
      if (it >= opts.warmup) microseconds->push_back(t1 - t0);
      if (opts.maxMilliseconds > 0 && (t1 - started) > opts.maxMilliseconds * 1000.0 && !microseconds->empty()) break;
    }
    return Status::ok();
  }
};

}  // namespace

CpuConfig cpuHeuristic(const Problem& p) {
  return blockedConfig(preferredKernel(), defaultThreads(p));
}

void registerCpuBackend() {
  registerBackend(std::unique_ptr<Backend>(new CpuBackend()));
}

}  // namespace gemmkit
