// gemmkit-ops-check: the ops beyond GEMM (core/ops.h) without Node. Runs every op on every instruction-set
// path this CPU has (plain C++, AVX2, AVX-512) against the float64 reference (core/reference_ops) at edge
// sizes: rows and cols 1, 7, 45, 77, 127; strided inputs and outputs (ld > cols, the padding checked
// untouched); every dtype combination; attention at head_dim 64, 128 and odd sizes, one position,
// positions crossing the key tiles, GQA ratios 1, 4 and 8, ragged `past` per sequence, decoding split
// over threads (the pool is sized to 6 threads unless GEMMKIT_NUM_THREADS says otherwise); plus the
// rejection of malformed descriptions. Errors must stay within a few f32 ulps times sqrt(length) of the
// float64 result plus one rounding to the output dtype. Exit status 0 when everything agrees.
// Used by .ci/run on x86-64 and, cross-compiled, on arm64 under qemu (the plain-C++ path only there).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../core/op_check.h"
#include "../core/reference_ops.h"
#include "../cpu/micro_kernels.h"
#include "../cpu/ops.h"
#include "../cpu/thread_pool.h"
#include "check_support.h"

using namespace gemmkit;

namespace {

const DType kDTypes[] = {DType::F32, DType::F16, DType::BF16};
constexpr double kEps32 = 0x1p-24;

double dtypeEps(DType t) { return t == DType::F32 ? 0x1p-24 : t == DType::F16 ? 0x1p-11 : 0x1p-8; }

// A buffer of `elements` values of dtype t (f32 takes two 16-bit slots), filled with a sentinel so writes
// outside an op's extent show up, or with uniform values in [-range, range] rounded to t.
struct Buffer {
  DType dtype = DType::F32;
  int64_t elements = 0;
  std::vector<uint16_t> words;
  void* data() { return words.data(); }
  double at(int64_t i) const { return double(loadAsF32(words.data(), dtype, i)); }
};

Buffer makeBuffer(DType t, int64_t elements, std::mt19937* rng, double range) {
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

std::string describe(const OpDesc& op) {
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
std::vector<double> attentionErrorScales(const OpDesc& op, Operands& in) {
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

double tolerance(const OpDesc& op, Operands& in, const std::vector<double>& attentionScale, int64_t r, int64_t c, double want) {
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

// Checks what `isa` wrote against the reference's result, and that nothing outside the extent changed.
void compare(const OpDesc& op, Operands& in, Operands& got, Operands& ref, const std::vector<double>& out64, const std::string& label) {
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

// Runs `op` on fresh copies of `in` on every path and compares each with the reference.
void checkOp(const OpDesc& op, const Operands& in) {
  Operands ref = in;
  std::vector<double> out64;
  Status s = referenceOp(op, ref.buffers(), &out64);
  if (!s.isOk()) {
    checks++;
    fail(describe(op) + ": the reference rejected it: " + s.message());
    return;
  }
  Operands original = in;
  for (Isa isa : cpuOpIsas()) {
    Operands got = in;
    Status r = runCpuOpOn(isa, op, got.buffers());
    const std::string label = std::string(isaName(isa)) + " " + describe(op);
    if (!r.isOk()) {
      checks++;
      fail(label + ": " + r.message());
      continue;
    }
    compare(op, original, got, ref, out64, label);
  }
}

// Operands for a row op of the given shape (x [rows, ldx], y [rows, ldy], out [rows, ldout]).
Operands rowOperands(const OpDesc& op, std::mt19937& rng, double range = 2.0) {
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

OpDesc rowOp(OpKind kind, int64_t rows, int64_t cols, int64_t pad, DType x, DType y, DType out) {
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

void checkRowOps(std::mt19937& rng) {
  const int64_t sizes[][2] = {{1, 1}, {7, 7}, {45, 45}, {3, 77}, {2, 127}, {127, 3}, {5, 300}, {40, 1024}, {0, 5}, {4, 0}};
  for (const auto& sz : sizes) {
    for (int64_t pad : {0, 3}) {
      for (DType dx : kDTypes) {
        for (DType dout : kDTypes) {
          const DType dy = kDTypes[(int(dx) + int(dout)) % 3];
          for (OpKind kind : {OpKind::RmsNorm, OpKind::LayerNorm, OpKind::Softmax, OpKind::Swiglu, OpKind::Add, OpKind::Cast}) {
            OpDesc op = rowOp(kind, sz[0], sz[1], pad, dx, dy, dout);
            op.eps = 1e-5f;
            op.dtypeWeight = kDTypes[(int(dx) + 1) % 3];
            Operands in = rowOperands(op, rng);
            checkOp(op, in);
            if (kind == OpKind::LayerNorm) {  // without a bias
              in.bias = Buffer();
              checkOp(op, in);
            }
          }
          for (Activation a : {Activation::None, Activation::Relu, Activation::Gelu, Activation::Silu}) {
            OpDesc op = rowOp(OpKind::Activate, sz[0], sz[1], pad, dx, dx, dout);
            op.activation = a;
            // Wide inputs reach the activations' tails (exp under- and overflow, erfc's far range).
            checkOp(op, rowOperands(op, rng, 40.0));
          }
        }
        OpDesc am = rowOp(OpKind::Argmax, sz[0], sz[1], pad, dx, dx, dx);
        if (sz[1] > 0) checkOp(am, rowOperands(am, rng));
        OpDesc emb = rowOp(OpKind::Embedding, sz[0], sz[1], pad, dx, dx, kDTypes[(int(dx) + 2) % 3]);
        emb.vocab = 50;
        Operands in = rowOperands(emb, rng);
        in.ids.resize(size_t(std::max<int64_t>(sz[0], 1)));
        for (int64_t r = 0; r < sz[0]; r++) in.ids[size_t(r)] = int32_t((r * 37 + 11) % 50);
        checkOp(emb, in);
      }
    }
  }
  // In place (out is x): norms, softmax, add, swiglu on an f32 row, as the residual stream uses them.
  for (OpKind kind : {OpKind::RmsNorm, OpKind::Softmax, OpKind::Add, OpKind::Swiglu, OpKind::Activate}) {
    OpDesc op = rowOp(kind, 9, 77, 0, DType::F32, DType::F32, DType::F32);
    op.activation = Activation::Gelu;
    Operands in = rowOperands(op, rng);
    Operands ref = in;
    ref.out = ref.x;
    std::vector<double> out64;
    OpBuffers rb = ref.buffers();
    rb.out = rb.x == nullptr ? nullptr : const_cast<void*>(rb.x);
    Status s = referenceOp(op, rb, &out64);
    for (Isa isa : cpuOpIsas()) {
      Operands got = in;
      OpBuffers gb = got.buffers();
      gb.out = const_cast<void*>(gb.x);
      Status r = runCpuOpOn(isa, op, gb);
      checks++;
      bool ok = s.isOk() && r.isOk();
      for (int64_t i = 0; ok && i < op.rows * op.cols; i++) {
        const double want = out64[size_t(i)], have = got.x.at(i);
        ok = std::fabs(have - want) <= 64 * kEps32 * (std::fabs(want) + 1) + 1e-6;
      }
      if (!ok) fail(std::string(isaName(isa)) + " in place " + describe(op));
    }
  }
  // Argmax: ties (the lowest index wins), NaN (never wins), all NaN (0), -inf only.
  for (Isa isa : cpuOpIsas()) {
    const float nan = NAN, inf = INFINITY;
    const std::vector<std::vector<float>> rows = {
        {1, 3, 3, 2}, {nan, 1, nan, 1}, {nan, nan, nan, nan}, {-inf, -inf, -inf, -inf}, {nan, -inf, 5, nan}, {2, 2, 2, 2}};
    for (size_t r = 0; r < rows.size(); r++) {
      for (int64_t width : {4, 37}) {
        std::vector<float> row(size_t(width), -inf);
        if (width == 4) row = rows[r];
        else for (size_t i = 0; i < rows[r].size(); i++) row[20 + i] = rows[r][i];
        OpDesc op = rowOp(OpKind::Argmax, 1, width, 0, DType::F32, DType::F32, DType::F32);
        int32_t got = -1, want = -1;
        OpBuffers b;
        b.x = row.data();
        b.idsOut = &got;
        Status s = runCpuOpOn(isa, op, b);
        b.idsOut = &want;
        referenceOp(op, b);
        expect(s.isOk() && got == want, std::string(isaName(isa)) + " argmax special row " + std::to_string(r) + " width " +
                                            std::to_string(width) + ": got " + std::to_string(got) + ", want " + std::to_string(want));
      }
    }
  }
}

void checkRope(std::mt19937& rng) {
  for (int heads : {1, 3, 16}) {
    for (int d : {2, 6, 46, 64, 128}) {
      for (int64_t rows : {1, 7, 45}) {
        for (DType dx : kDTypes) {
          OpDesc op = rowOp(OpKind::Rope, rows, int64_t(heads) * d, heads == 3 ? 5 : 0, dx, dx, dx);
          op.heads = heads;
          op.headDim = d;
          op.ropePositions = 300;
          Operands in = rowOperands(op, rng);
          for (int64_t p = 0; p < op.ropePositions; p++) {
            for (int i = 0; i < d / 2; i++) {
              const double a = double(p) / std::pow(10000.0, 2.0 * i / d);
              storeFromF32(in.weight.data(), DType::F32, p * (d / 2) + i, float(std::cos(a)));
              storeFromF32(in.bias.data(), DType::F32, p * (d / 2) + i, float(std::sin(a)));
            }
          }
          in.positions.resize(size_t(rows));
          for (int64_t r = 0; r < rows; r++) in.positions[size_t(r)] = int32_t((r * 41 + 7) % 300);
          checkOp(op, in);
        }
      }
    }
  }
}

// A cache of `slots` slots with `past[b]` positions already stored in slot slots[b].
OpDesc attentionOp(int batch, int tokens, int heads, int kvHeads, int d, int capacity, int slots, DType dx, DType dout, int pad) {
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

void checkAttention(std::mt19937& rng) {
  struct Shape {
    int batch, tokens, heads, kvHeads, d;
    std::vector<int32_t> past;
  };
  const std::vector<Shape> shapes = {
      {1, 1, 1, 1, 64, {0}},              // one position
      {1, 1, 16, 4, 64, {511}},           // decode after 511: split over the threads
      {1, 1, 8, 1, 128, {300}},           // GQA 8, head_dim 128
      {3, 1, 4, 4, 7, {0, 77, 700}},      // ragged past, odd head_dim, decode
      {1, 130, 4, 1, 64, {0}},            // prefill crossing key tiles, GQA 4
      {2, 45, 8, 8, 45, {5, 0}},          // GQA 1, odd head_dim, ragged past prefill
      {2, 17, 16, 2, 128, {200, 63}},     // GQA 8 prefill after a past
      {1, 7, 2, 1, 1, {127}},             // head_dim 1
      {4, 2, 4, 2, 16, {1, 64, 65, 300}}, // chunks of two tokens, ragged
  };
  for (const Shape& sh : shapes) {
    for (DType dx : kDTypes) {
      const DType dout = kDTypes[(int(dx) + 1) % 3];
      const int maxPast = *std::max_element(sh.past.begin(), sh.past.end());
      const int capacity = maxPast + sh.tokens + 3, slots = sh.batch + 2;
      OpDesc op = attentionOp(sh.batch, sh.tokens, sh.heads, sh.kvHeads, sh.d, capacity, slots, dx, dout, dx == DType::F16 ? 3 : 0);
      Operands in = rowOperands(op, rng, 1.0);
      in.past = sh.past;
      in.slotIndex.resize(size_t(sh.batch));
      for (int b = 0; b < sh.batch; b++) in.slotIndex[size_t(b)] = (b * 3 + 1) % slots;  // not in order
      checkOp(op, in);
    }
  }
  // KvStore: ragged past, strided x, every input dtype; the rest of the cache untouched.
  for (DType dx : kDTypes) {
    for (int tokens : {1, 5}) {
      OpDesc op;
      op.kind = OpKind::KvStore;
      op.batch = 3;
      op.tokens = tokens;
      op.rows = 3 * tokens;
      op.kvHeads = 2;
      op.headDim = 45;
      op.cols = 90;
      op.ldx = 97;
      op.capacity = 20;
      op.slots = 4;
      op.dtypeX = dx;
      Operands in = rowOperands(op, rng);
      in.past = {0, 7, 20 - tokens};
      in.slotIndex = {2, 0, 3};
      checkOp(op, in);
    }
  }
}

// Malformed descriptions and out-of-range indices are Status errors, never a stray access.
void checkRejections() {
  auto rejected = [](const std::string& what, const OpDesc& op, const OpBuffers& b, StatusCode code) {
    Status s = runCpuOp(op, b);
    expect(s.code() == code, "rejection of " + what + ": got '" + s.message() + "'");
  };
  float x[64] = {}, out[64] = {}, cache[256] = {};
  int32_t ids[4] = {0, 1, 9, 2}, pos[2] = {0, 5}, slots2[2] = {0, 0}, past[2] = {0, 3};
  OpDesc op = rowOp(OpKind::Embedding, 4, 4, 0, DType::F32, DType::F32, DType::F32);
  op.vocab = 8;
  OpBuffers b;
  b.x = x;
  b.out = out;
  b.ids = ids;
  rejected("an id past the vocabulary", op, b, StatusCode::OutOfRange);
  op = rowOp(OpKind::RmsNorm, 2, 8, 0, DType::F32, DType::F32, DType::F32);
  op.ldx = 4;
  rejected("ldx < cols", op, b, StatusCode::OutOfRange);
  op.ldx = 8;
  rejected("a missing weight", op, b, StatusCode::InvalidArgument);
  op.eps = NAN;
  rejected("a NaN eps", op, b, StatusCode::OutOfRange);
  op = rowOp(OpKind::Rope, 2, 6, 0, DType::F32, DType::F32, DType::F32);
  op.heads = 2;
  op.headDim = 3;
  rejected("an odd rope headDim", op, b, StatusCode::OutOfRange);
  op.heads = 1;
  op.headDim = 6;
  op.ropePositions = 4;
  b.weight = b.bias = cache;
  b.positions = pos;
  rejected("a position past the rope tables", op, b, StatusCode::OutOfRange);
  op = attentionOp(2, 1, 3, 2, 4, 4, 2, DType::F32, DType::F32, 0);
  b.kCache = b.vCache = cache;
  b.slotIndex = slots2;
  b.past = past;
  rejected("heads not a multiple of kvHeads", op, b, StatusCode::OutOfRange);
  op = attentionOp(2, 2, 2, 2, 4, 4, 2, DType::F32, DType::F32, 0);
  rejected("past + tokens beyond the capacity", op, b, StatusCode::OutOfRange);
  op = attentionOp(2, 1, 2, 2, 4, 4, 1, DType::F32, DType::F32, 0);
  int32_t badSlots[2] = {0, 1};
  b.slotIndex = badSlots;
  rejected("a slot past the cache", op, b, StatusCode::OutOfRange);
  op.kind = OpKind::KvStore;
  op.heads = 0;
  op.cols = 8;
  op.slots = 2;
  b.slotIndex = slots2;
  b.out = cache;
  rejected("two sequences in one slot", op, b, StatusCode::OutOfRange);
  op.dtypeOut = DType::BF16;
  rejected("a bf16 KV cache", op, b, StatusCode::InvalidArgument);
  op = rowOp(OpKind::Argmax, 1, 0, 0, DType::F32, DType::F32, DType::F32);
  rejected("argmax of empty rows", op, b, StatusCode::OutOfRange);
  op.kind = OpKind(42);
  rejected("an unknown kind", op, b, StatusCode::InvalidArgument);
}

}  // namespace

int main() {
  // More threads than this machine may have cores, so decoding takes its split-and-combine path.
  setenv("GEMMKIT_NUM_THREADS", "6", 0);
  std::mt19937 rng(20240611);
  std::string paths;
  for (Isa isa : cpuOpIsas()) paths += std::string(paths.empty() ? "" : ", ") + isaName(isa);
  std::printf("gemmkit-ops-check: paths %s, %d threads\n", paths.c_str(), ThreadPool::instance().size());
  checkRowOps(rng);
  checkRope(rng);
  checkAttention(rng);
  checkRejections();
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
