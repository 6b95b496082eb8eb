#include "gpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>

#include "../core/op_check.h"
#include "../core/timing.h"
#include "gpu_config.h"
#include "kernel_table.h"
#include "op_launch.h"
#include "vendor_runtime.h"

namespace gemmkit {

namespace {

std::vector<const VendorLibrary*>& libraryRegistry() {
  static std::vector<const VendorLibrary*> libraries;
  return libraries;
}

bool vectorAligned(const void* p, int64_t ld, int64_t stride, DType t) {
  const int64_t size = dtypeSize(t);
  return reinterpret_cast<uintptr_t>(p) % 16 == 0 && (ld * size) % 16 == 0 && (stride * size) % 16 == 0;
}

GemmArgs makeArgs(const Problem& p, const Buffers& buf) {
  GemmArgs a;
  a.a = buf.a;
  a.b = buf.b;
  a.c = buf.c;
  a.bias = buf.bias;
  a.m = int(p.m);
  a.n = int(p.n);
  a.k = int(p.k);
  a.batch = int(p.batch);
  a.lda = int(p.lda);
  a.ldb = int(p.ldb);
  a.ldc = int(p.ldc);
  a.strideA = p.strideA;
  a.strideB = p.strideB;
  a.strideC = p.strideC;
  a.alpha = p.alpha;
  a.beta = p.beta;
  a.dtypeA = p.dtypeA;
  a.dtypeB = p.dtypeB;
  a.dtypeC = p.dtypeC;
  a.dtypeBias = p.dtypeBias;
  a.activation = p.activation;
  a.transA = p.transA;
  a.transB = p.transB;
  a.hasBias = p.hasBias;
  a.vectorA = vectorAligned(buf.a, p.lda, p.strideA, p.dtypeA);
  a.vectorB = vectorAligned(buf.b, p.ldb, p.strideB, p.dtypeB);
  return a;
}

// The largest M for which the heuristic picks a skinny kernel (the tuner may still choose one up to 16).
constexpr int64_t kSkinnyHeuristicMaxM = 8;

// A rough cost of `c` on `p` in arbitrary units, comparable between configs of one family only: bytes
// streamed over the parallelism for skinny kernels; waves of blocks over the device times the work of
// one block for the tiled ones.
double estimatedCost(const GpuConfig& c, const Problem& p, int units) {
  const double m = double(std::max<int64_t>(p.m, 1)), n = double(std::max<int64_t>(p.n, 1));
  const double k = double(std::max<int64_t>(p.k, 1)), batch = double(std::max<int64_t>(p.batch, 1));
  if (c.family == GpuFamily::Skinny) {
    // Streams B once whatever the config; parallelism and wasted rows decide.
    const double blocks = std::ceil(n / c.tileN) * c.splitK * batch;
    const double fill = std::min(1.0, blocks / (2.0 * units));
    const double bytes = n * k * (c.input == GpuInput::F32 ? 4 : 2) * batch;
    const double reduce = c.splitK > 1 ? m * n * c.splitK * 8.0 * batch : 0.0;
    const bool vectorColumns = p.transB || c.tileN * (c.input == GpuInput::F32 ? 4 : 2) >= 16;
    return (bytes / fill) * (1.0 + 0.02 * (c.tileM - m)) * (vectorColumns ? 1.0 : 4.0) + reduce;
  }
  const double tiles = std::ceil(m / c.tileM) * std::ceil(n / c.tileN) * batch * c.splitK;
  const double waves = std::ceil(tiles / units);
  const double kSteps = std::ceil(std::ceil(k / c.splitK) / c.tileK) * c.tileK;
  const double speed = c.family == GpuFamily::Simt ? 1.0 : 16.0;
  const double reduce = c.splitK > 1 ? m * n * batch * c.splitK * 8.0 / speed : 0.0;
  return waves * double(c.tileM) * c.tileN * kSteps / speed + reduce;
}

class GpuBackend : public Backend {
 public:
  explicit GpuBackend(std::vector<std::unique_ptr<VendorLibrary>> libraries) : libraries_(std::move(libraries)) {
    for (const auto& l : libraries_) libraryRegistry().push_back(l.get());
  }

  const char* name() const override { return vendor::kBackendName; }

