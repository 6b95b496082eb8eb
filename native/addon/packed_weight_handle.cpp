#include "packed_weight_handle.h"

#include "../cpu/cpu_config.h"
#include "../cpu/gemm_frame.h"
#include "problem_args.h"

namespace gemmkit {

Napi::Function PackedWeightHandle::define(Napi::Env env) {
  Napi::Function f = DefineClass(env, "PackedWeightHandle",
                                 {InstanceMethod("dispose", &PackedWeightHandle::dispose),
                                  InstanceAccessor("layout", &PackedWeightHandle::layout, nullptr),
                                  InstanceAccessor("bytes", &PackedWeightHandle::bytes, nullptr),
                                  InstanceAccessor("disposed", &PackedWeightHandle::disposed, nullptr)});
  // One constructor per environment (main thread, each worker), kept as the env's instance data.
  env.SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(f)));
  return f;
}

PackedWeightHandle::PackedWeightHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<PackedWeightHandle>(info), env_(info.Env()) {}

PackedWeightHandle::~PackedWeightHandle() { release(); }

void PackedWeightHandle::release() {
  weight_.reset();
  if (reportedBytes_ != 0) {
    Napi::MemoryManagement::AdjustExternalMemory(env_, -reportedBytes_);
    reportedBytes_ = 0;
  }
}

PackedWeightHandle* PackedWeightHandle::unwrapIfHandle(const Napi::Value& v) {
  Napi::FunctionReference* ctor = v.Env().GetInstanceData<Napi::FunctionReference>();
  if (!v.IsObject() || !ctor) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.InstanceOf(ctor->Value())) return nullptr;
  return Napi::ObjectWrap<PackedWeightHandle>::Unwrap(o);
}

Napi::Value PackedWeightHandle::prepack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // The weight as the B operand of a problem: only k, n, transB, ldb, dtypeB and b matter.
  UnpackedCall call = unpackWeight(env, info[0]);
  CpuConfig cfg;
  Status s = CpuConfig::parse(call.config, &cfg);
  if (s.isOk() && cfg.isGemv()) s = unsupported("prepack needs a blocked-GEMM config, not the GEMV config " + call.config);
  if (!s.isOk()) throw statusError(env, s);
  const MicroKernel* k = findMicroKernel(cfg.kernel);
  std::string why = isaUnavailableReason(k->isa);
  if (!why.empty()) throw statusError(env, unsupported("prepack for " + call.config + ": " + why));
  std::unique_ptr<PackedWeight> packed;
  s = prepackWeight(call.problem, call.buffers.b, *k, cfg.kc, &packed);
  if (!s.isOk()) throw statusError(env, s);
  Napi::Object obj = env.GetInstanceData<Napi::FunctionReference>()->New({});
  PackedWeightHandle* h = Napi::ObjectWrap<PackedWeightHandle>::Unwrap(obj);
  h->reportedBytes_ = int64_t(packed->bytes);
  h->weight_ = std::shared_ptr<const PackedWeight>(packed.release());
  Napi::MemoryManagement::AdjustExternalMemory(env, h->reportedBytes_);
  return obj;
}

Napi::Value PackedWeightHandle::dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value PackedWeightHandle::layout(const Napi::CallbackInfo& info) {
  return weight_ ? Napi::String::New(info.Env(), weight_->layout()) : info.Env().Null();
}

Napi::Value PackedWeightHandle::bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), weight_ ? double(weight_->bytes) : 0.0);
}

Napi::Value PackedWeightHandle::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !weight_);
}

}  // namespace gemmkit
