// gemmkit-gpu-check: every GPU kernel configuration this build compiled for the device, checked
// against the float64 CPU reference without Node. Sizes come from each config's tile (tile - 1,
// tile + 1, 2 tiles + 3) and from awkward values (1, 7, 45, 77); all four transposes; f32/f16/bf16
// outputs; alpha, beta, bias and every activation in turn; batches with strided and broadcast B;
// padded (unaligned) leading dimensions. Inputs are small integers, so f32 results are exact and
// f16/bf16 ones exact up to their one rounding (activations get a small tolerance). A mismatch names
// the config, the problem and the worst element's coordinates.
//
//   gemmkit-gpu-check [--device N] [--config NAME]... [--quick | --edges]
// --quick: fewer sizes. --edges: M, N and K each at 1, tile - 1 and tile + 1, combined so that every
// pair of dimensions meets every pair of those values (9 problems), plus 77x45x129 and K = 0 (the plan
// for the CPU emulator, npm run test:emu, whose builds are gemmkit-emu-cuda-check / -hip-check).
// Exit status: 0 all agree, 1 a failure, 2 no usable device (the reason is printed).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/reference_gemm.h"
#include "../gpu/gpu_backend.h"
#include "../gpu/gpu_config.h"
#include "../gpu/gpu_runtime.h"
#include "check_support.h"

using namespace gemmkit;

