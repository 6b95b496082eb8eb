#include "problem_args.h"

#include <cmath>
#include <limits>

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
  // The kernels scale in f32: a value beyond its range would silently become infinite there.
  if (!(std::fabs(d) <= double(std::numeric_limits<float>::max()))) {
    throwRange(env, std::string(key) + " must be a finite number within the f32 range, got " + std::to_string(d));
  }
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

const char* typedArrayName(DType t) { return t == DType::F32 ? "Float32Array" : "Uint16Array"; }

}  // namespace

HostOperand hostOperand(const Napi::Env& env, const Napi::Value& v, const std::string& name, napi_typedarray_type type,
                        const char* typeName, int64_t elements, HostLifetime lifetime, bool output, bool readBack) {
  const char* article = typeName[0] == 'I' ? " must be an " : " must be a ";  // an Int32Array, a Float32Array
  if (!v.IsTypedArray()) throwType(env, name + article + typeName);
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  TypedView view = typedView(env, ta);
  if (view.type != type) throwType(env, name + article + typeName);
  if (elements > 0 && view.length == 0 && view.arrayBuffer.IsArrayBuffer()) {
    bool detached = false;
    napi_is_detached_arraybuffer(env, view.arrayBuffer, &detached);
    if (detached) throwType(env, name + " is backed by a detached ArrayBuffer");
  }
  if (int64_t(view.length) < elements) {
    throwRange(env, name + " has " + std::to_string(view.length) + " elements but the problem " + (output ? "writes " : "reads ") +
                        std::to_string(elements));
  }
  return HostOperand(env, name, ta, view, size_t(elements) * view.elementBytes, lifetime, output, readBack);
}

HostOperand hostOperand(const Napi::Env& env, const Napi::Object& desc, const char* key, DType t, int64_t elements,
                        HostLifetime lifetime, bool output, bool readBack) {
  const napi_typedarray_type type = t == DType::F32 ? napi_float32_array : napi_uint16_array;
  const std::string what = std::string(typedArrayName(t)) + " for " + dtypeName(t);
  return hostOperand(env, desc.Get(key), key, type, what.c_str(), elements, lifetime, output, readBack);
}

Status UnpackedCall::finish() {
  for (HostOperand& o : operands) {
    Status s = o.finish();
    if (!s.isOk()) return s;
  }
  return Status::ok();
}

int64_t nonNegativeInteger(const Napi::Env& env, const Napi::Value& v, const std::string& name) {
  if (!v.IsNumber()) throwType(env, name + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
    throwRange(env, name + " must be a non-negative integer, got " + std::to_string(d));
  }
  return int64_t(d);
}