  std::vector<DeviceInfo> devices() const override {
    GpuRuntime& rt = GpuRuntime::instance();
    std::vector<DeviceInfo> out;
    for (int i = 0; i < rt.deviceCount(); i++) out.push_back(rt.device(i).info);
    return out;
  }

  std::vector<std::string> candidates(const Problem& p) const override {
    std::vector<std::string> out;
    const GpuDevice* d;
    if (!GpuRuntime::instance().checkKernels(p.device, &d).isOk()) return out;
    for (const KernelEntry* e : d->kernels) {
      if (fitsDevice(e->config, p, *d).isOk()) out.push_back(e->config.name());
    }
    if (!libraries_.empty()) {
      std::unique_lock<std::mutex> lock;  // the libraries query the current device
      GpuRuntime::DeviceLane* lane;
      if (!GpuRuntime::instance().acquire(p.device, &lock, &lane).isOk()) return out;
      for (const auto& lib : libraries_) {
        for (std::string& n : lib->candidates(p, *d)) out.push_back(std::move(n));
      }
    }
    return out;
  }

  std::string heuristic(const Problem& p) const override {
    const GpuDevice* d;
    if (!GpuRuntime::instance().checkKernels(p.device, &d).isOk()) return "";
    // The family first (decode shapes stream weights; tensor/matrix cores beat FMA), then the
    // cheapest config of that family by estimatedCost. Skinny only up to M = 8: on an H200 (bf16,
    // x @ W^T, K 4096) skinny won at M = 1, but at M = 16 the split-K mma tile ran 2.4x faster than
    // the 16-row skinny tile, which re-reads A for every few weight rows.
    const GpuFamily order[] = {GpuFamily::Skinny, GpuFamily::Mma, GpuFamily::Mfma, GpuFamily::Simt};
    for (GpuFamily family : order) {
      if (family == GpuFamily::Skinny && p.m > kSkinnyHeuristicMaxM) continue;
      const KernelEntry* best = nullptr;
      double bestCost = 0.0;
      for (const KernelEntry* e : d->kernels) {
        if (e->config.family != family || !fitsDevice(e->config, p, *d).isOk()) continue;
        const double cost = estimatedCost(e->config, p, d->info.computeUnits);
        if (!best || cost < bestCost) {  // ties keep the earlier row: the device's own table first
          best = e;
          bestCost = cost;
        }
      }
      if (best) return best->config.name();
    }
    return "";
  }

  Status supports(const Problem& p, const std::string& config) const override {
    const GpuDevice* d;
    const VendorLibrary* lib;
    const KernelEntry* entry;
    return resolve(p, config, &d, &lib, &entry);
  }

  Status run(const Problem& p, const std::string& config, const Buffers& buf) const override {
    Status s = checkProblem(p);
    if (!s.isOk()) return s;
    GpuRuntime& rt = GpuRuntime::instance();
    const GpuDevice* d;
    s = rt.checkKernels(p.device, &d);
    if (!s.isOk()) return s;
    const VendorLibrary* lib = libraryFor(config);
    const KernelEntry* entry = nullptr;
    std::unique_lock<std::mutex> lock;
    GpuRuntime::DeviceLane* lane;
    s = rt.acquire(p.device, &lock, &lane);
    if (!s.isOk()) return s;
    s = lib ? lib->supports(p, config, *d) : findKernel(p, config, *d, &entry);
    if (!s.isOk()) return s;
    if (p.m == 0 || p.n == 0 || p.batch == 0) return Status::ok();
    // Queued only: whatever reads the result (a download, a synchronize) waits for it on the stream.
    return lib ? lib->run(p, config, buf, *d, lane->stream) : launch(*entry, p, buf, lane);
  }

