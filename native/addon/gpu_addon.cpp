// The Node-API surface of a GPU addon (gemmkit_cuda.node or gemmkit_hip.node, and the emulated
// gemmkit_emu_cuda.node and gemmkit_emu_hip.node; this file is compiled once per backend). The same
// raw surface as the CPU addon (info, matmulSync/Async, opSync/Async, heuristic, candidates, supports,
// timeConfig); matmul takes device buffers, or typed arrays that it stages through device memory; ops
// take device buffers ({ buffer, byteOffset }) and host Int32Arrays. Plus device memory (alloc/free,
// upload/download/copy, synchronize) and the config tables (configs, parseConfig). The sync calls on
// device buffers only queue work on the device's stream; reads of device memory (download, argmax's
// ids) and the async calls wait for it.
// It only unpacks arguments and manages lifetimes; native/gpu does the work.
#include <napi.h>

#include <mutex>

#include "../core/backend.h"
#include "../gpu/config_tables.h"
#include "../gpu/gpu_backend.h"
#include "../gpu/gpu_runtime.h"
#include "../gpu/kernel_table.h"
#include "backend_calls.h"
#include "op_calls.h"
#include "problem_args.h"

namespace gemmkit {

namespace {

// A JS handle to device memory. free() drops the handle's share; work in flight keeps its own. The
// bytes are reported to V8 while the handle holds them, so forgotten device tensors get collected.
struct DeviceBufferHandle {
  std::shared_ptr<DeviceAllocation> allocation;

  void release(napi_env env) {
    if (!allocation) return;
    int64_t ignored;
    napi_adjust_external_memory(env, -allocation->bytes(), &ignored);
    allocation.reset();
  }
};

// Tags our externals, so a foreign External is never taken for a device buffer.
const napi_type_tag kDeviceBufferTag = {0x67656d6d6b697400ull, 0x6465766275660001ull};

[[noreturn]] void throwType(const Napi::Env& env, const std::string& msg) {
  throw Napi::TypeError::New(env, "gemmkit native: " + msg);
}

// The handle behind a JS value, or null when it is not one of our device buffers.
DeviceBufferHandle* deviceBufferHandle(const Napi::Value& v) {
  if (!v.IsExternal() || !v.As<Napi::Object>().CheckTypeTag(&kDeviceBufferTag)) return nullptr;
  return v.As<Napi::External<DeviceBufferHandle>>().Data();
}

std::shared_ptr<DeviceAllocation> allocationOf(const Napi::Env& env, const Napi::Value& v, const char* name) {
  DeviceBufferHandle* h = deviceBufferHandle(v);
  if (!h) throwType(env, std::string(name) + " must be a device buffer from alloc()");
  if (!h->allocation) throwType(env, std::string(name) + " is a device buffer that was already freed");
  return h->allocation;
}

Napi::Value wrapAllocation(const Napi::Env& env, std::shared_ptr<DeviceAllocation> a) {
  int64_t ignored;
  napi_adjust_external_memory(env, a->bytes(), &ignored);
  auto* handle = new DeviceBufferHandle{std::move(a)};
  Napi::External<DeviceBufferHandle> ext = Napi::External<DeviceBufferHandle>::New(env, handle, [](Napi::Env env, DeviceBufferHandle* h) {
    h->release(env);
    delete h;
  });
  ext.TypeTag(&kDeviceBufferTag);
  return ext;
}

int64_t integerArg(const Napi::Env& env, const Napi::Value& v, const char* name, int64_t fallback) {
  return v.IsUndefined() ? fallback : nonNegativeInteger(env, v, name);
}

// A GEMM on device buffers, or on host typed arrays that are staged through device memory for the
// call (how the tuner checks a GPU config against the CPU reference): the problem, the pointers, and
// shares of the allocations so they outlive the call however the JS side frees them meanwhile.
struct DeviceCall {
  UnpackedCall call;  // with host typed arrays, call.buffers are host pointers valid for the call's lifetime
  bool staged = false;
  std::vector<std::shared_ptr<DeviceAllocation>> keep;

