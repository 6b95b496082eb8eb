#include "problem_args.h"

#include <cmath>

#if !defined(GEMMKIT_GPU_ADDON)
#include "packed_weight_handle.h"  // prepacked weights belong to the CPU addon
#endif

namespace gemmkit {

namespace {

[[noreturn]] void throwType(const Napi::Env& env, const std::string& msg) {
  throw Napi::TypeError::New(env, "gemmkit native: " + msg);
}
[[noreturn]] void throwRange(const Napi::Env& env, const std::string& msg) {
  throw Napi::RangeError::New(env, "gemmkit native: " + msg);
}

int64_t getDim(const Napi::Env& env, const Napi::Object& o, const char* key) { return nonNegativeInteger(env, o.Get(key), key); }

bool getBool(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

float getFloat(const Napi::Env& env, const Napi::Object& o, const char* key, float fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throwType(env, std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::isnan(d)) throwRange(env, std::string(key) + " is NaN");
  return float(d);
}

std::string getString(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

DType getDType(const Napi::Env& env, const Napi::Object& o, const char* key) {
  std::string s = getString(o, key);
  DType t;
  if (!parseDType(s.c_str(), &t)) throwType(env, std::string(key) + " must be 'f32', 'f16' or 'bf16', got '" + s + "'");
  return t;
}

void* typedData(const Napi::Env& env, const Napi::Object& desc, const char* key, DType t, int64_t needed,
                std::vector<Napi::ObjectReference>* keep) {
  Napi::Value v = desc.Get(key);
  if (!v.IsTypedArray()) throwType(env, std::string(key) + " must be a typed array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  napi_typedarray_type want = t == DType::F32 ? napi_float32_array : napi_uint16_array;
  if (ta.TypedArrayType() != want) {
    throwType(env, std::string(key) + " must be a " + (t == DType::F32 ? "Float32Array" : "Uint16Array") + " for " +
                       dtypeName(t));
  }
  if (int64_t(ta.ElementLength()) < needed) {
    throwRange(env, std::string(key) + " has " + std::to_string(ta.ElementLength()) + " elements but the problem reads " +
                        std::to_string(needed));
  }
  keep->push_back(Napi::Persistent(ta.As<Napi::Object>()));
  if (needed == 0) return nullptr;
  Napi::ArrayBuffer ab = ta.ArrayBuffer();
  return static_cast<char*>(ab.Data()) + ta.ByteOffset();
}

}  // namespace

int64_t nonNegativeInteger(const Napi::Env& env, const Napi::Value& v, const std::string& name) {
  if (!v.IsNumber()) throwType(env, name + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
    throwRange(env, name + " must be a non-negative integer, got " + std::to_string(d));
  }
  return int64_t(d);
}

UnpackedCall unpackCall(const Napi::Env& env, const Napi::Value& descValue, bool withBuffers) {
  if (!descValue.IsObject()) throwType(env, "problem description must be an object");
  Napi::Object d = descValue.As<Napi::Object>();
  UnpackedCall call;
  std::string backendName = getString(d, "backend");
  call.backend = findBackend(backendName);
  if (!call.backend) throwType(env, "backend '" + backendName + "' is not loaded in this addon");
  call.config = getString(d, "config");
  Problem& p = call.problem;
  p.m = getDim(env, d, "m");
  p.n = getDim(env, d, "n");
  p.k = getDim(env, d, "k");
  p.batch = getDim(env, d, "batch");
  p.transA = getBool(d, "transA");
  p.transB = getBool(d, "transB");
  p.lda = getDim(env, d, "lda");
  p.ldb = getDim(env, d, "ldb");
  p.ldc = getDim(env, d, "ldc");
  p.strideA = getDim(env, d, "strideA");
  p.strideB = getDim(env, d, "strideB");
  p.strideC = getDim(env, d, "strideC");
  p.dtypeA = getDType(env, d, "dtypeA");
  p.dtypeB = getDType(env, d, "dtypeB");
  p.dtypeC = getDType(env, d, "dtypeC");
  p.alpha = getFloat(env, d, "alpha", 1.0f);
  p.beta = getFloat(env, d, "beta", 0.0f);
  std::string act = getString(d, "activation");
  if (act.empty()) act = "none";
  if (!parseActivation(act.c_str(), &p.activation)) {
    throwType(env, "activation must be 'none', 'relu', 'gelu' or 'silu', got '" + act + "'");
  }
  if (!d.Get("device").IsUndefined()) {
    const int64_t device = getDim(env, d, "device");
    if (device > 1023) throwRange(env, "device must be a device index, got " + std::to_string(device));
    p.device = int(device);
  }
  Napi::Value bias = d.Get("bias");
  p.hasBias = !bias.IsUndefined() && !bias.IsNull();
  if (p.hasBias) p.dtypeBias = getDType(env, d, "biasDtype");
  Napi::Value packed = d.Get("packedB");
  if (!packed.IsUndefined() && !packed.IsNull()) {
#if defined(GEMMKIT_GPU_ADDON)
    throwType(env, "packedB: prepacked weights are CPU-only; give a GPU GEMM the weight itself");
#else
    PackedWeightHandle* h = PackedWeightHandle::unwrapIfHandle(packed);
    if (!h) throwType(env, "packedB must be a handle returned by prepack");
    call.packedB = h->weight();
    if (!call.packedB) throwType(env, "packedB was disposed");
    const PackedWeight& w = *call.packedB;
    if (w.k != p.k || w.n != p.n || w.dtype != p.dtypeB || p.strideB != 0) {
      throwRange(env, "the prepacked weight is op(B) [" + std::to_string(w.k) + ", " + std::to_string(w.n) + "] " +
                          dtypeName(w.dtype) + " but the problem is " + p.describe());
    }
    p.packedB = w.layout();
#endif
  } else if (!withBuffers) {
    // Timing and planning problems name a layout instead of a handle: the backend packs its own copies.
    p.packedB = getString(d, "packedLayout");
  }
  Status s = checkProblem(p);
  if (!s.isOk()) throw statusError(env, s);
  // Every index the kernels form must fit comfortably in int64 arithmetic.
  const double limit = 9.0e15;
  if (double(p.batch) * double(p.strideA + p.rowsA() * p.lda) > limit ||
      double(p.batch) * double(p.strideB + p.rowsB() * p.ldb) > limit ||
      double(p.batch) * double(p.strideC + p.m * p.ldc) > limit) {
    throwRange(env, "problem " + p.describe() + " is too large to index");
  }
  if (withBuffers) {
    Buffers& b = call.buffers;
    b.a = typedData(env, d, "a", p.dtypeA, extentA(p), &call.keepAlive);
    b.b = call.packedB ? call.packedB.get() : typedData(env, d, "b", p.dtypeB, extentB(p), &call.keepAlive);
    b.c = typedData(env, d, "c", p.dtypeC, extentC(p), &call.keepAlive);
    if (p.hasBias) b.bias = typedData(env, d, "bias", p.dtypeBias, p.n, &call.keepAlive);
  }
  return call;
}

UnpackedCall unpackWeight(const Napi::Env& env, const Napi::Value& descValue) {
  if (!descValue.IsObject()) throwType(env, "weight description must be an object");
  Napi::Object d = descValue.As<Napi::Object>();
  UnpackedCall call;
  call.config = getString(d, "config");
  Problem& p = call.problem;
  p.k = getDim(env, d, "k");
  p.n = getDim(env, d, "n");
  p.transB = getBool(d, "transB");
  p.ldb = getDim(env, d, "ldb");
  p.dtypeB = getDType(env, d, "dtypeB");
  p.m = 1;
  p.lda = p.k > 0 ? p.k : 1;
  p.ldc = p.n > 0 ? p.n : 1;
  Status s = checkProblem(p);
  if (!s.isOk()) throw statusError(env, s);
  if (double(p.rowsB()) * double(p.ldb) > 9.0e15) throwRange(env, "weight " + p.describe() + " is too large to index");
  call.buffers.b = typedData(env, d, "b", p.dtypeB, matrixExtent(1, 0, p.rowsB(), p.ldb, p.colsB()), &call.keepAlive);
  return call;
}

int64_t matrixExtent(int64_t batch, int64_t stride, int64_t rows, int64_t ld, int64_t cols) {
  if (batch == 0 || rows == 0 || cols == 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

int64_t extentA(const Problem& p) { return matrixExtent(p.batch, p.strideA, p.rowsA(), p.lda, p.colsA()); }
int64_t extentB(const Problem& p) { return matrixExtent(p.batch, p.strideB, p.rowsB(), p.ldb, p.colsB()); }
int64_t extentC(const Problem& p) { return matrixExtent(p.batch, p.strideC, p.m, p.ldc, p.n); }

Napi::Error statusError(const Napi::Env& env, const Status& s) {
  switch (s.code()) {
    case StatusCode::InvalidArgument: return Napi::TypeError::New(env, s.message());
    case StatusCode::OutOfRange: return Napi::RangeError::New(env, s.message());
    default: {
      Napi::Error e = Napi::Error::New(env, s.message());
      if (s.code() == StatusCode::OutOfMemory) e.Set("code", Napi::String::New(env, "GEMMKIT_OUT_OF_MEMORY"));
      if (s.code() == StatusCode::Unsupported) e.Set("code", Napi::String::New(env, "GEMMKIT_UNSUPPORTED"));
      return e;
    }
  }
}

}  // namespace gemmkit
