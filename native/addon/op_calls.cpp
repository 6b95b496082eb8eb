// opSync(desc) / opAsync(desc) -> Promise<void>: one op beyond GEMM (core/ops.h) on the CPU backend. The
// desc format is op_calls.h's; every extent is checked against the typed array given for it (length and
// element type) and every index against what it indexes before anything runs, so a malformed desc is a
// TypeError / RangeError and never an out-of-bounds access.
#include "op_calls.h"

#include <cmath>
#include <string>

#include "../core/backend.h"
#include "backend_calls.h"
#include "problem_args.h"

namespace gemmkit {

namespace {

[[noreturn]] void throwType(const Napi::Env& env, const std::string& msg) {
  throw Napi::TypeError::New(env, "gemmkit native: " + msg);
}
[[noreturn]] void throwRange(const Napi::Env& env, const std::string& msg) {
  throw Napi::RangeError::New(env, "gemmkit native: " + msg);
}

int64_t integerField(const Napi::Env& env, const Napi::Object& d, const char* key, int64_t max) {
  Napi::Value v = d.Get(key);
  if (v.IsUndefined()) return 0;
  const int64_t i = nonNegativeInteger(env, v, std::string("op field ") + key);
  if (i > max) throwRange(env, std::string("op field ") + key + " = " + std::to_string(i) + " is larger than " + std::to_string(max));
  return i;
}

float numberField(const Napi::Env& env, const Napi::Object& d, const char* key) {
  Napi::Value v = d.Get(key);
  if (v.IsUndefined()) return 0.0f;
  if (!v.IsNumber()) throwType(env, std::string("op field ") + key + " must be a number");
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(x)) throwRange(env, std::string("op field ") + key + " must be finite, got " + std::to_string(x));
  return float(x);
}

DType dtypeField(const Napi::Env& env, const Napi::Object& d, const char* key) {
  Napi::Value v = d.Get(key);
  if (v.IsUndefined()) return DType::F32;
  DType t;
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string("(not a string)");
  if (!parseDType(s.c_str(), &t)) throwType(env, std::string("op field ") + key + " must be 'f32', 'f16' or 'bf16', got '" + s + "'");
  return t;
}

// A typed-array memory operand of dtype t holding at least `extent` elements; null when absent and
// allowed to be (an unused operand, an empty extent, LayerNorm's optional bias). Under
// HostLifetime::Work the memory stays valid until the work settles whatever JS does to the array
// meanwhile (detach, transfer, shrink): addon memory is held, other memory is used through a copy
// (outputs copied back by finish()). `output`: the op writes it (read too: a cache or a strided out
// keeps what it does not write).
void* memoryOperand(const Napi::Env& env, const Napi::Object& d, const char* key, DType t, int64_t extent, bool optional,
                    HostLifetime lifetime, bool output, std::vector<HostOperand>* held) {
  if (extent <= 0) {
    if (extent == 0 && !d.Get(key).IsUndefined() && !d.Get(key).IsNull()) {
      held->push_back(hostOperand(env, d, key, t, 0, lifetime));  // still type-checked
    }
    return nullptr;
  }
  Napi::Value v = d.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return nullptr;
    throwType(env, std::string(key) + " is missing: the op reads " + std::to_string(extent) + " elements of it");
  }
  const napi_typedarray_type want = t == DType::F32 ? napi_float32_array : napi_uint16_array;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == want && int64_t(v.As<Napi::TypedArray>().ElementLength()) < extent &&
      !v.As<Napi::TypedArray>().ArrayBuffer().IsDetached()) {
    throwRange(env, std::string(key) + " has " + std::to_string(v.As<Napi::TypedArray>().ElementLength()) + " elements but the op spans " +
                        std::to_string(extent));
  }
  held->push_back(hostOperand(env, d, key, t, extent, lifetime, output, output));
  return held->back().data();
}