  // On the JS thread after async work: copies a staged C computed in a snapshot into its typed array.
  Status finish() { return call.finish(); }
};

void* deviceOperand(const Napi::Env& env, const Napi::Object& desc, const char* key, int64_t elements, DType t, int device,
                    std::vector<std::shared_ptr<DeviceAllocation>>* keep) {
  std::shared_ptr<DeviceAllocation> a = allocationOf(env, desc.Get(key), key);
  if (a->device() != device) {
    throwType(env, std::string(key) + " is on device " + std::to_string(a->device()) + " but the GEMM runs on device " +
                       std::to_string(device));
  }
  const int64_t bytes = elements * dtypeSize(t);
  if (bytes > a->bytes()) {
    throw Napi::RangeError::New(env, std::string("gemmkit native: ") + key + " has " + std::to_string(a->bytes()) +
                                         " bytes but the problem reads " + std::to_string(bytes));
  }
  keep->push_back(a);
  return a->data();
}

DeviceCall unpackDeviceCall(const Napi::Env& env, const Napi::Value& descValue, HostLifetime lifetime) {
  if (!descValue.IsObject()) throwType(env, "problem description must be an object");
  Napi::Object d = descValue.As<Napi::Object>();
  DeviceCall dc;
  if (d.Get("a").IsTypedArray()) {
    // Host operands: unpackCall checks them (types, sizes) and keeps their memory valid for `lifetime`.
    dc.call = unpackCall(env, descValue, true, lifetime);
    dc.staged = true;
    return dc;
  }
  dc.call = unpackCall(env, descValue, false);
  const Problem& p = dc.call.problem;
  Buffers& b = dc.call.buffers;
  b.a = deviceOperand(env, d, "a", extentA(p), p.dtypeA, p.device, &dc.keep);
  b.b = deviceOperand(env, d, "b", extentB(p), p.dtypeB, p.device, &dc.keep);
  b.c = deviceOperand(env, d, "c", extentC(p), p.dtypeC, p.device, &dc.keep);
  if (p.hasBias) b.bias = deviceOperand(env, d, "bias", p.n, p.dtypeBias, p.device, &dc.keep);
  return dc;
}

// Copies host operands to fresh device memory, runs, copies C back (C goes up only when beta reads it).
Status runStaged(const UnpackedCall& call, const std::string& config) {
  const Problem& p = call.problem;
  const Buffers& host = call.buffers;
  const int64_t bytesA = extentA(p) * dtypeSize(p.dtypeA), bytesB = extentB(p) * dtypeSize(p.dtypeB);
  const int64_t bytesC = extentC(p) * dtypeSize(p.dtypeC), bytesBias = p.hasBias ? p.n * dtypeSize(p.dtypeBias) : 0;
  std::shared_ptr<DeviceAllocation> a, b, c, bias;
  Status s = DeviceAllocation::create(p.device, bytesA, &a);
  if (s.isOk()) s = DeviceAllocation::create(p.device, bytesB, &b);
  if (s.isOk()) s = DeviceAllocation::create(p.device, bytesC, &c);
  if (s.isOk()) s = DeviceAllocation::create(p.device, bytesBias, &bias);
  if (s.isOk()) s = copyHostToDevice(*a, 0, host.a, bytesA);
  if (s.isOk()) s = copyHostToDevice(*b, 0, host.b, bytesB);
  if (s.isOk() && p.beta != 0.0f) s = copyHostToDevice(*c, 0, host.c, bytesC);
  if (s.isOk() && p.hasBias) s = copyHostToDevice(*bias, 0, host.bias, bytesBias);
  if (s.isOk()) s = call.backend->run(p, config, Buffers{a->data(), b->data(), c->data(), p.hasBias ? bias->data() : nullptr});
  if (s.isOk()) s = copyDeviceToHost(host.c, *c, 0, bytesC);
  return s;
}

Status runDeviceCall(const DeviceCall& dc, const std::string& config) {
  if (config.empty()) {
    const GpuDevice* d;
    Status s = GpuRuntime::instance().checkKernels(dc.call.problem.device, &d);
    if (!s.isOk()) return s;
    return unsupported("no GPU kernel of this build runs " + dc.call.problem.describe());
  }
  if (dc.staged) return runStaged(dc.call, config);
  return dc.call.backend->run(dc.call.problem, config, dc.call.buffers);
}

// On device buffers: queues the GEMM on the device's stream and returns (whatever reads C later, a
// download or a synchronize, waits for it there); on host typed arrays: runs and copies C back.
Napi::Value matmulSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceCall dc = unpackDeviceCall(env, info[0], HostLifetime::Call);
  Status s = runDeviceCall(dc, dc.call.configOrHeuristic());
  if (!s.isOk()) throw statusError(env, s);
  return env.Undefined();
}

// Runs one GEMM on a libuv thread: queues it on the device's stream and waits there, not on the
// event loop, so the promise settles when C is written (or with the kernel's fault).
Napi::Value matmulAsync(const Napi::CallbackInfo& info) {
  DeviceCall dc = unpackDeviceCall(info.Env(), info[0], HostLifetime::Work);
  const std::string config = dc.call.configOrHeuristic();
  return queueHeldWork(info.Env(), "gemmkit.gpuMatmul", std::move(dc), [config](const DeviceCall& held) {
    Status s = runDeviceCall(held, config);
    return s.isOk() ? synchronizeDevice(held.call.problem.device) : s;
  });
}

// One op beyond GEMM (core/ops.h) on device buffers: the op's description, its device operands with
// shares of their allocations (held until the op has run), and copies of its host int arrays.
struct DeviceOpCall {
  OpDesc op;
  OpBuffers buffers;
  OpHostArrays host;
  std::vector<std::shared_ptr<DeviceAllocation>> keep;
  const Backend* backend = nullptr;
  // idsOut (host memory the op writes): used in place by a sync call, held or snapshotted for async work.
  std::vector<HostOperand> hostOutputs;

