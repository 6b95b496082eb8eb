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
#include "packed_weight_handle.h"
#include "problem_args.h"

namespace gemmkit {

namespace {

std::string resolveConfig(const UnpackedCall& call) {
  return call.config.empty() ? call.backend->heuristic(call.problem) : call.config;
}

Napi::Value matmulSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UnpackedCall call = unpackCall(env, info[0], true);
  Status s = call.backend->run(call.problem, resolveConfig(call), call.buffers);
  if (!s.isOk()) throw statusError(env, s);
  return env.Undefined();
}

// Runs one GEMM on the libuv thread pool; the typed arrays stay referenced until it settles.
class MatmulWorker : public Napi::AsyncWorker {
 public:
  MatmulWorker(Napi::Env env, UnpackedCall call)
      : Napi::AsyncWorker(env, "gemmkit.matmul"), call_(std::move(call)), deferred_(Napi::Promise::Deferred::New(env)) {
    config_ = resolveConfig(call_);
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    status_ = call_.backend->run(call_.problem, config_, call_.buffers);
    if (!status_.isOk()) SetError(status_.message());
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error&) override { deferred_.Reject(statusError(Env(), status_).Value()); }

 private:
  UnpackedCall call_;
  std::string config_;
  Status status_;
  Napi::Promise::Deferred deferred_;
};

Napi::Value matmulAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UnpackedCall call = unpackCall(env, info[0], true);
  auto* worker = new MatmulWorker(env, std::move(call));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Value heuristic(const Napi::CallbackInfo& info) {
  UnpackedCall call = unpackCall(info.Env(), info[0], false);
  return Napi::String::New(info.Env(), call.backend->heuristic(call.problem));
}

Napi::Value candidates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UnpackedCall call = unpackCall(env, info[0], false);
  std::vector<std::string> names = call.backend->candidates(call.problem);
  Napi::Array out = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); i++) out.Set(uint32_t(i), names[i]);
  return out;
}

// supports(desc, config) -> null when the config can run the problem here, else the reason.
Napi::Value supports(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UnpackedCall call = unpackCall(env, info[0], false);
  if (!info[1].IsString()) throw Napi::TypeError::New(env, "gemmkit native: config must be a string");
  Status s = call.backend->supports(call.problem, info[1].As<Napi::String>().Utf8Value());
  return s.isOk() ? env.Null() : Napi::String::New(env, s.message());
}

// timeConfig(desc, config, { warmup, iterations, rotatingBytes, maxMs }) -> Promise<number[]>: the
// per-iteration microseconds of running `config` natively (the tuner's timer; no JS between runs).
class TimeWorker : public Napi::AsyncWorker {
 public:
  TimeWorker(Napi::Env env, UnpackedCall call, std::string config, TimingOptions opts)
      : Napi::AsyncWorker(env, "gemmkit.timeConfig"),
        call_(std::move(call)),
        config_(std::move(config)),
        opts_(opts),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    status_ = call_.backend->time(call_.problem, config_, opts_, &microseconds_);
    if (!status_.isOk()) SetError(status_.message());
  }
  void OnOK() override {
    Napi::Array out = Napi::Array::New(Env(), microseconds_.size());
    for (size_t i = 0; i < microseconds_.size(); i++) out.Set(uint32_t(i), microseconds_[i]);
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error&) override { deferred_.Reject(statusError(Env(), status_).Value()); }

 private:
  UnpackedCall call_;
  std::string config_;
  TimingOptions opts_;
  Status status_;
  std::vector<double> microseconds_;
  Napi::Promise::Deferred deferred_;
};