  Status runOp(const OpDesc& op, const OpBuffers& buf) const override {
    Status s = checkOp(op, buf);
    if (!s.isOk()) return s;
    s = checkOpLimits(op);
    if (!s.isOk()) return s;
    GpuRuntime& rt = GpuRuntime::instance();
    const GpuDevice* d;
    s = rt.checkDevice(op.device, &d);
    if (!s.isOk()) return s;
    if (op.rows == 0 || op.cols == 0) return Status::ok();
    OpArgs args;
    args.op = op;
    args.x = buf.x;
    args.y = buf.y;
    args.out = buf.out;
    args.weight = buf.weight;
    args.bias = buf.bias;
    args.kCache = buf.kCache;
    args.vCache = buf.vCache;
    if (op.kind == OpKind::Rope) {  // in place on x
      args.out = const_cast<void*>(buf.x);
      args.op.ldout = op.ldx;
      args.op.dtypeOut = op.dtypeX;
    }
    // The host int arrays this op reads, staged in one copy: [ids | positions | slotIndex | past],
    // then Argmax's results. Offsets in int32 elements, each array starting on 64 bytes.
    const bool attention = op.kind == OpKind::Attention || op.kind == OpKind::KvStore;
    const int64_t idsCount = op.kind == OpKind::Embedding ? op.rows : 0;
    const int64_t positionsCount = op.kind == OpKind::Rope ? op.rows : 0;
    const int64_t sequenceCount = attention ? op.batch : 0;
    auto rounded = [](int64_t n) { return (n + 15) / 16 * 16; };
    const int64_t idsAt = 0, positionsAt = rounded(idsCount), slotsAt = positionsAt + rounded(positionsCount);
    const int64_t pastAt = slotsAt + rounded(sequenceCount), stagedInts = pastAt + rounded(sequenceCount);
    const int64_t resultsCount = op.kind == OpKind::Argmax ? op.rows : 0;
    int splits = 1;
    if (op.kind == OpKind::Attention) {
      int64_t maxKeys = 0;
      for (int32_t b = 0; b < op.batch; b++) maxKeys = std::max<int64_t>(maxKeys, int64_t(buf.past[b]) + op.tokens);
      splits = attentionSplits(op, maxKeys, d->info.computeUnits);
    }
    // Workspace: [split partials][staged ints][results].
    const int64_t partialBytes = (attentionPartialBytes(op, splits) + 255) / 256 * 256;
    const int64_t workspaceBytes = partialBytes + (stagedInts + resultsCount) * 4;

    std::unique_lock<std::mutex> lock;
    GpuRuntime::DeviceLane* lane;
    s = rt.acquire(op.device, &lock, &lane);
    if (!s.isOk()) return s;
    s = rt.ensureWorkspace(op.device, lane, workspaceBytes);
    if (!s.isOk()) return s;
    vendor::Stream stream = static_cast<vendor::Stream>(lane->stream);
    int32_t* deviceInts = reinterpret_cast<int32_t*>(reinterpret_cast<char*>(lane->workspace) + partialBytes);
    if (stagedInts > 0) {
      OpStaging::Slot* slot = nullptr;
      s = staging(op.device)->next(op.device, stagedInts, &slot);
      if (!s.isOk()) return s;
      int32_t* host = slot->ints.data();
      std::copy(buf.ids, buf.ids + idsCount, host + idsAt);
      std::copy(buf.positions, buf.positions + positionsCount, host + positionsAt);
      std::copy(buf.slotIndex, buf.slotIndex + sequenceCount, host + slotsAt);
      std::copy(buf.past, buf.past + sequenceCount, host + pastAt);
      vendor::Error e = vendor::memcpyHostToDevice(deviceInts, host, size_t(stagedInts) * 4, stream);
      if (e == vendor::kSuccess) e = vendor::eventRecord(slot->copied, stream);
      if (e != vendor::kSuccess) {
        vendor::clearLastError();
        return gpuError(op.device, std::string("staging the int arrays of ") + opKindName(op.kind), e);
      }
      slot->pending = true;
    }
    args.ids = idsCount ? deviceInts + idsAt : nullptr;
    args.positions = positionsCount ? deviceInts + positionsAt : nullptr;
    args.slotIndex = sequenceCount ? deviceInts + slotsAt : nullptr;
    args.past = sequenceCount ? deviceInts + pastAt : nullptr;
    args.idsOut = resultsCount ? deviceInts + stagedInts : nullptr;
    args.splits = splits;
    args.partials = splits > 1 ? lane->workspace : nullptr;
    s = launchOpKernels(args, lane->stream);
    if (!s.isOk() || op.kind != OpKind::Argmax) return s;
    // The chosen ids go back to the host: the one op that waits.
    vendor::Error e = vendor::memcpyDeviceToHost(buf.idsOut, args.idsOut, size_t(resultsCount) * 4, stream);
    if (e == vendor::kSuccess) e = vendor::streamSynchronize(stream);
    if (e != vendor::kSuccess) {
      return gpuError(op.device, "running argmax (or work queued before it; a kernel fault leaves the device unusable until the "
                                 "process restarts)", e);
    }
    return Status::ok();
  }