  // On the JS thread after async work: copies ids written into a snapshot into idsOut.
  Status finish() {
    for (HostOperand& o : hostOutputs) {
      Status s = o.finish();
      if (!s.isOk()) return s;
    }
    return Status::ok();
  }
};

// A memory operand { buffer, byteOffset } of dtype t spanning `extent` elements from byteOffset, on
// the op's device and inside the allocation; null when the op does not use it (extent < 0), or when
// it is absent and may be (an empty extent, LayerNorm's optional bias).
void* deviceOpOperand(const Napi::Env& env, const Napi::Object& desc, const char* key, DType t, int64_t extent, bool optional,
                      int device, std::vector<std::shared_ptr<DeviceAllocation>>* keep) {
  if (extent < 0) return nullptr;
  Napi::Value v = desc.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (extent == 0 || optional) return nullptr;
    throwType(env, std::string(key) + " is missing: the op reads " + std::to_string(extent) + " elements of it");
  }
  if (!v.IsObject()) throwType(env, std::string(key) + " must be { buffer, byteOffset } of a device buffer");
  const Napi::Object o = v.As<Napi::Object>();
  std::shared_ptr<DeviceAllocation> a = allocationOf(env, o.Get("buffer"), key);
  if (a->device() != device) {
    throwType(env, std::string(key) + " is on device " + std::to_string(a->device()) + " but the op runs on device " +
                       std::to_string(device));
  }
  const int64_t offset = integerArg(env, o.Get("byteOffset"), (std::string(key) + ".byteOffset").c_str(), 0);
  const int64_t size = dtypeSize(t);
  if (offset % size != 0) {
    throw Napi::RangeError::New(env, std::string("gemmkit native: ") + key + ".byteOffset = " + std::to_string(offset) +
                                         " is not a multiple of the " + dtypeName(t) + " element size " + std::to_string(size));
  }
  const int64_t bytes = extent * size;
  if (offset > a->bytes() || bytes > a->bytes() - offset) {
    throw Napi::RangeError::New(env, std::string("gemmkit native: ") + key + " spans " + std::to_string(bytes) + " bytes from byteOffset " +
                                         std::to_string(offset) + " but its device buffer has " + std::to_string(a->bytes()));
  }
  keep->push_back(a);
  return static_cast<char*>(a->data()) + offset;
}

