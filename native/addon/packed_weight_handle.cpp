#include "packed_weight_handle.h"

#include <cstdint>
#include <cstring>
#include <functional>

#include "../cpu/cpu_config.h"
#include "../cpu/gemm_frame.h"
#include "problem_args.h"

namespace gemmkit {

namespace {

// The hidden properties of a handle that hold its panel and its source copy (ArrayBuffers).
const char* const kPanelKey = "__gemmkitPanel";
const char* const kSourceKey = "__gemmkitSource";

// An ArrayBuffer of V8 memory (so a collection frees it at once), `bytes` long plus 64 of slack for
// aligning its start; returns its value and the aligned start.
Napi::Value hiddenBuffer(const Napi::Env& env, size_t bytes, const char* what, void** aligned) {
  napi_value value;
  void* data = nullptr;
  if (napi_create_arraybuffer(env, bytes + 64, &data, &value) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    Napi::Error e = Napi::Error::New(env, std::string("gemmkit native: out of memory for ") + what + " (" + std::to_string(bytes) + " bytes)");
    e.Set("code", Napi::String::New(env, "GEMMKIT_OUT_OF_MEMORY"));
    throw e;
  }
  *aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(data) + 63) & ~uintptr_t(63));
  return Napi::Value(env, value);
}

}  // namespace

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

PackedWeightHandle::PackedWeightHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PackedWeightHandle>(info) {}

PackedWeightHandle* PackedWeightHandle::unwrapIfHandle(const Napi::Value& v) {
  Napi::FunctionReference* ctor = v.Env().GetInstanceData<Napi::FunctionReference>();
  if (!v.IsObject() || !ctor) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.InstanceOf(ctor->Value())) return nullptr;
  return Napi::ObjectWrap<PackedWeightHandle>::Unwrap(o);
}

namespace {

// An async call's hold on a handle: a reference to its object (so the handle, its panel and a source
// copy live), a share of the addon memory its source lies in, and one count of inFlight_, given back on
// the JS thread when the call's work is destroyed.
struct WorkHold {
  Napi::ObjectReference object;
  std::shared_ptr<HostBlock> sourceBlock;
  std::function<void()> release;
  ~WorkHold() { release(); }
};

}  // namespace

std::shared_ptr<void> PackedWeightHandle::holdForWork() {
  inFlight_++;
  auto hold = std::make_shared<WorkHold>();
  hold->object = Napi::Persistent(Value());
  hold->sourceBlock = sourceBlock_;
  hold->release = [this] {
    inFlight_--;
    detachIfIdle();
  };
  return hold;
}

void PackedWeightHandle::detachIfIdle() {
  if (weight_ || inFlight_ > 0) return;
  // Detaching frees the panel and a source copy now; the handle keeps empty ArrayBuffers. Failures (a
  // worker shutting down) leave them to the collector. Called from destructors too, so it never throws.
  try {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Object self = Value();
    for (const char* key : {kPanelKey, kSourceKey}) {
      Napi::Value v = self.Get(key);
      if (v.IsArrayBuffer()) napi_detach_arraybuffer(env, v);
    }
  } catch (...) {
  }
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
  size_t bytes = 0;
  s = packedWeightBytes(call.problem, *k, cfg.kc, &bytes);
  if (!s.isOk()) throw statusError(env, s);
  void* panel = nullptr;
  Napi::Value panelBuffer = hiddenBuffer(env, bytes, "a packed weight", &panel);
  std::unique_ptr<PackedWeight> packed;
  s = prepackWeightInto(call.problem, call.buffers.b, *k, cfg.kc, panel, &packed);
  if (!s.isOk()) throw statusError(env, s);
  Napi::Object obj = env.GetInstanceData<Napi::FunctionReference>()->New({});
  PackedWeightHandle* h = Napi::ObjectWrap<PackedWeightHandle>::Unwrap(obj);
  // Read-only, hidden and permanent: JS cannot reach these buffers to detach or replace them.
  obj.DefineProperty(Napi::PropertyDescriptor::Value(kPanelKey, panelBuffer, napi_default));
  Napi::Object desc = info[0].As<Napi::Object>();
  Napi::Value keep = desc.Get("keepSource");
  if (keep.IsBoolean() && keep.As<Napi::Boolean>().Value()) {
    const Problem& p = call.problem;
    h->sourceBytes_ = size_t(matrixExtent(1, 0, p.rowsB(), p.ldb, p.colsB())) * dtypeSize(p.dtypeB);
    h->sourceLdb_ = p.ldb;
    if (h->sourceBytes_ > 0) {
      // The source in place when it lies in addon memory (pinned by a share), else a copy of its own.
      TypedView view = typedView(env, desc.Get("b").As<Napi::TypedArray>());
      char* base = static_cast<char*>(view.data) - view.byteOffset;
      std::shared_ptr<HostBlock> block = view.arrayBuffer.IsArrayBuffer() ? HostBlock::find(base) : nullptr;
      if (block && view.byteOffset + h->sourceBytes_ <= block->bytes()) {
        h->sourceBlock_ = std::move(block);
        h->sourceData_ = view.data;
      } else {
        void* copy = nullptr;
        Napi::Value copyBuffer = hiddenBuffer(env, h->sourceBytes_, "the kept copy of a weight", &copy);
        std::memcpy(copy, call.buffers.b, h->sourceBytes_);
        obj.DefineProperty(Napi::PropertyDescriptor::Value(kSourceKey, copyBuffer, napi_default));
        h->sourceData_ = copy;
      }
    }
  }
  h->weight_ = std::shared_ptr<const PackedWeight>(packed.release());
  h->hasSource_ = keep.IsBoolean() && keep.As<Napi::Boolean>().Value();
  return obj;
}

Napi::Value PackedWeightHandle::dispose(const Napi::CallbackInfo& info) {
  weight_.reset();
  sourceBlock_.reset();  // calls in flight hold their own shares
  detachIfIdle();
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