Napi::Int32Array int32Array(const Napi::Env& env, const Napi::Object& d, const char* key, int64_t extent) {
  Napi::Value v = d.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throwType(env, std::string(key) + " must be an Int32Array");
  }
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  if (int64_t(a.ElementLength()) < extent) {
    throwRange(env, std::string(key) + " has " + std::to_string(a.ElementLength()) + " elements but the op reads " + std::to_string(extent));
  }
  return a;
}

std::vector<int32_t> copyInts(const Napi::Env& env, const Napi::Object& d, const char* key, int64_t extent) {
  if (extent <= 0) return {};
  Napi::Int32Array a = int32Array(env, d, key, extent);
  return std::vector<int32_t>(a.Data(), a.Data() + extent);
}

// One op on the CPU backend with its operands, held until it has run.
struct CpuOpCall {
  OpDesc op;
  OpBuffers buffers;
  OpHostArrays host;
  std::vector<HostOperand> memory;                 // what keeps x, y, out, weight, ... valid
  std::vector<HostOperand> idsOut;                 // argmax's ids, the same way
  const Backend* backend = nullptr;
  Status finish() {
    for (std::vector<HostOperand>* list : {&memory, &idsOut}) {
      for (HostOperand& o : *list) {
        Status s = o.finish();
        if (!s.isOk()) return s;
      }
    }
    return Status::ok();
  }
};

CpuOpCall unpackCpuOpCall(const Napi::Env& env, const Napi::Value& descValue, HostLifetime lifetime) {
  CpuOpCall call;
  OpExtents e;
  call.op = unpackOpDesc(env, descValue, &e);
  const Napi::Object d = descValue.As<Napi::Object>();
  call.backend = findBackend("cpu");
  if (!call.backend) throwType(env, "backend 'cpu' is not loaded in this addon");
  OpBuffers& b = call.buffers;
  std::vector<HostOperand>& m = call.memory;
  m.reserve(7);
  const bool ropeInPlace = call.op.kind == OpKind::Rope;  // rotary embedding rotates x in place
  b.x = memoryOperand(env, d, "x", call.op.dtypeX, e.x, false, lifetime, ropeInPlace, &m);
  b.y = memoryOperand(env, d, "y", call.op.dtypeY, e.y, false, lifetime, false, &m);
  b.out = memoryOperand(env, d, "out", call.op.dtypeOut, e.out, false, lifetime, true, &m);
  b.weight = memoryOperand(env, d, "weight", e.dtypeWeight, e.weight, false, lifetime, false, &m);
  b.bias = memoryOperand(env, d, "bias", e.dtypeWeight, e.bias, e.biasOptional, lifetime, false, &m);
  b.kCache = static_cast<float*>(memoryOperand(env, d, "kCache", DType::F32, e.kCache, false, lifetime, false, &m));
  b.vCache = static_cast<float*>(memoryOperand(env, d, "vCache", DType::F32, e.vCache, false, lifetime, false, &m));
  call.host = unpackOpHostArrays(env, d, e, lifetime, &call.idsOut);
  call.host.setPointers(&b);
  // The indices, before anything runs (runOp checks again; this makes a bad one a synchronous throw).
  Status s = checkOp(call.op, b);
  if (!s.isOk()) throw statusError(env, s);
  return call;
}

Napi::Value opSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CpuOpCall call = unpackCpuOpCall(env, info[0], HostLifetime::Call);
  Status s = call.backend->runOp(call.op, call.buffers);
  if (!s.isOk()) throw statusError(env, s);
  return env.Undefined();
}

// Runs the op on the libuv thread pool. The memory it uses stays valid until it settles even if JS
// detaches, transfers or shrinks an array meanwhile; an output array gone by then rejects the promise.
Napi::Value opAsync(const Napi::CallbackInfo& info) {
  CpuOpCall call = unpackCpuOpCall(info.Env(), info[0], HostLifetime::Work);
  return queueHeldWork(info.Env(), "gemmkit.op", std::move(call), [](CpuOpCall& held) {
    held.host.setPointers(&held.buffers);  // the int copies moved with the call
    return held.backend->runOp(held.op, held.buffers);
  });
}

}  // namespace