DeviceOpCall unpackDeviceOpCall(const Napi::Env& env, const Napi::Value& descValue, HostLifetime lifetime) {
  DeviceOpCall call;
  OpExtents e;
  call.op = unpackOpDesc(env, descValue, &e);
  const Napi::Object d = descValue.As<Napi::Object>();
  call.backend = findBackend(gpuBackendName());
  if (!call.backend) throwType(env, std::string("backend '") + gpuBackendName() + "' is not registered in this addon");
  const int device = call.op.device;
  OpBuffers& b = call.buffers;
  b.x = deviceOpOperand(env, d, "x", call.op.dtypeX, e.x, false, device, &call.keep);
  b.y = deviceOpOperand(env, d, "y", call.op.dtypeY, e.y, false, device, &call.keep);
  b.out = deviceOpOperand(env, d, "out", call.op.dtypeOut, e.out, false, device, &call.keep);
  b.weight = deviceOpOperand(env, d, "weight", e.dtypeWeight, e.weight, false, device, &call.keep);
  b.bias = deviceOpOperand(env, d, "bias", e.dtypeWeight, e.bias, e.biasOptional, device, &call.keep);
  b.kCache = static_cast<float*>(deviceOpOperand(env, d, "kCache", DType::F32, e.kCache, false, device, &call.keep));
  b.vCache = static_cast<float*>(deviceOpOperand(env, d, "vCache", DType::F32, e.vCache, false, device, &call.keep));
  call.host = unpackOpHostArrays(env, d, e, lifetime, &call.hostOutputs);
  call.host.setPointers(&b);
  // The indices, before anything is queued (runOp checks again; this makes a bad one a synchronous throw).
  Status s = checkOp(call.op, b);
  if (!s.isOk()) throw statusError(env, s);
  return call;
}

// opSync(desc): queues the op on the device's stream and returns; Argmax alone waits, for its ids.
Napi::Value opSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceOpCall call = unpackDeviceOpCall(env, info[0], HostLifetime::Call);
  Status s = call.backend->runOp(call.op, call.buffers);
  if (!s.isOk()) throw statusError(env, s);
  return env.Undefined();
}

// opAsync(desc) -> Promise<void>: queues the op and waits for it on a libuv thread.
Napi::Value opAsync(const Napi::CallbackInfo& info) {
  DeviceOpCall call = unpackDeviceOpCall(info.Env(), info[0], HostLifetime::Work);
  return queueHeldWork(info.Env(), "gemmkit.gpuOp", std::move(call), [](DeviceOpCall& held) {
    held.host.setPointers(&held.buffers);  // the copies moved with the call (idsOut: held memory)
    Status s = held.backend->runOp(held.op, held.buffers);
    return s.isOk() ? synchronizeDevice(held.op.device) : s;
  });
}

// alloc(device, bytes) -> device buffer. Out of memory is an Error with code GEMMKIT_OUT_OF_MEMORY.
Napi::Value alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t device = integerArg(env, info[0], "device", -1);
  const int64_t bytes = integerArg(env, info[1], "bytes", -1);
  if (device < 0 || device > 1023) throwType(env, "alloc: device must be a device index");
  if (bytes < 0) throwType(env, "alloc: bytes must be given");
  std::shared_ptr<DeviceAllocation> a;
  Status s = DeviceAllocation::create(int(device), bytes, &a);
  if (!s.isOk()) throw statusError(env, s);
  return wrapAllocation(env, std::move(a));
}

// free(buffer): drops the handle's share now (the memory goes once no GEMM in flight uses it).
Napi::Value freeBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  allocationOf(env, info[0], "buffer");  // throws unless a live device buffer
  deviceBufferHandle(info[0])->release(env);
  return env.Undefined();
}

Napi::Value bufferInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBufferHandle* h = deviceBufferHandle(info[0]);
  if (!h) throwType(env, "buffer must be a device buffer");
  Napi::Object o = Napi::Object::New(env);
  o.Set("freed", h->allocation == nullptr);
  o.Set("device", h->allocation ? h->allocation->device() : -1);
  o.Set("bytes", h->allocation ? double(h->allocation->bytes()) : 0.0);
  return o;
}

struct HostBytes {
  void* data;
  int64_t bytes;
};

// A typed array's memory for a synchronous copy (no JS runs until it returns, so it stays valid); a
// TypeError for a detached one.
HostBytes hostBytes(const Napi::Env& env, const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray()) throwType(env, std::string(name) + " must be a typed array");
  TypedView view = typedView(env, v.As<Napi::TypedArray>());
  if (view.length == 0 && view.arrayBuffer.IsArrayBuffer()) {
    bool detached = false;
    napi_is_detached_arraybuffer(env, view.arrayBuffer, &detached);
    if (detached) throwType(env, std::string(name) + " is backed by a detached ArrayBuffer");
  }
  return HostBytes{view.data, int64_t(view.length * view.elementBytes)};
}