int64_t timingField(const Napi::Env& env, const Napi::Object& o, const char* key, int64_t fallback, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.0;
  if (!(d >= double(lo) && d <= double(hi)) || d != double(int64_t(d))) {
    throw Napi::RangeError::New(env, std::string("gemmkit native: timing option ") + key + " must be an integer in [" +
                                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return int64_t(d);
}

Napi::Value timeConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UnpackedCall call = unpackCall(env, info[0], false);
  if (!info[1].IsString()) throw Napi::TypeError::New(env, "gemmkit native: config must be a string");
  TimingOptions opts;
  if (info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    opts.warmup = int(timingField(env, o, "warmup", opts.warmup, 0, 1000000));
    opts.iterations = int(timingField(env, o, "iterations", opts.iterations, 1, 1000000));
    opts.rotatingBytes = timingField(env, o, "rotatingBytes", 0, 0, int64_t(1) << 40);
    Napi::Value maxMs = o.Get("maxMs");
    if (!maxMs.IsUndefined()) {
      double d = maxMs.IsNumber() ? maxMs.As<Napi::Number>().DoubleValue() : -1.0;
      if (!(d >= 0 && d < 1e12)) throw Napi::RangeError::New(env, "gemmkit native: timing option maxMs must be a number >= 0");
      opts.maxMilliseconds = d;
    }
  }
  auto* worker = new TimeWorker(env, std::move(call), info[1].As<Napi::String>().Utf8Value(), opts);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// referenceAsync(desc, c64?, scale64?) -> Promise<void>: the float64 reference GEMM (core/reference_gemm)
// on the desc's buffers: writes C rounded to its dtype and, when given, the unrounded result and the
// root-sum-square magnitude of the summed terms into Float64Arrays of [batch, m, n].
class ReferenceWorker : public Napi::AsyncWorker {
 public:
  ReferenceWorker(Napi::Env env, UnpackedCall call, double* c64, double* scale64, std::vector<Napi::ObjectReference> keep)
      : Napi::AsyncWorker(env, "gemmkit.reference"),
        call_(std::move(call)),
        c64_(c64),
        scale64_(scale64),
        keep_(std::move(keep)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { referenceGemm(call_.problem, call_.buffers, c64_, scale64_); }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

 private:
  UnpackedCall call_;
  double* c64_;
  double* scale64_;
  std::vector<Napi::ObjectReference> keep_;
  Napi::Promise::Deferred deferred_;
};

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

Napi::Value referenceAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UnpackedCall call = unpackCall(env, info[0], true);
  const int64_t elements = call.problem.batch * call.problem.m * call.problem.n;
  std::vector<Napi::ObjectReference> keep;
  double* c64 = float64Out(env, info[1], "c64", elements, &keep);
  double* scale64 = float64Out(env, info[2], "scale64", elements, &keep);
  auto* worker = new ReferenceWorker(env, std::move(call), c64, scale64, std::move(keep));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// defaultPackedConfig(desc) -> the blocked config a weight is prepacked for when the caller names none.
Napi::Value defaultPackedConfig(const Napi::CallbackInfo& info) {
  UnpackedCall call = unpackCall(info.Env(), info[0], false);
  return Napi::String::New(info.Env(), cpuDefaultPackedConfig(call.problem).name());
}

// packedLayout(backend, config) -> the prepacked layout config reads B in, or null when it reads B as stored.
Napi::Value packedLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString()) {
    throw Napi::TypeError::New(env, "gemmkit native: packedLayout(backend, config) takes two strings");
  }
  const Backend* backend = findBackend(info[0].As<Napi::String>().Utf8Value());
  if (!backend) throw Napi::TypeError::New(env, "gemmkit native: backend '" + info[0].As<Napi::String>().Utf8Value() + "' is not loaded");
  std::string layout = backend->packedLayout(info[1].As<Napi::String>().Utf8Value());
  return layout.empty() ? env.Null() : Napi::String::New(env, layout);
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
    Napi::Object l = Napi::Object::New(env);
    l.Set("name", blas[i].library);
    l.Set("version", blas[i].version);
    l.Set("path", blas[i].path);
    l.Set("config", blas[i].config);
    libs.Set(uint32_t(i), l);
  }
  out.Set("libraries", libs);
  out.Set("compiler", Napi::String::New(env,
#if defined(__clang__)
                                        "clang " __clang_version__
#elif defined(__GNUC__)
                                        "gcc " __VERSION__
#else
                                        "unknown"
#endif
                                        ));
  return out;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  static std::once_flag registered;  // one engine per process, however many threads load the addon
  std::call_once(registered, registerCpuBackend);
  exports.Set("info", Napi::Function::New(env, nativeInfo, "info"));
  exports.Set("matmulSync", Napi::Function::New(env, matmulSync, "matmulSync"));
  exports.Set("matmulAsync", Napi::Function::New(env, matmulAsync, "matmulAsync"));
  exports.Set("heuristic", Napi::Function::New(env, heuristic, "heuristic"));
  exports.Set("candidates", Napi::Function::New(env, candidates, "candidates"));
  exports.Set("supports", Napi::Function::New(env, supports, "supports"));
  exports.Set("packedLayout", Napi::Function::New(env, packedLayout, "packedLayout"));
  exports.Set("timeConfig", Napi::Function::New(env, timeConfig, "timeConfig"));
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
