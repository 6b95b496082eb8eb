#include "backend_calls.h"

#include <string>
#include <vector>

#include "../core/backend.h"
#include "problem_args.h"

namespace gemmkit {

namespace {

// heuristic(desc) -> the config the backend runs when none is named.
Napi::Value heuristic(const Napi::CallbackInfo& info) {
  UnpackedCall call = unpackCall(info.Env(), info[0], false);
  return Napi::String::New(info.Env(), call.backend->heuristic(call.problem));
}

// candidates(desc) -> every config worth timing for the problem (the tuner's search space).
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

// packedLayout(backend, config) -> the prepacked layout config reads B in, or null when it reads B as stored.
Napi::Value packedLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString()) {
    throw Napi::TypeError::New(env, "gemmkit native: packedLayout(backend, config) takes two strings");
  }
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const Backend* backend = findBackend(name);
  if (!backend) throw Napi::TypeError::New(env, "gemmkit native: backend '" + name + "' is not loaded in this addon");
  std::string layout = backend->packedLayout(info[1].As<Napi::String>().Utf8Value());
  return layout.empty() ? env.Null() : Napi::String::New(env, layout);
}

// timeConfig(desc, config, { warmup, iterations, rotatingBytes, maxMs }) -> Promise<number[]>: the
// per-iteration microseconds of running `config` natively (the tuner's timer; no JS between runs).
class TimeWorker : public PromiseWorker {
 public:
  TimeWorker(Napi::Env env, UnpackedCall call, std::string config, TimingOptions opts)
      : PromiseWorker(env, "gemmkit.timeConfig"), call_(std::move(call)), config_(std::move(config)), opts_(opts) {}

 private:
  Status run() override { return call_.backend->time(call_.problem, config_, opts_, &microseconds_); }
  Napi::Value result() override {
    Napi::Array out = Napi::Array::New(Env(), microseconds_.size());
    for (size_t i = 0; i < microseconds_.size(); i++) out.Set(uint32_t(i), microseconds_[i]);
    return out;
  }

  UnpackedCall call_;
  std::string config_;
  TimingOptions opts_;
  std::vector<double> microseconds_;
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
  return (new TimeWorker(env, std::move(call), info[1].As<Napi::String>().Utf8Value(), opts))->queue();
}

}  // namespace

PromiseWorker::PromiseWorker(Napi::Env env, const char* name)
    : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

Napi::Promise PromiseWorker::queue() {
  Napi::Promise promise = deferred_.Promise();
  Queue();
  return promise;
}

void PromiseWorker::Execute() { status_ = run(); }

void PromiseWorker::OnWorkComplete(Napi::Env env, napi_status status) {
  napi_handle_scope scope;
  if (status != napi_cancelled && napi_open_handle_scope(env, &scope) == napi_ok) {
    try {
      settle();
    } catch (...) {
      // The environment is going away: nothing can observe the promise any more.
    }
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    napi_close_handle_scope(env, scope);
  }
  Destroy();
}

void PromiseWorker::settle() {
  Status s = status_;
  if (s.isOk()) {
    try {
      s = finish();
      if (s.isOk()) {
        deferred_.Resolve(result());
        return;
      }
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      return;
    }
  }
  deferred_.Reject(statusError(Env(), s).Value());
}

Napi::Object libraryObject(Napi::Env env, const std::string& name, const std::string& version, const std::string& path,
                           const std::string& config) {
  Napi::Object l = Napi::Object::New(env);
  l.Set("name", name);
  l.Set("version", version);
  l.Set("path", path);
  l.Set("config", config);
  return l;
}

const char* compilerName() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

void exportBackendCalls(Napi::Env env, Napi::Object exports) {
  exports.Set("heuristic", Napi::Function::New(env, heuristic, "heuristic"));
  exports.Set("candidates", Napi::Function::New(env, candidates, "candidates"));
  exports.Set("supports", Napi::Function::New(env, supports, "supports"));
  exports.Set("packedLayout", Napi::Function::New(env, packedLayout, "packedLayout"));
  exports.Set("timeConfig", Napi::Function::New(env, timeConfig, "timeConfig"));
}

}  // namespace gemmkit