// upload(buffer, typedArray, byteOffset = 0): copies the whole typed array into the buffer.
Napi::Value upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<DeviceAllocation> a = allocationOf(env, info[0], "buffer");
  HostBytes h = hostBytes(env, info[1], "source");
  Status s = copyHostToDevice(*a, integerArg(env, info[2], "byteOffset", 0), h.data, h.bytes);
  if (!s.isOk()) throw statusError(env, s);
  return env.Undefined();
}

// download(buffer, typedArray, byteOffset = 0): fills the whole typed array from the buffer.
Napi::Value download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<DeviceAllocation> a = allocationOf(env, info[0], "buffer");
  HostBytes h = hostBytes(env, info[1], "destination");
  Status s = copyDeviceToHost(h.data, *a, integerArg(env, info[2], "byteOffset", 0), h.bytes);
  if (!s.isOk()) throw statusError(env, s);
  return env.Undefined();
}

// copy(dst, src, bytes, dstOffset = 0, srcOffset = 0): device to device on one device.
Napi::Value copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<DeviceAllocation> dst = allocationOf(env, info[0], "destination");
  std::shared_ptr<DeviceAllocation> src = allocationOf(env, info[1], "source");
  Status s = copyDeviceToDevice(*dst, integerArg(env, info[3], "dstOffset", 0), *src, integerArg(env, info[4], "srcOffset", 0),
                                integerArg(env, info[2], "bytes", 0));
  if (!s.isOk()) throw statusError(env, s);
  return env.Undefined();
}

Napi::Value synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Status s = synchronizeDevice(int(integerArg(env, info[0], "device", 0)));
  if (!s.isOk()) throw statusError(env, s);
  return env.Undefined();
}

Napi::Object configObject(Napi::Env env, const GpuConfig& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", c.name());
  o.Set("arch", gpuArchName(c.arch));
  o.Set("input", gpuInputName(c.input));
  o.Set("family", gpuFamilyName(c.family));
  o.Set("tileM", c.tileM);
  o.Set("tileN", c.tileN);
  o.Set("tileK", c.tileK);
  o.Set("warps", c.warps);
  o.Set("stages", c.stages);
  o.Set("splitK", c.splitK);
  o.Set("group", c.group);
  o.Set("threads", c.threads());
  o.Set("sharedBytes", double(c.sharedBytes()));
  return o;
}

// configs() -> every row of this vendor's tables, each with whether this build compiled it.
Napi::Value configs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<Napi::Object> rows;
  for (const GpuConfigTable& t : kGpuConfigTables) {
    const std::vector<KernelEntry>& compiled = compiledKernels(t.arch);
    for (size_t i = 0; i < t.size; i++) {
      const GpuConfig& c = t.configs[i];
      if (c.isCuda() != gpuBackendRunsNvidiaTables()) continue;
      Napi::Object o = configObject(env, c);
      bool built = false;
      for (const KernelEntry& e : compiled) built = built || e.config.name() == c.name();
      o.Set("compiled", built);
      rows.push_back(o);
    }
  }
  Napi::Array out = Napi::Array::New(env, rows.size());
  for (size_t i = 0; i < rows.size(); i++) out.Set(uint32_t(i), rows[i]);
  return out;
}

// parseConfig(name) -> the fields of a GPU config name (any vendor), or a RangeError / Error saying
// what is wrong with it (malformed, not canonical, or over its target's limits).
Napi::Value parseConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throwType(env, "parseConfig: name must be a string");
  GpuConfig c;
  Status s = GpuConfig::parse(info[0].As<Napi::String>().Utf8Value(), &c);
  if (!s.isOk()) throw statusError(env, s);
  return configObject(env, c);
}

