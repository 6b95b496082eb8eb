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
#include "ops_check_support.h"

using namespace gemmkit;
using namespace gemmkit::opcheck;

namespace {

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