  Status time(const Problem& p, const std::string& config, const TimingOptions& opts,
              std::vector<double>* microseconds) const override {
    const GpuDevice* device;
    const VendorLibrary* lib;
    const KernelEntry* entry;
    Status s = resolve(p, config, &device, &lib, &entry);
    if (!s.isOk()) return s;
    const GpuDevice& d = *device;
    const int64_t bytesA = std::max<int64_t>(1, (p.batch - 1) * p.strideA + p.rowsA() * p.lda) * dtypeSize(p.dtypeA);
    const int64_t bytesB = std::max<int64_t>(1, (p.batch - 1) * p.strideB + p.rowsB() * p.ldb) * dtypeSize(p.dtypeB);
    const int64_t bytesC = std::max<int64_t>(1, (p.batch - 1) * p.strideC + p.m * p.ldc) * dtypeSize(p.dtypeC);
    // Rotating copies of A and B, so a timed run does not find its inputs in L2 from the run before,
    // then C and the bias: all carved from the device's timing arena, which persists between calls.
    int64_t copies = 1;
    if (opts.rotatingBytes > 0) copies = std::min<int64_t>(64, opts.rotatingBytes / (bytesA + bytesB) + 1);
    auto aligned = [](int64_t bytes) { return (bytes + 255) / 256 * 256; };
    const int64_t bytesBias = std::max<int64_t>(4, p.n * 4);
    const int64_t needed = copies * (aligned(bytesA) + aligned(bytesB)) + aligned(bytesC) + aligned(bytesBias);
    std::shared_ptr<DeviceAllocation> arena;  // held past the lane lock below, so never freed under it
    s = timingArena(p.device, needed, &arena);
    if (!s.isOk()) return s;
    char* base = static_cast<char*>(arena->data());
    auto bufferA = [&](int64_t i) { return base + i * (aligned(bytesA) + aligned(bytesB)); };
    auto bufferB = [&](int64_t i) { return bufferA(i) + aligned(bytesA); };
    char* c = base + copies * (aligned(bytesA) + aligned(bytesB));
    char* bias = c + aligned(bytesC);

    std::unique_lock<std::mutex> lock;
    GpuRuntime::DeviceLane* lane;
    s = GpuRuntime::instance().acquire(p.device, &lock, &lane);
    if (!s.isOk()) return s;
    vendor::Stream stream = static_cast<vendor::Stream>(lane->stream);
    vendor::Event start, stop;
    vendor::Error created = vendor::eventCreate(&start);
    if (created != vendor::kSuccess) return gpuError(p.device, "creating an event", created);
    created = vendor::eventCreate(&stop);
    if (created != vendor::kSuccess) {
      (void)vendor::eventDestroy(start);
      return gpuError(p.device, "creating an event", created);
    }
    microseconds->clear();
    double spentMs = 0.0;
    const int total = opts.warmup + opts.iterations;
    for (int it = 0; it < total && s.isOk(); it++) {
      const int64_t i = it % copies;
      Buffers buf{bufferA(i), bufferB(i), c, p.hasBias ? bias : nullptr};
      vendor::Error e = vendor::eventRecord(start, stream);
      if (e == vendor::kSuccess) {
        s = lib ? lib->run(p, config, buf, d, stream) : launch(*entry, p, buf, lane);
        e = vendor::eventRecord(stop, stream);
      }
      if (e == vendor::kSuccess) e = vendor::eventSynchronize(stop);
      float ms = 0.0f;
      if (e == vendor::kSuccess) e = vendor::eventElapsedMs(&ms, start, stop);
      if (e != vendor::kSuccess) s = gpuError(p.device, "timing " + config, e);
      if (!s.isOk()) break;
      if (it >= opts.warmup) microseconds->push_back(double(ms) * 1000.0);
      spentMs += ms;
      if (opts.maxMilliseconds > 0 && spentMs > opts.maxMilliseconds && !microseconds->empty()) break;
    }
    (void)vendor::eventDestroy(start);
    (void)vendor::eventDestroy(stop);
    return s;
  }