// info(): the CPU addon's shape where it overlaps (backends with devices, libraries that can change a
// tuned result, threads), so the tuner treats every addon alike, plus the GPU details under `gpu`.
Napi::Value nativeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GpuRuntime& rt = GpuRuntime::instance();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env, size_t(rt.deviceCount()));
  for (int i = 0; i < rt.deviceCount(); i++) {
    const GpuDevice& d = rt.device(i);
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", d.index);
    o.Set("name", d.info.name);
    o.Set("arch", d.info.arch);
    o.Set("computeUnits", d.info.computeUnits);
    o.Set("memoryBytes", double(d.info.memoryBytes));
    o.Set("sharedBytesPerBlock", double(d.sharedPerBlock));
    Napi::Array tables = Napi::Array::New(env, d.tables.size());
    for (size_t j = 0; j < d.tables.size(); j++) tables.Set(uint32_t(j), gpuArchName(d.tables[j]));
    o.Set("tables", tables);
    o.Set("kernels", double(d.kernels.size()));
    devices.Set(uint32_t(i), o);
  }
  Napi::Object backend = Napi::Object::New(env);
  backend.Set("name", gpuBackendName());
  backend.Set("devices", devices);
  Napi::Array backends = Napi::Array::New(env, 1);
  backends.Set(0u, backend);
  out.Set("backends", backends);

  // The runtime and driver versions and the vendor libraries all change what a tuned file means.
  const std::string vendorName = gpuBackendName();
  std::vector<Napi::Object> libs;
  libs.push_back(libraryObject(env, vendorName + "-runtime", rt.runtimeVersion(), "", ""));
  libs.push_back(libraryObject(env, vendorName + "-driver", rt.driverVersion().empty() ? "none" : rt.driverVersion(), "", ""));
  for (const VendorLibrary* l : gpuVendorLibraries()) {
    libs.push_back(
        libraryObject(env, l->prefix(), rt.deviceCount() > 0 ? l->version() : "unknown", "", std::string(l->prefix()) + ".*"));
  }
  Napi::Array libraries = Napi::Array::New(env, libs.size());
  for (size_t i = 0; i < libs.size(); i++) libraries.Set(uint32_t(i), libs[i]);
  out.Set("libraries", libraries);
  out.Set("threads", 0);

  Napi::Object gpu = Napi::Object::New(env);
  gpu.Set("backend", gpuBackendName());
  gpu.Set("runtimeVersion", rt.runtimeVersion());
  gpu.Set("driverVersion", rt.driverVersion());
  gpu.Set("builtArchs", rt.builtArchs());
  gpu.Set("unavailable", rt.unavailableReason());
  // The CPU emulator (emu-cuda, emu-hip): its timings are host timings, never written to a tuned file.
  gpu.Set("emulated", gpuBackendIsEmulated());
  out.Set("gpu", gpu);
  out.Set("compiler", compilerName());
  return out;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  static std::once_flag registered;
  std::call_once(registered, registerVendorBackend);
  exports.Set("info", Napi::Function::New(env, nativeInfo, "info"));
  exports.Set("matmulSync", Napi::Function::New(env, matmulSync, "matmulSync"));
  exports.Set("matmulAsync", Napi::Function::New(env, matmulAsync, "matmulAsync"));
  exports.Set("opSync", Napi::Function::New(env, opSync, "opSync"));
  exports.Set("opAsync", Napi::Function::New(env, opAsync, "opAsync"));
  exportBackendCalls(env, exports);
  exports.Set("alloc", Napi::Function::New(env, alloc, "alloc"));
  exports.Set("free", Napi::Function::New(env, freeBuffer, "free"));
  exports.Set("bufferInfo", Napi::Function::New(env, bufferInfo, "bufferInfo"));
  exports.Set("upload", Napi::Function::New(env, upload, "upload"));
  exports.Set("download", Napi::Function::New(env, download, "download"));
  exports.Set("copy", Napi::Function::New(env, copy, "copy"));
  exports.Set("synchronize", Napi::Function::New(env, synchronize, "synchronize"));
  exports.Set("configs", Napi::Function::New(env, configs, "configs"));
  exports.Set("parseConfig", Napi::Function::New(env, parseConfig, "parseConfig"));
  return exports;
}

}  // namespace

}  // namespace gemmkit

static Napi::Object InitGemmkitGpu(Napi::Env env, Napi::Object exports) { return gemmkit::init(env, exports); }

NODE_API_MODULE(gemmkit_gpu, InitGemmkitGpu)