namespace {

enum class SizePlan { Full, Quick, Edges };

// The element of C farthest from the reference (as relativeError measures it): "item 0, row 3, col 17:
// got 5, want 6".
std::string worstElement(const Problem& p, const void* c, const double* c64) {
  double worst = -1.0;
  std::string where;
  for (int64_t b = 0; b < p.batch; b++) {
    for (int64_t i = 0; i < p.m; i++) {
      for (int64_t j = 0; j < p.n; j++) {
        const double want = c64[(b * p.m + i) * p.n + j];
        const double got = loadAsF32(c, p.dtypeC, b * p.strideC + i * p.ldc + j);
        double e = std::fabs(got - want) / (1.0 + std::fabs(want));
        if (std::isnan(e) || std::isinf(e)) e = INFINITY;
        if (std::isnan(want) && std::isnan(got)) e = 0.0;
        if (e > worst) {
          worst = e;
          char s[128];
          std::snprintf(s, sizeof s, "item %lld, row %lld, col %lld: got %.9g, want %.9g", (long long)b, (long long)i, (long long)j, got, want);
          where = s;
        }
      }
    }
  }
  return where;
}

bool checkOne(const Backend& be, const std::string& config, Problem p, int pad, std::mt19937& rng) {
  p.lda = std::max<int64_t>(1, p.colsA() + pad);
  p.ldb = std::max<int64_t>(1, p.colsB() + pad);
  p.ldc = std::max<int64_t>(1, p.n + pad);
  p.strideA = p.rowsA() * p.lda;
  p.strideB = p.batch > 1 && (p.m % 2 == 1) ? 0 : p.rowsB() * p.ldb;  // odd M: one B for every batch item
  p.strideC = p.m * p.ldc;
  const int64_t elemsA = std::max<int64_t>(1, (p.batch - 1) * p.strideA + p.rowsA() * p.lda);
  const int64_t elemsB = std::max<int64_t>(1, (p.batch - 1) * p.strideB + p.rowsB() * p.ldb);
  const int64_t elemsC = std::max<int64_t>(1, (p.batch - 1) * p.strideC + p.m * p.ldc);
  HostMatrix a = randomMatrix(elemsA, p.dtypeA, rng), b = randomMatrix(elemsB, p.dtypeB, rng);
  HostMatrix c0 = randomMatrix(elemsC, p.dtypeC, rng), bias = randomMatrix(std::max<int64_t>(1, p.n), p.dtypeBias, rng);
  HostMatrix want = c0, got = c0;
  std::vector<double> c64(size_t(p.batch * p.m * p.n) + 1);
  Buffers hostBuf{a.data(), b.data(), want.data(), bias.data()};
  referenceGemm(p, hostBuf, c64.data());

  std::shared_ptr<DeviceAllocation> da, db, dc, dbias;
  Status s = DeviceAllocation::create(p.device, elemsA * dtypeSize(p.dtypeA), &da);
  if (s.isOk()) s = DeviceAllocation::create(p.device, elemsB * dtypeSize(p.dtypeB), &db);
  if (s.isOk()) s = DeviceAllocation::create(p.device, elemsC * dtypeSize(p.dtypeC), &dc);
  if (s.isOk()) s = DeviceAllocation::create(p.device, std::max<int64_t>(1, p.n) * dtypeSize(p.dtypeBias), &dbias);
  if (s.isOk()) s = copyHostToDevice(*da, 0, a.data(), da->bytes());
  if (s.isOk()) s = copyHostToDevice(*db, 0, b.data(), db->bytes());
  if (s.isOk()) s = copyHostToDevice(*dc, 0, c0.data(), dc->bytes());
  if (s.isOk()) s = copyHostToDevice(*dbias, 0, bias.data(), dbias->bytes());
  if (s.isOk()) s = be.run(p, config, Buffers{da->data(), db->data(), dc->data(), p.hasBias ? dbias->data() : nullptr});
  if (s.isOk()) s = copyDeviceToHost(got.data(), *dc, 0, dc->bytes());
  const std::string label = p.describe() + " lda " + std::to_string(p.lda) + (p.beta != 0 ? " beta" : "") + " " + config;
  const bool ok = expectReference(p, label, s, got.data(), c64.data());
  if (!ok && s.isOk()) std::printf("     worst element of %s: %s\n", config.c_str(), worstElement(p, got.data(), c64.data()).c_str());
  return ok;
}

// The problem sizes a config is checked at: its tile edges and awkward values.
std::vector<int64_t> sizesAround(int tile, bool quick) {
  std::vector<int64_t> v = {1, 7, tile + 1};
  if (!quick) {
    v.push_back(tile > 1 ? tile - 1 : 2);
    v.push_back(2 * int64_t(tile) + 3);
  }
  return v;
}

// M, N, K for `plan`: around the tile, and awkward values.
struct Dims {
  int64_t m, n, k;
};
std::vector<Dims> problemSizes(const GpuConfig& c, SizePlan plan) {
  const bool skinny = c.family == GpuFamily::Skinny;  // runs M <= tileM only
  std::vector<Dims> out;
  if (plan == SizePlan::Edges) {
    auto edges = [](int tile) { return std::vector<int64_t>{1, std::max(1, tile - 1), int64_t(tile) + 1}; };
    std::vector<int64_t> ms = edges(c.tileM), ns = edges(c.tileN), ks = edges(c.tileK);
    if (skinny) ms = {1, std::max(1, c.tileM - 1), c.tileM};
    // An orthogonal array: each dimension meets each of its values three times and each pair of
    // dimensions each pair of values once.
    for (int i = 0; i < 3; i++) {
      for (int j = 0; j < 3; j++) out.push_back(Dims{ms[size_t(i)], ns[size_t(j)], ks[size_t((i + j) % 3)]});
    }
    out.push_back(Dims{skinny ? std::min<int64_t>(77, c.tileM) : 77, 45, 129});
    out.push_back(Dims{ms[2], ns[2], 0});  // K = 0: C is beta C + bias, through the epilogue alone
    return out;
  }
  const std::vector<int64_t> ms = skinny ? std::vector<int64_t>{1, int64_t(c.tileM)} : sizesAround(c.tileM, plan == SizePlan::Quick);
  const std::vector<int64_t> ns = sizesAround(c.tileN, plan == SizePlan::Quick);
  const std::vector<int64_t> ks = plan == SizePlan::Quick ? std::vector<int64_t>{7, 45, int64_t(c.tileK) + 1}
                                                          : std::vector<int64_t>{1, 7, 45, int64_t(c.tileK) - 1, 3 * int64_t(c.tileK) + 5};
  for (int64_t m : ms) {
    for (int64_t n : ns) {
      for (int64_t k : ks) out.push_back(Dims{m, n, k});
    }
  }
  return out;
}

DType dtypeOf(GpuInput t, int variant) {
  switch (t) {
    case GpuInput::F32: return DType::F32;
    case GpuInput::F16: return DType::F16;
    case GpuInput::BF16: return DType::BF16;
    case GpuInput::Any: break;
  }
  const DType all[] = {DType::F32, DType::BF16, DType::F16};
  return all[variant % 3];
}

int checkConfig(const Backend& be, const GpuConfig& c, int device, SizePlan plan, std::mt19937& rng) {
  const int before = failures;
  int problems = 0;
  const DType outputs[] = {DType::F32, DType::BF16, DType::F16};
  const Activation activations[] = {Activation::None, Activation::Relu, Activation::Gelu, Activation::Silu};
  int variant = 0;
  for (const Dims& d : problemSizes(c, plan)) {
    Problem p;
    p.device = device;
    p.m = d.m;
    p.n = d.n;
    p.k = d.k;
    p.transA = variant & 1;
    p.transB = (variant >> 1) & 1;
    p.dtypeA = dtypeOf(c.input, variant);
    p.dtypeB = dtypeOf(c.input, variant + 1);
    p.dtypeC = outputs[variant % 3];
    p.dtypeBias = outputs[(variant + 1) % 3];
    p.hasBias = variant % 2 == 1;
    p.activation = activations[variant % 4];
    p.alpha = variant % 5 == 0 ? 0.5f : 1.0f;
    p.beta = variant % 3 == 2 ? 2.0f : 0.0f;
    p.batch = variant % 7 == 3 ? 2 : 1;
    const int pad = variant % 4 == 3 ? 3 : 0;  // unaligned rows: element loads instead of vectors
    variant++;
    if (!be.supports(p, c.name()).isOk()) continue;
    checkOne(be, c.name(), p, pad, rng);
    problems++;
  }
  // Every layout at one size with aligned rows, so the vector paths of all four layouts run.
  for (int layout = 0; layout < 4; layout++) {
    Problem p;
    p.device = device;
    p.m = c.family == GpuFamily::Skinny ? c.tileM : 2 * c.tileM + 1;
    p.n = 2 * c.tileN + 5;
    p.k = 4 * c.tileK + 8;
    p.transA = layout & 1;
    p.transB = layout & 2;
    p.dtypeA = p.dtypeB = dtypeOf(c.input, layout);
    p.dtypeC = DType::F32;
    if (!be.supports(p, c.name()).isOk()) continue;
    checkOne(be, c.name(), p, 0, rng);
    problems++;
  }
  std::printf("%s %s: %d problems\n", failures == before ? "ok  " : "FAIL", c.name().c_str(), problems);
  return problems;
}

}  // namespace