 private:
  // Host copies of ops' int arrays waiting for their copy to the device: a ring of slots per device,
  // each reused only once the event recorded after its copy has passed, so an enqueued copy never
  // reads a slot that a later op refills (whatever the runtime does with pageable memory).
  struct OpStaging {
    struct Slot {
      std::vector<int32_t> ints;
      vendor::Event copied = nullptr;
      bool pending = false;
    };
    static constexpr int kSlots = 16;
    Slot slots[kSlots];
    int next_ = 0;
    ~OpStaging() {
      for (Slot& slot : slots) {
        if (slot.copied) vendor::eventDestroy(slot.copied);  // at exit the runtime may be gone: an error, not a crash
      }
    }
    // The next slot, holding at least `count` ints (caller holds the device's lane).
    Status next(int device, int64_t count, Slot** out) {
      Slot& slot = slots[next_];
      next_ = (next_ + 1) % kSlots;
      vendor::Error e = vendor::kSuccess;
      if (!slot.copied) e = vendor::eventCreate(&slot.copied);
      if (e == vendor::kSuccess && slot.pending) e = vendor::eventSynchronize(slot.copied);
      if (e != vendor::kSuccess) {
        vendor::clearLastError();
        return gpuError(device, "waiting for an earlier op's int arrays to reach the device", e);
      }
      slot.pending = false;
      if (int64_t(slot.ints.size()) < count) slot.ints.resize(size_t(count));
      *out = &slot;
      return Status::ok();
    }
  };

  OpStaging* staging(int device) const {
    std::lock_guard<std::mutex> lock(stagingMutex_);
    std::unique_ptr<OpStaging>& st = staging_[device];
    if (!st) st.reset(new OpStaging());
    return st.get();
  }

  // What the op kernels cannot take beyond checkOp's rules: grid dimensions and register blocks.
  static Status checkOpLimits(const OpDesc& op) {
    const std::string name = opKindName(op.kind);
    const int64_t gridLimit = 65535, int31 = 2147483647;
    if (op.kind == OpKind::Attention) {
      if (op.headDim > kMaxAttentionHeadDim) {
        return unsupported(name + ": the GPU kernels take head dims up to " + std::to_string(kMaxAttentionHeadDim) + ", not " +
                           std::to_string(op.headDim));
      }
      if (op.batch > gridLimit || op.kvHeads > gridLimit || op.heads > gridLimit) {
        return unsupported(name + ": the GPU kernels take batch, heads and kvHeads up to 65535");
      }
    }
    if ((op.kind == OpKind::RmsNorm || op.kind == OpKind::LayerNorm || op.kind == OpKind::Softmax || op.kind == OpKind::Argmax ||
         op.kind == OpKind::Attention) && op.rows > int31) {
      return unsupported(name + ": the GPU kernels take fewer than 2^31 rows, not " + std::to_string(op.rows));
    }
    if (op.kind == OpKind::Argmax && op.cols > int31) {
      return unsupported(name + ": rows of at most 2^31 - 1 elements (ids are int32), not " + std::to_string(op.cols));
    }
    return Status::ok();
  }

  // supports(), keeping what it found: the device, and the library that owns `config` or else the
  // kernel compiled under that name.
  Status resolve(const Problem& p, const std::string& config, const GpuDevice** d, const VendorLibrary** lib,
                 const KernelEntry** entry) const {
    Status s = GpuRuntime::instance().checkKernels(p.device, d);
    if (!s.isOk()) return s;
    *lib = libraryFor(config);
    *entry = nullptr;
    if (*lib) {
      std::unique_lock<std::mutex> lock;
      GpuRuntime::DeviceLane* lane;
      s = GpuRuntime::instance().acquire(p.device, &lock, &lane);
      return s.isOk() ? (*lib)->supports(p, config, **d) : s;
    }
    return findKernel(p, config, **d, entry);
  }

  const VendorLibrary* libraryFor(const std::string& config) const {
    for (const auto& lib : libraries_) {
      const std::string prefix = std::string(lib->prefix()) + ".";
      if (config.compare(0, prefix.size(), prefix) == 0) return lib.get();
    }
    return nullptr;
  }

