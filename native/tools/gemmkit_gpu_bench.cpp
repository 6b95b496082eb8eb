// gemmkit-gpu-bench: GPU GEMM timings without Node. For each shape: the heuristic's config, every
// candidate (own kernels and the vendor library's algorithms) in a quick pass, the best few timed
// again longer; device times from events, on rotating input buffers. Prints one CSV row per shape
// and candidate class, medians in microseconds.
//
//   gemmkit-gpu-bench [--device N] [--dtype bf16|f16|f32] [--shapes SHAPE,...] [--copy-bandwidth]
//   SHAPE: MxNxK:nn (A [M,K], B [K,N]) or MxNxK:nt (B stored [N,K]: x @ W^T, a Linear weight)
// Default shapes: 8192x8192x8192:nn, and M in 1, 16, 128, 2048 against 4096x4096 and 14336x4096
// weights (nt).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/timing.h"
#include "../gpu/gpu_backend.h"
#include "../gpu/gpu_runtime.h"

using namespace gemmkit;

namespace {

struct Shape {
  int64_t m, n, k;
  bool transB;
};

bool parseShape(const std::string& s, Shape* out) {
  long long m, n, k;
  char layout[3] = {0, 0, 0};
  if (std::sscanf(s.c_str(), "%lldx%lldx%lld:%2s", &m, &n, &k, layout) != 4) return false;
  if (std::strcmp(layout, "nn") != 0 && std::strcmp(layout, "nt") != 0) return false;
  *out = Shape{m, n, k, layout[1] == 't'};
  return m > 0 && n > 0 && k > 0;
}

struct Timed {
  std::string config;
  double microseconds = 0.0;
};

// Median device time of `config`, or a negative value when it fails (printed).
double timeConfig(const Backend& be, const Problem& p, const std::string& config, int warmup, int iterations) {
  TimingOptions opts;
  opts.warmup = warmup;
  opts.iterations = iterations;
  opts.rotatingBytes = int64_t(512) << 20;  // more than any L2, so inputs come from HBM
  opts.maxMilliseconds = 2000;
  std::vector<double> us;
  Status s = be.time(p, config, opts, &us);
  if (!s.isOk() || us.empty()) {
    std::fprintf(stderr, "  %s: %s\n", config.c_str(), s.message().c_str());
    return -1.0;
  }
  return median(us);
}

bool isVendor(const std::string& config) { return config.compare(0, 5, "cuda.") != 0 && config.compare(0, 4, "hip.") != 0; }

}  // namespace

