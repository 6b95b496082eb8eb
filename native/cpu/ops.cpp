// The CPU ops' dispatch and their portable path: ScalarLanes, one f32 lane of plain C++ (every
// architecture; the reference the vector paths are checked against besides the float64 one).
#include "ops.h"

#include <cmath>
#include <new>

#include "../core/activation.h"
#include "../core/op_check.h"

#define GEMMKIT_OPS_TARGET

namespace gemmkit {

namespace {

struct ScalarLanes {
  using V = float;
  static constexpr int W = 1;
  static constexpr int kQChunk = 8;
  static V zero() { return 0.0f; }
  static V set1(float v) { return v; }
  static V load(const float* p) { return *p; }
  static V loadN(const float* p, int64_t n) { return n > 0 ? *p : 0.0f; }
  static void store(float* p, V v) { *p = v; }
  static void storeN(float* p, V v, int64_t n) {
    if (n > 0) *p = v;
  }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V fma(V a, V b, V c) { return std::fma(a, b, c); }
  static V vmax(V a, V b) { return a > b ? a : b; }  // b where a is NaN
  static float hsum(V v) { return v; }
  static float hmax(V v) { return v; }
  static V exp(V v) { return std::exp(v); }
  static V activate(Activation a, V v) { return applyActivation(a, v); }
  static V sumLanesOf(const V (&acc)[W]) { return acc[0]; }
  static bool anyEqual(V a, V b) { return a == b; }
  static void toF32(DType t, const uint16_t* src, int64_t n, float* dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = t == DType::BF16 ? bf16ToF32(src[i]) : f16ToF32(src[i]);
  }
  static void fromF32(DType t, const float* src, int64_t n, uint16_t* dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = t == DType::BF16 ? f32ToBf16(src[i]) : f32ToF16(src[i]);
  }
};

}  // namespace

}  // namespace gemmkit

#include "ops_kernels.h"

namespace gemmkit {

std::vector<Isa> cpuOpIsas() {
  std::vector<Isa> out;
  if (isaAvailable(Isa::Avx512)) out.push_back(Isa::Avx512);
  if (isaAvailable(Isa::Avx2)) out.push_back(Isa::Avx2);
  out.push_back(Isa::Scalar);
  return out;
}

Status runCpuOpOn(Isa isa, const OpDesc& op, const OpBuffers& buf) {
  Status s = checkOp(op, buf);
  if (!s.isOk()) return s;
  if (isa != Isa::Scalar && isa != Isa::Avx2 && isa != Isa::Avx512) {
    return unsupported(std::string("the ops have no ") + isaName(isa) + " path");
  }
  std::string why = isaUnavailableReason(isa);
  if (!why.empty()) return unsupported(std::string("the ops' ") + isaName(isa) + " path cannot run here: " + why);
  try {
    if (isa == Isa::Avx512 && runOpAvx512(op, buf)) return Status::ok();
    if (isa == Isa::Avx2 && runOpAvx2(op, buf)) return Status::ok();
    runOpWith<ScalarLanes>(op, buf);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::OutOfMemory, std::string("out of memory for the scratch of ") + opKindName(op.kind));
  }
  return Status::ok();
}

Status runCpuOp(const OpDesc& op, const OpBuffers& buf) {
  static const Isa widest = cpuOpIsas().front();
  return runCpuOpOn(widest, op, buf);
}

}  // namespace gemmkit