  static Status fitsDevice(const GpuConfig& c, const Problem& p, const GpuDevice& d) {
    Status s = gpuConfigFits(c, p);
    if (!s.isOk()) return s;
    if (p.batch > 2147483647) return unsupported("GPU kernels take batches below 2^31, not " + std::to_string(p.batch));
    if (c.sharedBytes() > d.sharedPerBlock) {
      return unsupported("config " + c.name() + " needs " + std::to_string(c.sharedBytes()) + " bytes of shared memory; " +
                         d.info.name + " allows " + std::to_string(d.sharedPerBlock) + " per block");
    }
    return Status::ok();
  }

  static Status findKernel(const Problem& p, const std::string& config, const GpuDevice& d, const KernelEntry** out) {
    GpuConfig c;
    Status s = GpuConfig::parse(config, &c);
    if (!s.isOk()) return s;
    for (const KernelEntry* e : d.kernels) {
      if (e->config.name() == config) {
        s = fitsDevice(e->config, p, d);
        if (s.isOk()) *out = e;
        return s;
      }
    }
    std::string tables;
    for (GpuArch a : d.tables) tables += std::string(tables.empty() ? "" : ", ") + gpuArchName(a);
    return unsupported("config " + config + " is not compiled for " + vendor::kBackendName + ":" + std::to_string(d.index) + " (" +
                       d.info.name + ", " + d.info.arch + "), which runs the " + (tables.empty() ? "no" : tables) +
                       " table(s); see the candidates");
  }

  // Queues the kernel with the lane's stream and workspace (caller holds the lane).
  static Status launch(const KernelEntry& entry, const Problem& p, const Buffers& buf, GpuRuntime::DeviceLane* lane) {
    Status s = GpuRuntime::instance().ensureWorkspace(p.device, lane, gpuWorkspaceBytes(entry.config, p));
    if (!s.isOk()) return s;
    LaunchContext ctx;
    ctx.stream = lane->stream;
    ctx.workspace = lane->workspace;
    return entry.launch(entry.config, makeArgs(p, buf), ctx);
  }

  // At least `bytes` of device memory for timing, filled with small values that are finite in every
  // dtype (16-bit patterns 0x3c00..0x3eff: [1, 1.75) as f16, [0.0078, 0.5) as bf16; f32 reads pairs of
  // them). One arena per device, grown when a larger problem comes and kept for the next call.
  Status timingArena(int device, int64_t bytes, std::shared_ptr<DeviceAllocation>* out) const {
    std::lock_guard<std::mutex> lock(arenaMutex_);
    std::shared_ptr<DeviceAllocation>& arena = arenas_[device];
    if (!arena || arena->bytes() < bytes) {
      arena.reset();  // free the smaller one first
      Status s = DeviceAllocation::create(device, bytes, &arena);
      if (!s.isOk()) return s;
      std::vector<uint16_t> pattern(size_t(4) << 20);  // 8 MiB, uploaded repeatedly
      std::mt19937 rng(1234);
      for (uint16_t& v : pattern) v = uint16_t(0x3c00 + rng() % 0x300);
      const int64_t chunk = int64_t(pattern.size() * 2);
      for (int64_t offset = 0; offset < bytes && s.isOk(); offset += chunk) {
        s = copyHostToDevice(*arena, offset, pattern.data(), std::min(chunk, bytes - offset));
      }
      if (!s.isOk()) {
        arena.reset();
        return s;
      }
    }
    *out = arena;
    return Status::ok();
  }

  mutable std::mutex stagingMutex_;
  mutable std::map<int, std::unique_ptr<OpStaging>> staging_;
  mutable std::mutex arenaMutex_;
  mutable std::map<int, std::shared_ptr<DeviceAllocation>> arenas_;
  std::vector<std::unique_ptr<VendorLibrary>> libraries_;
};

}  // namespace

std::unique_ptr<Backend> makeGpuBackend(std::vector<std::unique_ptr<VendorLibrary>> libraries) {
  return std::unique_ptr<Backend>(new GpuBackend(std::move(libraries)));
}

std::vector<const VendorLibrary*> gpuVendorLibraries() { return libraryRegistry(); }

const char* gpuBackendName() { return vendor::kBackendName; }

bool gpuBackendRunsNvidiaTables() {
#if defined(GEMMKIT_HIP) || defined(GEMMKIT_EMU_HIP)
  return false;
#else
  return true;
#endif
}

bool gpuBackendIsEmulated() {
#if defined(GEMMKIT_EMU)
  return true;
#else
  return false;
#endif
}

}  // namespace gemmkit