int main(int argc, char** argv) {
  int device = 0;
  DType dtype = DType::BF16;
  bool copyBandwidth = false;
  std::vector<Shape> shapes;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      device = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
      if (!parseDType(argv[++i], &dtype)) { std::fprintf(stderr, "unknown dtype %s\n", argv[i]); return 2; }
    } else if (std::strcmp(argv[i], "--shapes") == 0 && i + 1 < argc) {
      std::string list = argv[++i];
      size_t start = 0;
      while (start <= list.size()) {
        size_t comma = list.find(',', start);
        std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        Shape sh;
        if (!parseShape(item, &sh)) { std::fprintf(stderr, "bad shape '%s' (MxNxK:nn or MxNxK:nt)\n", item.c_str()); return 2; }
        shapes.push_back(sh);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (std::strcmp(argv[i], "--copy-bandwidth") == 0) {
      copyBandwidth = true;
    } else {
      std::fprintf(stderr, "usage: gemmkit-gpu-bench [--device N] [--dtype bf16|f16|f32] [--shapes MxNxK:nn|nt,...] [--copy-bandwidth]\n");
      return 2;
    }
  }
  if (shapes.empty()) {
    shapes.push_back(Shape{8192, 8192, 8192, false});
    for (int64_t n : {4096, 14336}) {
      for (int64_t m : {1, 16, 128, 2048}) shapes.push_back(Shape{m, n, 4096, true});
    }
  }
  registerVendorBackend();
  const Backend* be = findBackend(gpuBackendName());
  GpuRuntime& rt = GpuRuntime::instance();
  const GpuDevice* d;
  Status s = rt.checkKernels(device, &d);
  if (!s.isOk()) {
    std::printf("no usable device: %s\n", s.message().c_str());
    return 2;
  }
  std::printf("# %s device %d: %s (%s), runtime %s, driver %s\n", gpuBackendName(), device, d->info.name.c_str(),
              d->info.arch.c_str(), rt.runtimeVersion().c_str(), rt.driverVersion().c_str());

  if (copyBandwidth) {
    // Device-to-device copy of 1 GiB: the bandwidth a weight-streaming kernel can hope for.
    const int64_t bytes = int64_t(1) << 30;
    std::shared_ptr<DeviceAllocation> src, dst;
    s = DeviceAllocation::create(device, bytes, &src);
    if (s.isOk()) s = DeviceAllocation::create(device, bytes, &dst);
    std::vector<double> seconds;
    for (int i = 0; s.isOk() && i < 6; i++) {
      const double t0 = nowMicroseconds();
      s = copyDeviceToDevice(*dst, 0, *src, 0, bytes);
      if (i > 0) seconds.push_back((nowMicroseconds() - t0) * 1e-6);
    }
    if (!s.isOk()) {
      std::printf("copy bandwidth: %s\n", s.message().c_str());
    } else {
      std::printf("copy_bandwidth_GBps,%.1f\n", 2.0 * double(bytes) / median(seconds) * 1e-9);  // read + write
    }
  }

  std::printf("shape,layout,class,config,median_us,TFLOPs,GBps\n");
  for (const Shape& sh : shapes) {
    Problem p;
    p.device = device;
    p.m = sh.m;
    p.n = sh.n;
    p.k = sh.k;
    p.transB = sh.transB;
    p.dtypeA = p.dtypeB = p.dtypeC = dtype;
    p.lda = p.k;
    p.ldb = sh.transB ? p.k : p.n;
    p.ldc = p.n;
    const double bytes = double(dtypeSize(dtype)) * double(p.m * p.k + p.k * p.n + p.m * p.n);
    auto row = [&](const char* cls, const Timed& t) {
      if (t.microseconds <= 0) return;
      std::printf("%lldx%lldx%lld,%s,%s,%s,%.2f,%.2f,%.1f\n", (long long)p.m, (long long)p.n, (long long)p.k,
                  sh.transB ? "nt" : "nn", cls, t.config.c_str(), t.microseconds, p.flops() / t.microseconds * 1e-6,
                  bytes / t.microseconds * 1e-3);
      std::fflush(stdout);
    };
    Timed heuristic{be->heuristic(p), 0.0};
    heuristic.microseconds = timeConfig(*be, p, heuristic.config, 3, 20);
    row("heuristic", heuristic);
    // Quick pass over every candidate, then the best five of each class again, longer.
    std::vector<Timed> quick;
    for (const std::string& c : be->candidates(p)) {
      const double us = timeConfig(*be, p, c, 1, 5);
      if (us > 0) quick.push_back(Timed{c, us});
    }
    std::sort(quick.begin(), quick.end(), [](const Timed& a, const Timed& b) { return a.microseconds < b.microseconds; });
    Timed bestOwn, bestVendor;
    int ownFinal = 0, vendorFinal = 0;
    for (const Timed& q : quick) {
      const bool vendor = isVendor(q.config);
      int& count = vendor ? vendorFinal : ownFinal;
      if (count >= 5) continue;
      count++;
      const double us = timeConfig(*be, p, q.config, 3, 30);
      Timed& best = vendor ? bestVendor : bestOwn;
      if (us > 0 && (best.microseconds <= 0 || us < best.microseconds)) best = Timed{q.config, us};
    }
    row("best_own", bestOwn);
    row("best_vendor", bestVendor);
    const Timed& tuned = bestVendor.microseconds > 0 && (bestOwn.microseconds <= 0 || bestVendor.microseconds < bestOwn.microseconds)
                             ? bestVendor
                             : bestOwn;
    row("tuned", tuned);
  }
  return 0;
}