int main(int argc, char** argv) {
  int device = 0;
  SizePlan plan = SizePlan::Full;
  std::vector<std::string> only;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) only.push_back(argv[++i]);
    else if (std::strcmp(argv[i], "--quick") == 0) plan = SizePlan::Quick;
    else if (std::strcmp(argv[i], "--edges") == 0) plan = SizePlan::Edges;
    else {
      std::fprintf(stderr, "usage: gemmkit-gpu-check [--device N] [--config NAME]... [--quick | --edges]\n");
      return 2;
    }
  }
  registerVendorBackend();
  const Backend* be = findBackend(gpuBackendName());
  GpuRuntime& rt = GpuRuntime::instance();
  const GpuDevice* d;
  Status s = rt.checkKernels(device, &d);
  std::printf("gemmkit-gpu-check: %s runtime %s, driver %s, kernels built for %s\n", gpuBackendName(), rt.runtimeVersion().c_str(),
              rt.driverVersion().empty() ? "none" : rt.driverVersion().c_str(), rt.builtArchs().c_str());
  if (!s.isOk()) {
    std::printf("no usable device: %s\n", s.message().c_str());
    return 2;
  }
  std::printf("device %d: %s (%s, %d compute units, %.1f GiB)\n", device, d->info.name.c_str(), d->info.arch.c_str(),
              d->info.computeUnits, double(d->info.memoryBytes) / (1 << 30));
  std::mt19937 rng(42);
  int configs = 0;
  struct TableCount {
    int configs = 0, problems = 0, checks = 0, failures = 0;
  };
  std::map<std::string, TableCount> perTable;
  for (const KernelEntry* e : d->kernels) {
    if (!only.empty() && std::find(only.begin(), only.end(), e->config.name()) == only.end()) continue;
    const int checksBefore = checks, failuresBefore = failures;
    TableCount& t = perTable[gpuArchName(e->config.arch)];
    t.problems += checkConfig(*be, e->config, device, plan, rng);
    t.configs++;
    t.checks += checks - checksBefore;
    t.failures += failures - failuresBefore;
    configs++;
  }
  for (const auto& [arch, t] : perTable) {
    std::printf("table %s: %d configs, %d problems, %d checks, %d failures\n", arch.c_str(), t.configs, t.problems, t.checks, t.failures);
  }
  // The heuristic's choice for shapes that decide which family runs.
  const int64_t shapes[][3] = {{1, 4096, 4096}, {16, 4096, 512}, {128, 1000, 600}, {1000, 1000, 1000}};
  if (only.empty()) {
    for (const auto& sh : shapes) {
      Problem p;
      p.device = device;
      p.m = sh[0];
      p.n = sh[1];
      p.k = sh[2];
      p.transB = true;
      p.dtypeA = p.dtypeB = p.dtypeC = DType::BF16;
      const std::string config = be->heuristic(p);
      checkOne(*be, config, p, 0, rng);
      std::printf("heuristic %s: %s\n", p.describe().c_str(), config.c_str());
    }
  }
  std::printf("%d configs, %d checks, %d failures\n", configs, checks, failures);
  return failures == 0 ? 0 : 1;
}
