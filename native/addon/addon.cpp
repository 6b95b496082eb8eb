// The Node-API surface of the CPU addon: info, matmul (sync and AsyncWorker) and the tuner's entry
// points. It only unpacks arguments and manages lifetimes; the engine does the work.
#include <napi.h>

#include <mutex>

#include "../core/backend.h"
#include "../core/reference_gemm.h"
#include "../cpu/cpu_backend.h"
#include "../cpu/cpu_features.h"
#include "../cpu/gemv.h"
#include "../cpu/micro_kernels.h"
#include "../cpu/system_blas.h"
#include "../cpu/thread_pool.h"
#include "backend_calls.h"
#include "op_calls.h"
#include "packed_weight_handle.h"
#include "problem_args.h"

namespace gemmkit {

namespace {

Napi::Value matmulSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UnpackedCall call = unpackCall(env, info[0], true);
  Status s = call.backend->run(call.problem, call.configOrHeuristic(), call.buffers);
  if (!s.isOk()) throw statusError(env, s);
  return env.Undefined();
}

// Runs one GEMM on the libuv thread pool; the typed arrays stay referenced until it settles.
Napi::Value matmulAsync(const Napi::CallbackInfo& info) {
  UnpackedCall call = unpackCall(info.Env(), info[0], true);
  const std::string config = call.configOrHeuristic();
  return queueWork(info.Env(), "gemmkit.matmul",
                   [call = std::move(call), config] { return call.backend->run(call.problem, config, call.buffers); });
}

double* float64Out(const Napi::Env& env, const Napi::Value& v, const char* name, int64_t needed,
                   std::vector<Napi::ObjectReference>* keep) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(env, std::string("gemmkit native: ") + name + " must be a Float64Array");
  }
  Napi::Float64Array a = v.As<Napi::Float64Array>();
  if (int64_t(a.ElementLength()) < needed) {
    throw Napi::RangeError::New(env, std::string("gemmkit native: ") + name + " has " + std::to_string(a.ElementLength()) +
                                         " elements but the problem writes " + std::to_string(needed));
  }
  keep->push_back(Napi::Persistent(a.As<Napi::Object>()));
  return a.Data();
}

// referenceAsync(desc, c64?, scale64?) -> Promise<void>: the float64 reference GEMM (core/reference_gemm)
// on the desc's buffers: writes C rounded to its dtype and, when given, the unrounded result and the
// root-sum-square magnitude of the summed terms into Float64Arrays of [batch, m, n].
Napi::Value referenceAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UnpackedCall call = unpackCall(env, info[0], true);
  const int64_t elements = call.problem.batch * call.problem.m * call.problem.n;
  double* c64 = float64Out(env, info[1], "c64", elements, &call.keepAlive);
  double* scale64 = float64Out(env, info[2], "scale64", elements, &call.keepAlive);
  return queueWork(env, "gemmkit.reference", [call = std::move(call), c64, scale64] {
    referenceGemm(call.problem, call.buffers, c64, scale64);
    return Status::ok();
  });
}

// defaultPackedConfig(desc) -> the blocked config a weight is prepacked for when the caller names none.
Napi::Value defaultPackedConfig(const Napi::CallbackInfo& info) {
  UnpackedCall call = unpackCall(info.Env(), info[0], false);
  return Napi::String::New(info.Env(), cpuDefaultPackedConfig(call.problem).name());
}

Napi::Object deviceObject(Napi::Env env, const DeviceInfo& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", d.name);
  o.Set("arch", d.arch);
  o.Set("computeUnits", d.computeUnits);
  o.Set("memoryBytes", double(d.memoryBytes));
  return o;
}

Napi::Value nativeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpuFeatures();
  Napi::Object out = Napi::Object::New(env);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("model", f.model);
  cpu.Set("cores", f.cores);
  std::vector<std::string> names = f.names();
  Napi::Array feats = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); i++) feats.Set(uint32_t(i), names[i]);
  cpu.Set("features", feats);
  out.Set("cpu", cpu);
  out.Set("threads", ThreadPool::instance().size());
  const std::vector<MicroKernel>& ks = microKernels();
  Napi::Array kernels = Napi::Array::New(env, ks.size());
  for (size_t i = 0; i < ks.size(); i++) {
    Napi::Object k = Napi::Object::New(env);
    k.Set("id", ks[i].id);
    k.Set("isa", isaName(ks[i].isa));
    k.Set("mr", ks[i].mr);
    k.Set("nr", ks[i].nr);
    k.Set("available", isaAvailable(ks[i].isa));
    k.Set("family", "blocked");
    k.Set("kAlign", ks[i].kAlign);
    k.Set("inputs", ks[i].aFormat == PanelFormat::F32 && ks[i].bFormat == PanelFormat::F32 ? "any" : "bf16");
    kernels.Set(uint32_t(i), k);
  }
  for (const GemvKernel& g : gemvKernels()) {
    Napi::Object k = Napi::Object::New(env);
    k.Set("id", g.id);
    k.Set("isa", isaName(g.isa));
    k.Set("mr", 0);
    k.Set("nr", 0);
    k.Set("available", isaAvailable(g.isa));
    k.Set("family", "gemv");
    k.Set("kAlign", 1);
    k.Set("inputs", g.bf16Only() ? "bf16" : "any");
    kernels.Set(kernels.Length(), k);
  }
  out.Set("kernels", kernels);
  std::vector<const Backend*> backends = allBackends();
  Napi::Array bs = Napi::Array::New(env, backends.size());
  for (size_t i = 0; i < backends.size(); i++) {
    Napi::Object b = Napi::Object::New(env);
    b.Set("name", backends[i]->name());
    std::vector<DeviceInfo> devs = backends[i]->devices();
    Napi::Array da = Napi::Array::New(env, devs.size());
    for (size_t j = 0; j < devs.size(); j++) da.Set(uint32_t(j), deviceObject(env, devs[j]));
    b.Set("devices", da);
    bs.Set(uint32_t(i), b);
  }
  out.Set("backends", bs);
  // Libraries whose versions can change a tuned result: the system BLAS candidates found at run time.
  const std::vector<SystemBlas>& blas = systemBlasLibraries();
  Napi::Array libs = Napi::Array::New(env, blas.size());
  for (size_t i = 0; i < blas.size(); i++) {
    libs.Set(uint32_t(i), libraryObject(env, blas[i].library, blas[i].version, blas[i].path, blas[i].config));
  }
  out.Set("libraries", libs);
  out.Set("compiler", compilerName());
  return out;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  static std::once_flag registered;  // one engine per process, however many threads load the addon
  std::call_once(registered, registerCpuBackend);
  exports.Set("info", Napi::Function::New(env, nativeInfo, "info"));
  exports.Set("matmulSync", Napi::Function::New(env, matmulSync, "matmulSync"));
  exports.Set("matmulAsync", Napi::Function::New(env, matmulAsync, "matmulAsync"));
  exportBackendCalls(env, exports);
  exportOpCalls(env, exports);
  exports.Set("referenceAsync", Napi::Function::New(env, referenceAsync, "referenceAsync"));
  exports.Set("PackedWeightHandle", PackedWeightHandle::define(env));
  exports.Set("prepack", Napi::Function::New(env, PackedWeightHandle::prepack, "prepack"));
  exports.Set("defaultPackedConfig", Napi::Function::New(env, defaultPackedConfig, "defaultPackedConfig"));
  return exports;
}

}  // namespace

}  // namespace gemmkit

static Napi::Object InitGemmkit(Napi::Env env, Napi::Object exports) { return gemmkit::init(env, exports); }

NODE_API_MODULE(gemmkit, InitGemmkit)