OpDesc unpackOpDesc(const Napi::Env& env, const Napi::Value& descValue, OpExtents* extents) {
  if (!descValue.IsObject()) throwType(env, "op description must be an object");
  const Napi::Object d = descValue.As<Napi::Object>();
  OpDesc op;
  Napi::Value kind = d.Get("kind");
  if (!kind.IsNumber()) throwType(env, "op field kind must be an OpKind number");
  const double k = kind.As<Napi::Number>().DoubleValue();
  if (k != std::floor(k) || !isOpKind(int32_t(k)) || k < 0 || k > 64) throwRange(env, "op field kind = " + std::to_string(k) + " is no OpKind");
  op.kind = OpKind(int32_t(k));
  const int64_t big = int64_t(1) << 53, i32 = 0x7fffffff;
  op.rows = integerField(env, d, "rows", big);
  op.cols = integerField(env, d, "cols", big);
  op.ldx = integerField(env, d, "ldx", big);
  op.ldy = integerField(env, d, "ldy", big);
  op.ldout = integerField(env, d, "ldout", big);
  op.vocab = integerField(env, d, "vocab", big);
  op.dtypeX = dtypeField(env, d, "dtypeX");
  op.dtypeY = dtypeField(env, d, "dtypeY");
  op.dtypeOut = dtypeField(env, d, "dtypeOut");
  op.dtypeWeight = dtypeField(env, d, "dtypeWeight");
  op.eps = numberField(env, d, "eps");
  op.scale = numberField(env, d, "scale");
  Napi::Value act = d.Get("activation");
  const std::string a = act.IsUndefined() ? "none" : act.IsString() ? act.As<Napi::String>().Utf8Value() : "(not a string)";
  if (!parseActivation(a.c_str(), &op.activation)) throwType(env, "op field activation must be 'none', 'relu', 'gelu' or 'silu', got '" + a + "'");
  op.heads = int32_t(integerField(env, d, "heads", i32));
  op.kvHeads = int32_t(integerField(env, d, "kvHeads", i32));
  op.headDim = int32_t(integerField(env, d, "headDim", i32));
  op.batch = int32_t(integerField(env, d, "batch", i32));
  op.tokens = int32_t(integerField(env, d, "tokens", i32));
  op.slots = int32_t(integerField(env, d, "slots", i32));
  op.capacity = int32_t(integerField(env, d, "capacity", i32));
  op.ropePositions = int32_t(integerField(env, d, "ropePositions", i32));
  op.device = int(integerField(env, d, "device", 1023));
  Status s = checkOpDesc(op, extents);
  if (!s.isOk()) throw statusError(env, s);
  return op;
}

void OpHostArrays::setPointers(OpBuffers* b) const {
  b->ids = ids.data();
  b->positions = positions.data();
  b->slotIndex = slotIndex.data();
  b->past = past.data();
  b->idsOut = idsOut;
}

OpHostArrays unpackOpHostArrays(const Napi::Env& env, const Napi::Object& d, const OpExtents& e, HostLifetime lifetime,
                                std::vector<HostOperand>* idsOut) {
  OpHostArrays h;
  h.ids = copyInts(env, d, "ids", e.ids);
  h.positions = copyInts(env, d, "positions", e.positions);
  h.slotIndex = copyInts(env, d, "slotIndex", e.slotIndex);
  h.past = copyInts(env, d, "past", e.past);
  if (e.idsOut > 0) {
    idsOut->push_back(hostOperand(env, d.Get("idsOut"), "idsOut", napi_int32_array, "Int32Array", e.idsOut, lifetime, true));
    h.idsOut = static_cast<int32_t*>(idsOut->back().data());
  }
  return h;
}

void exportOpCalls(Napi::Env env, Napi::Object exports) {
  exports.Set("opSync", Napi::Function::New(env, opSync, "opSync"));
  exports.Set("opAsync", Napi::Function::New(env, opAsync, "opAsync"));
}

}  // namespace gemmkit