UnpackedCall unpackCall(const Napi::Env& env, const Napi::Value& descValue, bool withBuffers, HostLifetime lifetime) {
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
#if !defined(GEMMKIT_GPU_ADDON)
  PackedWeightHandle* handle = nullptr;  // packedB's handle
  bool readSource = false;               // the call reads the handle's kept source, not its panel
#endif
  if (!packed.IsUndefined() && !packed.IsNull()) {
#if defined(GEMMKIT_GPU_ADDON)
    throwType(env, "packedB: prepacked weights are CPU-only; give a GPU GEMM the weight itself");
#else
    handle = PackedWeightHandle::unwrapIfHandle(packed);
    if (!handle) throwType(env, "packedB must be a handle returned by prepack");
    call.packedB = handle->weight();
    if (!call.packedB) throwType(env, "packedB was disposed");
    const PackedWeight& w = *call.packedB;
    if (w.k != p.k || w.n != p.n || w.dtype != p.dtypeB || p.strideB != 0) {
      throwRange(env, "the prepacked weight is op(B) [" + std::to_string(w.k) + ", " + std::to_string(w.n) + "] " +
                          dtypeName(w.dtype) + " but the problem is " + p.describe());
    }
    readSource = getBool(d, "packedSource");
    if (!readSource) {
      p.packedB = w.layout();
    } else if (!handle->hasSource()) {
      throwType(env, "packedSource: the prepacked weight kept no source (keepSource: false)");
    } else if (p.transB != w.transB || p.ldb != handle->sourceLdb()) {
      throwRange(env, "packedSource: the problem reads B with transB " + std::to_string(p.transB) + ", ldb " + std::to_string(p.ldb) +
                          " but the source was kept with transB " + std::to_string(w.transB) + ", ldb " + std::to_string(handle->sourceLdb()));
    }
#endif
  } else if (!withBuffers) {
    // Timing and planning problems name a layout instead of a handle: the backend packs its own copies.
    p.packedB = getString(d, "packedLayout");
  }
  // Every index the kernels form must fit comfortably in int64 arithmetic (checked in double first, so
  // checkProblem's own products cannot overflow either). A problem whose result is empty forms none: every
  // backend returns before indexing anything, so a dimension may be huge there ([2, 2^52, 0] x [0, 0]);
  // only the elements its operands span (what their arrays must hold) must still be countable.
  const double limit = 9.0e15;
  auto extent = [](int64_t batch, int64_t stride, int64_t rows, int64_t ld) {
    return double(batch) * (double(stride) + double(rows) * double(ld));
  };
  auto spanned = [](int64_t batch, int64_t stride, int64_t rows, int64_t ld, int64_t cols) {
    if (batch == 0 || rows == 0 || cols == 0) return 0.0;
    return double(batch - 1) * double(stride) + double(rows - 1) * double(ld) + double(cols);
  };
  const bool emptyResult = p.m == 0 || p.n == 0 || p.batch == 0;
  const bool tooLarge = emptyResult
      ? spanned(p.batch, p.strideA, p.rowsA(), p.lda, p.colsA()) > limit || spanned(p.batch, p.strideB, p.rowsB(), p.ldb, p.colsB()) > limit
      : extent(p.batch, p.strideA, p.rowsA(), p.lda) > limit || extent(p.batch, p.strideB, p.rowsB(), p.ldb) > limit ||
            extent(p.batch, p.strideC, p.m, p.ldc) > limit || double(p.m) * double(p.ldc) > limit;
  if (tooLarge) throwRange(env, "problem " + p.describe() + " is too large to index");
  Status s = checkProblem(p);
  if (!s.isOk()) throw statusError(env, s);
  if (withBuffers) {
    // C is also read where beta scales it, or where the kernels leave gaps (ldc > n, strided batches)
    // that a snapshot copied back must keep.
    const bool readC = !emptyResult && (p.beta != 0.0f || p.ldc != p.n || (p.batch > 1 && p.strideC != p.m * p.ldc));
    std::vector<HostOperand>& ops = call.operands;
    ops.reserve(4);
    ops.push_back(hostOperand(env, d, "a", p.dtypeA, extentA(p), lifetime));
    call.buffers.a = ops.back().data();
#if !defined(GEMMKIT_GPU_ADDON)
    if (handle) {
      if (readSource) {
        if (size_t(extentB(p)) * dtypeSize(p.dtypeB) > handle->sourceBytes()) {
          throwRange(env, "packedSource: the problem reads more of B than the kept source holds: " + p.describe());
        }
        call.buffers.b = handle->sourceData();
        call.packedB.reset();  // B is read as stored
      } else {
        call.buffers.b = call.packedB.get();
      }
      if (lifetime == HostLifetime::Work) call.packedBHold = handle->holdForWork();
    } else
#endif
    {
      ops.push_back(hostOperand(env, d, "b", p.dtypeB, extentB(p), lifetime));
      call.buffers.b = ops.back().data();
    }
    ops.push_back(hostOperand(env, d, "c", p.dtypeC, extentC(p), lifetime, true, readC));
    call.buffers.c = ops.back().data();
    if (p.hasBias) {
      ops.push_back(hostOperand(env, d, "bias", p.dtypeBias, p.n, lifetime));
      call.buffers.bias = ops.back().data();
    }
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
  // An empty weight (k or n of 0) is packed without indexing anything, whatever its other dimension.
  if (p.k > 0 && p.n > 0 && double(p.rowsB()) * double(p.ldb) > 9.0e15) {
    throwRange(env, "weight " + p.describe() + " is too large to index");
  }
  call.operands.push_back(hostOperand(env, d, "b", p.dtypeB, matrixExtent(1, 0, p.rowsB(), p.ldb, p.colsB()), HostLifetime::Call));
  call.buffers.b = call.operands.back().data();
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
