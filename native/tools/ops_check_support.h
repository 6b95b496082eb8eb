// What the Node-free op checks (gemmkit-ops-check on the CPU paths, gemmkit-gpu-ops-check on a device)
// share: host operands of an op sized by its extents (f32, f16, bf16; unused memory filled with a
// sentinel), the standard shapes of row and attention ops, and the comparison of a result with the
// float64 reference (core/reference_ops): per element within a few f32 ulps times sqrt(length) of
// what was summed plus one rounding to the output dtype, exact where the op only converts, and the
// padding outside the op's extent untouched.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../core/op_check.h"
#include "../core/ops.h"
#include "check_support.h"

namespace gemmkit {
namespace opcheck {

inline const DType kDTypes[] = {DType::F32, DType::F16, DType::BF16};
constexpr double kEps32 = 0x1p-24;

inline double dtypeEps(DType t) { return t == DType::F32 ? 0x1p-24 : t == DType::F16 ? 0x1p-11 : 0x1p-8; }

// A buffer of `elements` values of dtype t (f32 takes two 16-bit slots), filled with a sentinel so writes
// outside an op's extent show up, or with uniform values in [-range, range] rounded to t.
struct Buffer {
  DType dtype = DType::F32;
  int64_t elements = 0;
  std::vector<uint16_t> words;
  void* data() { return words.data(); }
  double at(int64_t i) const { return double(loadAsF32(words.data(), dtype, i)); }
};

inline Buffer makeBuffer(DType t, int64_t elements, std::mt19937* rng, double range) {
  Buffer b;
  b.dtype = t;
  b.elements = elements;
  b.words.assign(size_t(std::max<int64_t>(elements, 1)) * (t == DType::F32 ? 2 : 1), 0);
  std::uniform_real_distribution<double> u(-range, range);
  for (int64_t i = 0; i < elements; i++) storeFromF32(b.data(), t, i, rng ? float(u(*rng)) : 1234.5f);
  return b;
}

// The operands of one op: everything an op can read or write, sized by its extents.
struct Operands {
  Buffer x, y, out, weight, bias, kCache, vCache;
  std::vector<int32_t> ids, positions, slotIndex, past, idsOut;
  OpBuffers buffers() {
    OpBuffers b;
    b.x = x.elements ? x.data() : nullptr;
    b.y = y.elements ? y.data() : nullptr;
    b.out = out.elements ? out.data() : nullptr;
    b.weight = weight.elements ? weight.data() : nullptr;
    b.bias = bias.elements ? bias.data() : nullptr;
    b.kCache = kCache.elements ? static_cast<float*>(kCache.data()) : nullptr;
    b.vCache = vCache.elements ? static_cast<float*>(vCache.data()) : nullptr;
    b.ids = ids.data();
    b.positions = positions.data();
    b.slotIndex = slotIndex.data();
    b.past = past.data();
    b.idsOut = idsOut.data();
    return b;
  }
};

inline std::string describe(const OpDesc& op) {
  char s[256];
  std::snprintf(s, sizeof s, "%s rows %lld cols %lld ld %lld/%lld/%lld %s,%s->%s w %s heads %d/%d d %d batch %d tokens %d cap %d",
                opKindName(op.kind), (long long)op.rows, (long long)op.cols, (long long)op.ldx, (long long)op.ldy,
                (long long)op.ldout, dtypeName(op.dtypeX), dtypeName(op.dtypeY), dtypeName(op.dtypeOut),
                dtypeName(op.dtypeWeight), op.heads, op.kvHeads, op.headDim, op.batch, op.tokens, op.capacity);
  return s;
}

// Per-element tolerance, from the inputs: f32 accumulation error that grows with sqrt(length), on the
// magnitude of what was summed, plus one rounding to the output dtype.
// Attention's accumulation error of each (row, head): scores are off by ~sqrt(d) ulps of their magnitude
// S, which moves the weights by that much; the weighted sum adds ~sqrt(span) ulps; all on the largest
// value magnitude of the head.
inline std::vector<double> attentionErrorScales(const OpDesc& op, Operands& in) {
  std::vector<double> out(size_t(op.rows * op.heads));
  const int64_t d = op.headDim;
  const float* k = static_cast<const float*>(in.kCache.data());
  const float* v = static_cast<const float*>(in.vCache.data());
  for (int64_t r = 0; r < op.rows; r++) {
    const int64_t b = r / op.tokens, t = r % op.tokens, span = in.past[size_t(b)] + t + 1;
    for (int64_t h = 0; h < op.heads; h++) {
      const int64_t base = (int64_t(in.slotIndex[size_t(b)]) * op.kvHeads + h / (op.heads / op.kvHeads)) * op.capacity * d;
      double s = 0, vmax = 0;
      for (int64_t j = 0; j < span; j++) {
        double dot = 0;
        for (int64_t i = 0; i < d; i++) {
          dot += std::fabs(in.x.at(r * op.ldx + h * d + i) * k[base + j * d + i]);
          vmax = std::max(vmax, double(std::fabs(v[base + j * d + i])));
        }
        s = std::max(s, std::fabs(op.scale) * dot);
      }
      out[size_t(r * op.heads + h)] = (16 + 4 * std::sqrt(double(span)) + 4 * s) * kEps32 * vmax;
    }
  }
  return out;
}

inline double tolerance(const OpDesc& op, Operands& in, const std::vector<double>& attentionScale, int64_t r, int64_t c, double want) {
  const double outRound = op.dtypeOut == DType::F32 ? kEps32 : dtypeEps(op.dtypeOut);
  const double n = double(std::max<int64_t>(op.cols, 1));
  double acc = 0;
  switch (op.kind) {
    case OpKind::Embedding:
    case OpKind::Cast:
      return 0;  // exact up to the output rounding, compared bit for bit
    case OpKind::RmsNorm:
    case OpKind::LayerNorm: {
      double xmax = 0;
      for (int64_t j = 0; j < op.cols; j++) xmax = std::max(xmax, std::fabs(in.x.at(r * op.ldx + j)));
      double ss = 0, mean = 0;
      if (op.kind == OpKind::LayerNorm) {
        for (int64_t j = 0; j < op.cols; j++) mean += in.x.at(r * op.ldx + j);
        mean /= n;
      }
      for (int64_t j = 0; j < op.cols; j++) ss += std::pow(in.x.at(r * op.ldx + j) - mean, 2);
      const double inv = 1.0 / std::sqrt(ss / n + op.eps);
      acc = (8 + 4 * std::sqrt(n)) * kEps32 * (xmax * inv * std::fabs(in.weight.at(c)) + (in.bias.elements ? std::fabs(in.bias.at(c)) : 0));
      break;
    }
    case OpKind::Softmax:
      acc = (8 + 4 * std::sqrt(n)) * kEps32 * std::fabs(want) + 1e-37;
      break;
    case OpKind::Swiglu:
    case OpKind::Activate:
      acc = 16 * kEps32 * std::fabs(in.x.at(r * op.ldx + c)) * (op.kind == OpKind::Swiglu ? std::fabs(in.y.at(r * op.ldy + c)) : 1.0) + 1e-37;
      break;
    case OpKind::Add:
      acc = kEps32 * (std::fabs(in.x.at(r * op.ldx + c)) + std::fabs(in.y.at(r * op.ldy + c)));
      break;
    case OpKind::Rope: {
      const int64_t half = op.headDim / 2, i = c % op.headDim;
      const int64_t lo = r * op.ldx + (c - i) + (i % half);
      acc = 4 * kEps32 * (std::fabs(in.x.at(lo)) + std::fabs(in.x.at(lo + half)));
      break;
    }
    case OpKind::Attention:
      acc = attentionScale[size_t(r * op.heads + c / op.headDim)];
      break;
    default:
      break;
  }
  // f16 results below its normal range are rounded to a fixed spacing of 2^-24.
  return acc + outRound * std::fabs(want) + (op.dtypeOut == DType::F16 ? 0x1p-25 : 0.0);
}

// Checks what an implementation wrote (got) against the reference's result, and that nothing outside the extent changed.
inline void compare(const OpDesc& op, Operands& in, Operands& got, Operands& ref, const std::vector<double>& out64, const std::string& label) {
  checks++;
  auto failAt = [&](const char* what, int64_t r, int64_t c, double have, double want, double tol) {
    char s[200];
    std::snprintf(s, sizeof s, ": %s[%lld, %lld] is %.9g, want %.9g (tolerance %.3g)", what, (long long)r, (long long)c, have, want, tol);
    fail(label + s);
  };
  if (op.kind == OpKind::Argmax) {
    for (int64_t r = 0; r < op.rows; r++) {
      if (got.idsOut[size_t(r)] != ref.idsOut[size_t(r)]) return failAt("ids", r, 0, got.idsOut[size_t(r)], ref.idsOut[size_t(r)], 0);
    }
    return;
  }
  if (op.kind == OpKind::KvStore) {
    // The cache (writes and untouched sentinels alike) must equal the reference's bit for bit.
    if (got.out.words != ref.out.words) fail(label + ": the cache differs from the reference");
    return;
  }
  // Rope writes x; the others out.
  const std::vector<double> attentionScale = op.kind == OpKind::Attention ? attentionErrorScales(op, in) : std::vector<double>();
  Buffer& o = op.kind == OpKind::Rope ? got.x : got.out;
  Buffer& oRef = op.kind == OpKind::Rope ? ref.x : ref.out;
  const int64_t ld = op.kind == OpKind::Rope ? op.ldx : op.ldout;
  for (int64_t i = 0; i < o.elements; i++) {
    const int64_t r = i / std::max<int64_t>(ld, 1), c = i % std::max<int64_t>(ld, 1);
    const double have = o.at(i);
    if (c >= op.cols || r >= op.rows) {  // padding: untouched
      if (have != oRef.at(i) && !(std::isnan(have) && std::isnan(oRef.at(i)))) {
        return failAt("padding", r, c, have, oRef.at(i), 0);
      }
      continue;
    }
    const double want = out64[size_t(r * op.cols + c)];
    if (std::isnan(want) || std::isnan(have)) {
      if (std::isnan(want) != std::isnan(have)) return failAt("out", r, c, have, want, 0);
      continue;
    }
    const double tol = tolerance(op, in, attentionScale, r, c, want);
    if (tol == 0) {
      const double exact = double(loadAsF32(oRef.data(), oRef.dtype, i));
      if (have != exact) return failAt("out", r, c, have, exact, 0);
      continue;
    }
    if (!(std::fabs(have - want) <= tol)) return failAt("out", r, c, have, want, tol);
  }
}

// Operands for a row op of the given shape (x [rows, ldx], y [rows, ldy], out [rows, ldout]).
inline Operands rowOperands(const OpDesc& op, std::mt19937& rng, double range = 2.0) {
  Operands o;
  OpExtents e;
  Status s = checkOpDesc(op, &e);
  if (!s.isOk()) {
    std::printf("internal: bad case %s: %s\n", describe(op).c_str(), s.message().c_str());
    std::exit(3);
  }
  // Whole rows of ld elements, so the padding of every row can be checked.
  auto rowsOf = [&](int64_t rows, int64_t ld, int64_t extent) { return extent < 0 ? 0 : std::max(extent, rows * ld); };
  o.x = makeBuffer(op.dtypeX, rowsOf(op.kind == OpKind::Embedding ? op.vocab : op.rows, op.ldx, e.x), &rng, range);
  if (e.y >= 0) o.y = makeBuffer(op.dtypeY, rowsOf(op.rows, op.ldy, e.y), &rng, range);
  if (e.out >= 0) o.out = makeBuffer(op.dtypeOut, op.kind == OpKind::KvStore ? e.out : rowsOf(op.rows, op.ldout, e.out), nullptr, 0);
  if (e.weight >= 0) o.weight = makeBuffer(e.dtypeWeight, e.weight, &rng, range);
  if (e.bias >= 0) o.bias = makeBuffer(e.dtypeWeight, e.bias, &rng, range);
  if (e.kCache >= 0) o.kCache = makeBuffer(DType::F32, e.kCache, &rng, 1.0);
  if (e.vCache >= 0) o.vCache = makeBuffer(DType::F32, e.vCache, &rng, 1.0);
  o.idsOut.assign(size_t(std::max<int64_t>(op.rows, 1)), -1);
  return o;
}

inline OpDesc rowOp(OpKind kind, int64_t rows, int64_t cols, int64_t pad, DType x, DType y, DType out) {
  OpDesc op;
  op.kind = kind;
  op.rows = rows;
  op.cols = cols;
  op.ldx = cols + pad;
  op.ldy = cols + 2 * pad;
  op.ldout = cols + 3 * pad;
  op.dtypeX = x;
  op.dtypeY = y;
  op.dtypeOut = out;
  return op;
}

// A cache of `slots` slots with `past[b]` positions already stored in slot slots[b].
inline OpDesc attentionOp(int batch, int tokens, int heads, int kvHeads, int d, int capacity, int slots, DType dx, DType dout, int pad) {
  OpDesc op;
  op.kind = OpKind::Attention;
  op.batch = batch;
  op.tokens = tokens;
  op.rows = int64_t(batch) * tokens;
  op.heads = heads;
  op.kvHeads = kvHeads;
  op.headDim = d;
  op.cols = int64_t(heads) * d;
  op.ldx = op.cols + pad;
  op.ldout = op.cols + 2 * pad;
  op.capacity = capacity;
  op.slots = slots;
  op.scale = float(1.0 / std::sqrt(double(d)));
  op.dtypeX = dx;
  op.dtypeOut = dout;
  return op;
}

}  // namespace opcheck
}  // namespace gemmkit
