// The ops of core/ops.h on the CPU, written once over a SIMD lane type L and compiled once per
// instruction set: ops.cpp (ScalarLanes: plain C++, every architecture), ops_avx2.cpp (8 f32 lanes) and
// ops_avx512.cpp (16 lanes). The including file defines GEMMKIT_OPS_TARGET (its target attribute, or
// nothing) and its lane type, then includes this header; everything here is local to that file, so the
// three copies never mix. L provides, for its vector type L::V of L::W f32 lanes:
//   zero, set1, load, loadN (the first n < W lanes, zeros after), store, storeN, add, sub, mul,
//   fma(a, b, c) = a * b + c, vmax(a, b) (b where a is NaN), hsum, hmax, exp, activate(Activation, v),
//   sumLanesOf(acc[W]) (lane j: the sum of acc[j]'s lanes), anyEqual(a, b),
//   toF32 / fromF32 (rows of 16-bit values to f32 and back, rounding to nearest even),
//   and kQChunk, how many query vectors the attention kernel may keep in registers (8: head sizes of
//   1, 2, 4 and 8 vectors get unrolled kernels).
// Arithmetic is f32 with several partial sums per reduction; 16-bit inputs are widened once per row into
// thread-local scratch and results rounded once. Rows (and attention's work items) are split over the
// engine's ThreadPool once a call has enough work for a second thread.
//
// Attention (causal, grouped-query, over the KV cache) is flash attention: a work item is one sequence,
// one KV head and a block of query tokens, whose rows are every (token, query head of that KV head) pair,
// so the key and value tiles are read once for the whole group. Keys are walked in tiles small enough
// for the key and value tiles to stay in L1; each row keeps an online softmax (running max m, sum l and
// an unnormalised output), so no [tokens, positions] score matrix exists. Decoding (one token) splits
// the cached positions of a (sequence, KV head) over several work items when there are fewer such pairs
// than threads (flash decoding): each writes its partial m, l and output, and a combine pass merges them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/op_check.h"
#include "../core/ops.h"
#include "scratch_buffer.h"
#include "thread_pool.h"

#define GEMMKIT_OPS_FN GEMMKIT_OPS_TARGET inline
#define GEMMKIT_OPS_INLINE GEMMKIT_OPS_TARGET __attribute__((always_inline)) inline

namespace gemmkit {
namespace {

// Per-thread scratch rows (slot 0..6), reused across calls.
float* scratchFloats(int slot, int64_t n) {
  static thread_local ScratchBuffer buffers[7];
  return static_cast<float*>(buffers[slot].get(size_t(std::max<int64_t>(n, 1)) * sizeof(float)));
}

// Below this many elements per task a second thread costs more than it saves.
constexpr double kMinElementsPerTask = 32768;

int poolSize() { return ThreadPool::instance().size(); }

// Runs fn(first, last) over [0, rows) in chunks of at least minRows rows, on as many threads as pay.
template <typename Fn>
void forRowChunks(int64_t rows, int64_t cols, const Fn& fn) {
  if (rows <= 0) return;
  const int64_t minRows = std::max<int64_t>(1, int64_t(kMinElementsPerTask / double(std::max<int64_t>(cols, 1))));
  const int64_t tasks = std::min<int64_t>((rows + minRows - 1) / minRows, int64_t(4) * poolSize());
  if (tasks <= 1) {
    fn(int64_t(0), rows);
    return;
  }
  const int64_t chunk = (rows + tasks - 1) / tasks;
  ThreadPool::instance().parallelFor(int(tasks), int(tasks), [&](int t) {
    const int64_t r0 = int64_t(t) * chunk, r1 = std::min(rows, r0 + chunk);
    if (r0 < r1) fn(r0, r1);
  });
}

// --- rows in and out -----------------------------------------------------------------------------------

// Row `offset` of base (dtype t) as f32: in place for f32, else widened into scratch.
template <class L>
GEMMKIT_OPS_FN const float* inputRow(DType t, const void* base, int64_t offset, int64_t n, float* scratch) {
  if (t == DType::F32) return static_cast<const float*>(base) + offset;
  L::toF32(t, static_cast<const uint16_t*>(base) + offset, n, scratch);
  return scratch;
}

// Where a row's f32 result is computed: in out when out is f32, else in scratch (finishRow rounds it into out).
GEMMKIT_OPS_FN float* outputRow(DType t, void* base, int64_t offset, float* scratch) {
  return t == DType::F32 ? static_cast<float*>(base) + offset : scratch;
}

template <class L>
GEMMKIT_OPS_FN void finishRow(DType t, void* base, int64_t offset, const float* row, int64_t n) {
  if (t != DType::F32) L::fromF32(t, row, n, static_cast<uint16_t*>(base) + offset);
}

// --- reductions (four partial vectors, the tail added in scalar) -----------------------------------------

template <class L>
GEMMKIT_OPS_FN float sumOf(const float* x, int64_t n) {
  using V = typename L::V;
  constexpr int W = L::W;
  V a0 = L::zero(), a1 = L::zero(), a2 = L::zero(), a3 = L::zero();
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    a0 = L::add(a0, L::load(x + i));
    a1 = L::add(a1, L::load(x + i + W));
    a2 = L::add(a2, L::load(x + i + 2 * W));
    a3 = L::add(a3, L::load(x + i + 3 * W));
  }
  for (; i + W <= n; i += W) a0 = L::add(a0, L::load(x + i));
  float tail = 0.0f;
  for (; i < n; i++) tail += x[i];
  return L::hsum(L::add(L::add(a0, a1), L::add(a2, a3))) + tail;
}

// sum (x - c)^2
template <class L>
GEMMKIT_OPS_FN float sumSquaresAbout(const float* x, int64_t n, float c) {
  using V = typename L::V;
  constexpr int W = L::W;
  const V vc = L::set1(c);
  V a0 = L::zero(), a1 = L::zero(), a2 = L::zero(), a3 = L::zero();
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    V d0 = L::sub(L::load(x + i), vc), d1 = L::sub(L::load(x + i + W), vc);
    V d2 = L::sub(L::load(x + i + 2 * W), vc), d3 = L::sub(L::load(x + i + 3 * W), vc);
    a0 = L::fma(d0, d0, a0);
    a1 = L::fma(d1, d1, a1);
    a2 = L::fma(d2, d2, a2);
    a3 = L::fma(d3, d3, a3);
  }
  for (; i + W <= n; i += W) {
    V d = L::sub(L::load(x + i), vc);
    a0 = L::fma(d, d, a0);
  }
  float tail = 0.0f;
  for (; i < n; i++) tail += (x[i] - c) * (x[i] - c);
  return L::hsum(L::add(L::add(a0, a1), L::add(a2, a3))) + tail;
}

// The largest value, NaN skipped (-inf when there is none).
template <class L>
GEMMKIT_OPS_FN float maxOf(const float* x, int64_t n) {
  using V = typename L::V;
  constexpr int W = L::W;
  V m0 = L::set1(-INFINITY), m1 = m0;
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    m0 = L::vmax(L::load(x + i), m0);
    m1 = L::vmax(L::load(x + i + W), m1);
  }
  for (; i + W <= n; i += W) m0 = L::vmax(L::load(x + i), m0);
  float m = L::hmax(L::vmax(m1, m0));
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

// --- row ops ---------------------------------------------------------------------------------------------

// RmsNorm and LayerNorm; w and bias: [cols] f32 (bias may be null).
template <class L>
GEMMKIT_OPS_TARGET void normRows(const OpDesc& op, const OpBuffers& b, const float* w, const float* bias, int64_t r0, int64_t r1) {
  using V = typename L::V;
  constexpr int W = L::W;
  const int64_t n = op.cols;
  float* in = scratchFloats(0, n);
  float* res = scratchFloats(1, n);
  const bool centred = op.kind == OpKind::LayerNorm;
  for (int64_t r = r0; r < r1; r++) {
    const float* x = inputRow<L>(op.dtypeX, b.x, r * op.ldx, n, in);
    const float mean = centred ? sumOf<L>(x, n) / float(n) : 0.0f;
    const float inv = 1.0f / std::sqrt(sumSquaresAbout<L>(x, n, mean) / float(n) + op.eps);
    float* o = outputRow(op.dtypeOut, b.out, r * op.ldout, res);
    const V vm = L::set1(mean), vi = L::set1(inv);
    for (int64_t i = 0; i < n; i += W) {
      const int64_t left = n - i;
      V v = L::mul(L::mul(L::sub(left >= W ? L::load(x + i) : L::loadN(x + i, left), vm), vi),
                   left >= W ? L::load(w + i) : L::loadN(w + i, left));
      if (bias) v = L::add(v, left >= W ? L::load(bias + i) : L::loadN(bias + i, left));
      if (left >= W) L::store(o + i, v);
      else L::storeN(o + i, v, left);
    }
    finishRow<L>(op.dtypeOut, b.out, r * op.ldout, o, n);
  }
}

template <class L>
GEMMKIT_OPS_TARGET void softmaxRows(const OpDesc& op, const OpBuffers& b, int64_t r0, int64_t r1) {
  using V = typename L::V;
  constexpr int W = L::W;
  const int64_t n = op.cols;
  float* in = scratchFloats(0, n);
  float* res = scratchFloats(1, n);
  for (int64_t r = r0; r < r1; r++) {
    const float* x = inputRow<L>(op.dtypeX, b.x, r * op.ldx, n, in);
    const float m = maxOf<L>(x, n);
    float* o = outputRow(op.dtypeOut, b.out, r * op.ldout, res);
    const V vm = L::set1(m);
    V s0 = L::zero(), s1 = L::zero();
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      const V e0 = L::exp(L::sub(L::load(x + i), vm)), e1 = L::exp(L::sub(L::load(x + i + W), vm));
      L::store(o + i, e0);
      L::store(o + i + W, e1);
      s0 = L::add(s0, e0);
      s1 = L::add(s1, e1);
    }
    for (; i + W <= n; i += W) {
      const V e = L::exp(L::sub(L::load(x + i), vm));
      L::store(o + i, e);
      s0 = L::add(s0, e);
    }
    float tail = 0.0f;
    for (; i < n; i++) tail += (o[i] = std::exp(x[i] - m));
    const V inv = L::set1(1.0f / (L::hsum(L::add(s0, s1)) + tail));
    for (i = 0; i < n; i += W) {
      const int64_t left = n - i;
      if (left >= W) L::store(o + i, L::mul(L::load(o + i), inv));
      else L::storeN(o + i, L::mul(L::loadN(o + i, left), inv), left);
    }
    finishRow<L>(op.dtypeOut, b.out, r * op.ldout, o, n);
  }
}

// Swiglu, Add, Activate and Cast: out = f(x[, y]) element by element.
template <class L>
GEMMKIT_OPS_TARGET void elementwiseRows(const OpDesc& op, const OpBuffers& b, int64_t r0, int64_t r1) {
  using V = typename L::V;
  constexpr int W = L::W;
  const int64_t n = op.cols;
  float* inX = scratchFloats(0, n);
  float* inY = scratchFloats(2, n);
  float* res = scratchFloats(1, n);
  const bool binary = op.kind == OpKind::Swiglu || op.kind == OpKind::Add;
  const Activation act = op.kind == OpKind::Swiglu ? Activation::Silu : op.kind == OpKind::Activate ? op.activation : Activation::None;
  for (int64_t r = r0; r < r1; r++) {
    const float* x = inputRow<L>(op.dtypeX, b.x, r * op.ldx, n, inX);
    const float* y = binary ? inputRow<L>(op.dtypeY, b.y, r * op.ldy, n, inY) : nullptr;
    float* o = outputRow(op.dtypeOut, b.out, r * op.ldout, res);
    for (int64_t i = 0; i < n; i += W) {
      const int64_t left = n - i;
      V v = left >= W ? L::load(x + i) : L::loadN(x + i, left);
      if (act != Activation::None) v = L::activate(act, v);
      if (binary) {
        const V u = left >= W ? L::load(y + i) : L::loadN(y + i, left);
        v = op.kind == OpKind::Add ? L::add(v, u) : L::mul(v, u);
      }
      if (left >= W) L::store(o + i, v);
      else L::storeN(o + i, v, left);
    }
    finishRow<L>(op.dtypeOut, b.out, r * op.ldout, o, n);
  }
}

// Embedding and Cast: out row r = source row (ids[r] of the table, or r), converted.
template <class L>
GEMMKIT_OPS_TARGET void copyRows(const OpDesc& op, const OpBuffers& b, int64_t r0, int64_t r1) {
  const int64_t n = op.cols;
  float* in = scratchFloats(0, n);
  const int sizeX = dtypeSize(op.dtypeX), sizeOut = dtypeSize(op.dtypeOut);
  for (int64_t r = r0; r < r1; r++) {
    const int64_t src = (op.kind == OpKind::Embedding ? int64_t(b.ids[r]) : r) * op.ldx;
    char* dst = static_cast<char*>(b.out) + r * op.ldout * sizeOut;
    if (op.dtypeX == op.dtypeOut) {
      std::memmove(dst, static_cast<const char*>(b.x) + src * sizeX, size_t(n) * sizeX);
      continue;
    }
    const float* x = inputRow<L>(op.dtypeX, b.x, src, n, in);
    if (op.dtypeOut == DType::F32) std::memcpy(dst, x, size_t(n) * 4);
    else L::fromF32(op.dtypeOut, x, n, reinterpret_cast<uint16_t*>(dst));
  }
}

// Rope, in place on x: per head, (x[i], x[i + half]) rotated by the angle of (positions[r], i).
template <class L>
GEMMKIT_OPS_TARGET void ropeRows(const OpDesc& op, const OpBuffers& b, int64_t r0, int64_t r1) {
  using V = typename L::V;
  constexpr int W = L::W;
  const int64_t n = op.cols, half = op.headDim / 2;
  float* in = scratchFloats(0, n);
  void* xBase = const_cast<void*>(b.x);  // Rope writes through x (ops.h: in place)
  const float* cosT = static_cast<const float*>(b.weight);
  const float* sinT = static_cast<const float*>(b.bias);
  for (int64_t r = r0; r < r1; r++) {
    float* x = op.dtypeX == DType::F32 ? static_cast<float*>(xBase) + r * op.ldx : in;
    if (op.dtypeX != DType::F32) L::toF32(op.dtypeX, static_cast<const uint16_t*>(xBase) + r * op.ldx, n, in);
    const float* c = cosT + int64_t(b.positions[r]) * half;
    const float* s = sinT + int64_t(b.positions[r]) * half;
    for (int64_t h = 0; h < op.heads; h++) {
      float* lo = x + h * op.headDim;
      float* hi = lo + half;
      for (int64_t i = 0; i < half; i += W) {
        const int64_t left = half - i;
        const bool full = left >= W;
        const V a = full ? L::load(lo + i) : L::loadN(lo + i, left), e = full ? L::load(hi + i) : L::loadN(hi + i, left);
        const V vc = full ? L::load(c + i) : L::loadN(c + i, left), vs = full ? L::load(s + i) : L::loadN(s + i, left);
        const V ra = L::sub(L::mul(a, vc), L::mul(e, vs)), re = L::add(L::mul(e, vc), L::mul(a, vs));
        if (full) {
          L::store(lo + i, ra);
          L::store(hi + i, re);
        } else {
          L::storeN(lo + i, ra, left);
          L::storeN(hi + i, re, left);
        }
      }
    }
    if (op.dtypeX != DType::F32) L::fromF32(op.dtypeX, x, n, static_cast<uint16_t*>(xBase) + r * op.ldx);
  }
}

// KvStore: row r = b * tokens + t of x goes to positions past[b] + t of slot slotIndex[b], each KV head.
template <class L>
GEMMKIT_OPS_TARGET void kvStoreRows(const OpDesc& op, const OpBuffers& b, int64_t r0, int64_t r1) {
  const int64_t d = op.headDim;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t seq = r / op.tokens, t = r % op.tokens;
    for (int64_t h = 0; h < op.kvHeads; h++) {
      float* dst = static_cast<float*>(b.out) +
                   ((int64_t(b.slotIndex[seq]) * op.kvHeads + h) * op.capacity + b.past[seq] + t) * d;
      const int64_t src = r * op.ldx + h * d;
      if (op.dtypeX == DType::F32) std::memcpy(dst, static_cast<const float*>(b.x) + src, size_t(d) * 4);
      else L::toF32(op.dtypeX, static_cast<const uint16_t*>(b.x) + src, d, dst);
    }
  }
}

// The lowest index of the largest value, NaN never winning (all NaN: 0).
template <class L>
GEMMKIT_OPS_TARGET void argmaxRows(const OpDesc& op, const OpBuffers& b, int64_t r0, int64_t r1) {
  using V = typename L::V;
  constexpr int W = L::W;
  const int64_t n = op.cols;
  float* in = scratchFloats(0, n);
  for (int64_t r = r0; r < r1; r++) {
    const float* x = inputRow<L>(op.dtypeX, b.x, r * op.ldx, n, in);
    const float m = maxOf<L>(x, n);
    const V vm = L::set1(m);
    int64_t i = 0, found = -1;
    for (; i + W <= n && found < 0; i += W) {
      if (!L::anyEqual(L::load(x + i), vm)) continue;
      for (int64_t j = i; j < i + W; j++) {
        if (x[j] == m) {
          found = j;
          break;
        }
      }
    }
    for (; i < n && found < 0; i++) {
      if (x[i] == m) found = i;
    }
    b.idsOut[r] = found < 0 ? 0 : int32_t(found);
  }
}

// --- attention -----------------------------------------------------------------------------------------------

struct AttentionShape {
  int64_t d;      // headDim
  int64_t dp;     // headDim rounded up to whole vectors: the row stride of the query and output scratch
  int64_t group;  // query heads per KV head
  int64_t keyTile;  // keys per tile: the key and value tiles together stay within L1
};

// The running state of R query rows: scaled queries q [R][dp] (zero padded), output acc [R][dp], running
// max m [R] and sum l [R].
struct AttentionRows {
  float* q;
  float* acc;
  float* m;
  float* l;
  int64_t rows;
};

// Scores of one query row q (scaled, zero padded to whole vectors) against `count` <= W keys (rows of k,
// stride d): lane j for key j. C > 0: the query is exactly C vectors, held in registers (unrolled); C == 0:
// any number of vectors. The last vector of a key row has lastN lanes. Inlined into attendKeys, so the W
// accumulators stay in registers.
template <class L, int C>
GEMMKIT_OPS_INLINE typename L::V scoresOf(const float* q, const float* k, int64_t d, int64_t vecs, int count, int64_t lastN) {
  using V = typename L::V;
  constexpr int W = L::W;
  V a[W];
#pragma GCC unroll 16
  for (int j = 0; j < W; j++) a[j] = L::zero();
  if constexpr (C > 0) {
    V qv[C];
#pragma GCC unroll 16
    for (int c = 0; c < C; c++) qv[c] = L::load(q + c * W);
#pragma GCC unroll 16
    for (int j = 0; j < W; j++) {
      if (j < count) {
        const float* kr = k + j * d;
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) {
          const V kv = (c == C - 1 && lastN < W) ? L::loadN(kr + c * W, lastN) : L::load(kr + c * W);
          a[j] = L::fma(qv[c], kv, a[j]);
        }
      }
    }
  } else {
    for (int64_t c = 0; c < vecs; c++) {
      const V qv = L::load(q + c * W);
      const bool partial = c == vecs - 1 && lastN < W;
#pragma GCC unroll 16
      for (int j = 0; j < W; j++) {
        if (j < count) {
          const float* kr = k + j * d + c * W;
          a[j] = L::fma(qv, partial ? L::loadN(kr, lastN) : L::load(kr), a[j]);
        }
      }
    }
  }
  return L::sumLanesOf(a);
}

// acc[v0 .. v0 + C vectors) += sum_j p[j] * v[j] over `count` value rows (stride d); the last vector has lastN lanes.
template <class L, int C>
GEMMKIT_OPS_FN void accumulateChunk(float* acc, const float* p, const float* v, int64_t d, int64_t count, int64_t lastN) {
  using V = typename L::V;
  constexpr int W = L::W;
  V a[C];
#pragma GCC unroll 16
  for (int c = 0; c < C; c++) a[c] = L::load(acc + c * W);
  for (int64_t j = 0; j < count; j++) {
    const V pj = L::set1(p[j]);
    const float* vr = v + j * d;
#pragma GCC unroll 16
    for (int c = 0; c < C; c++) {
      const V vv = (c == C - 1 && lastN < W) ? L::loadN(vr + c * W, lastN) : L::load(vr + c * W);
      a[c] = L::fma(pj, vv, a[c]);
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < C; c++) L::store(acc + c * W, a[c]);
}

template <class L>
GEMMKIT_OPS_FN void accumulateChunkAny(float* acc, const float* p, const float* v, int64_t d, int64_t count, int c, int64_t lastN) {
  switch (c) {
    case 1: accumulateChunk<L, 1>(acc, p, v, d, count, lastN); break;
    case 2: accumulateChunk<L, 2>(acc, p, v, d, count, lastN); break;
    case 3: accumulateChunk<L, 3>(acc, p, v, d, count, lastN); break;
    case 4: accumulateChunk<L, 4>(acc, p, v, d, count, lastN); break;
    case 5: accumulateChunk<L, 5>(acc, p, v, d, count, lastN); break;
    case 6: accumulateChunk<L, 6>(acc, p, v, d, count, lastN); break;
    case 7: accumulateChunk<L, 7>(acc, p, v, d, count, lastN); break;
    default: accumulateChunk<L, 8>(acc, p, v, d, count, lastN); break;
  }
}

// Folds keys [k0, k1) of one KV head (k, v: its [capacity][d] cache rows) into the rows' online softmax;
// row i sees keys up to and including position rowPos[i].
template <class L, int C>
GEMMKIT_OPS_TARGET void attendKeys(const AttentionShape& sh, AttentionRows& rs, const int64_t* rowPos, const float* k,
                                   const float* v, int64_t k0, int64_t k1) {
  using V = typename L::V;
  constexpr int W = L::W;
  const int64_t d = sh.d, vecs = (d + W - 1) / W, lastLanes = d - (vecs - 1) * W;
  float* s = scratchFloats(4, sh.keyTile + W);
  for (int64_t j0 = k0; j0 < k1; j0 += sh.keyTile) {
    const int64_t tile = std::min(sh.keyTile, k1 - j0);
    const float* kt = k + j0 * d;
    const float* vt = v + j0 * d;
    for (int64_t i = 0; i < rs.rows; i++) {
      const int64_t seen = std::min(tile, rowPos[i] + 1 - j0);
      if (seen <= 0) continue;
      const float* q = rs.q + i * sh.dp;
      for (int64_t jb = 0; jb < seen; jb += W) {
        L::store(s + jb, scoresOf<L, C>(q, kt + jb * d, d, vecs, int(std::min<int64_t>(W, seen - jb)), lastLanes));
      }
      for (int64_t j = seen; j < (seen + W - 1) / W * W; j++) s[j] = -INFINITY;  // masked: exp gives 0
      const float tileMax = maxOf<L>(s, seen);
      const float mOld = rs.m[i], mNew = std::max(mOld, tileMax);
      // A row whose scores are all -inf so far keeps m = -inf; exp(-inf - -inf) would be NaN.
      const float shift = mNew == -INFINITY ? 0.0f : mNew;
      const float alpha = mOld == -INFINITY ? 0.0f : std::exp(mOld - shift);
      const V vm = L::set1(shift);
      V sum = L::zero();
      for (int64_t j = 0; j < seen; j += W) {
        const V e = L::exp(L::sub(L::load(s + j), vm));
        L::store(s + j, e);
        sum = L::add(sum, e);
      }
      rs.l[i] = rs.l[i] * alpha + L::hsum(sum);
      rs.m[i] = mNew;
      float* acc = rs.acc + i * sh.dp;
      if (alpha != 1.0f) {
        const V va = L::set1(alpha);
        for (int64_t j = 0; j < sh.dp; j += W) L::store(acc + j, L::mul(L::load(acc + j), va));
      }
      if constexpr (C > 0) {
        accumulateChunk<L, C>(acc, s, vt, d, seen, lastLanes);
      } else {
        for (int64_t v0 = 0; v0 < vecs; v0 += 8) {
          const int c = int(std::min<int64_t>(8, vecs - v0));
          accumulateChunkAny<L>(acc + v0 * W, s, vt + v0 * W, d, seen, c, v0 + c == vecs ? lastLanes : W);
        }
      }
    }
  }
}

// One work item: sequence `seq`, KV head g, query tokens [t0, t1), keys [k0, k1) (clipped to what the rows
// see). With `partial` null the normalised output goes to out; else m, l and the unnormalised output of
// each row go to partial ([rows][dp + 2]) for the combine pass.
template <class L>
GEMMKIT_OPS_TARGET void attentionItem(const OpDesc& op, const OpBuffers& b, const AttentionShape& sh, int64_t seq, int64_t g,
                                      int64_t t0, int64_t t1, int64_t k0, int64_t k1, float* partial) {
  using V = typename L::V;
  constexpr int W = L::W;
  const int64_t rows = (t1 - t0) * sh.group, d = sh.d, dp = sh.dp;
  AttentionRows rs{scratchFloats(0, rows * dp), scratchFloats(1, rows * dp), scratchFloats(2, rows), scratchFloats(3, rows), rows};
  int64_t* rowPos = reinterpret_cast<int64_t*>(scratchFloats(5, 2 * rows));
  const int64_t past = b.past[seq];
  float* widen = scratchFloats(6, d);
  const V scale = L::set1(op.scale);
  for (int64_t i = 0; i < rows; i++) {
    const int64_t t = t0 + i / sh.group, h = g * sh.group + i % sh.group;
    rowPos[i] = past + t;
    const float* q = inputRow<L>(op.dtypeX, b.x, (seq * op.tokens + t) * op.ldx + h * d, d, widen);
    float* qs = rs.q + i * dp;
    for (int64_t j = 0; j < dp; j += W) {
      const int64_t left = d - j;
      L::store(qs + j, L::mul(left >= W ? L::load(q + j) : L::loadN(q + j, left), scale));
      L::store(rs.acc + i * dp + j, L::zero());
    }
    rs.m[i] = -INFINITY;
    rs.l[i] = 0.0f;
  }
  const int64_t cacheOffset = (int64_t(b.slotIndex[seq]) * op.kvHeads + g) * op.capacity * d;
  const int64_t kEnd = std::min(k1, rowPos[rows - 1] + 1);
  const float* k = b.kCache + cacheOffset;
  const float* v = b.vCache + cacheOffset;
  // Head sizes of up to kQChunk vectors get kernels with the query held in registers.
  switch (L::kQChunk >= 8 ? (sh.d + W - 1) / W : 0) {
    case 1: attendKeys<L, 1>(sh, rs, rowPos, k, v, k0, kEnd); break;
    case 2: attendKeys<L, 2>(sh, rs, rowPos, k, v, k0, kEnd); break;
    case 4: attendKeys<L, 4>(sh, rs, rowPos, k, v, k0, kEnd); break;
    case 8: attendKeys<L, 8>(sh, rs, rowPos, k, v, k0, kEnd); break;
    default: attendKeys<L, 0>(sh, rs, rowPos, k, v, k0, kEnd); break;
  }
  for (int64_t i = 0; i < rows; i++) {
    float* acc = rs.acc + i * dp;
    if (partial) {
      float* p = partial + i * (dp + 2);
      p[0] = rs.m[i];
      p[1] = rs.l[i];
      std::memcpy(p + 2, acc, size_t(dp) * sizeof(float));
      continue;
    }
    const int64_t t = t0 + i / sh.group, h = g * sh.group + i % sh.group;
    const V inv = L::set1(1.0f / rs.l[i]);
    for (int64_t j = 0; j < dp; j += W) L::store(acc + j, L::mul(L::load(acc + j), inv));
    const int64_t at = (seq * op.tokens + t) * op.ldout + h * d;
    if (op.dtypeOut == DType::F32) std::memcpy(static_cast<float*>(b.out) + at, acc, size_t(d) * sizeof(float));
    else L::fromF32(op.dtypeOut, acc, d, static_cast<uint16_t*>(b.out) + at);
  }
}

// Merges the partial results of `chunks` key ranges of one (sequence, KV head) of a decode step.
template <class L>
GEMMKIT_OPS_TARGET void combinePartials(const OpDesc& op, const OpBuffers& b, const AttentionShape& sh, int64_t seq, int64_t g,
                                        const float* partials, int64_t chunks) {
  using V = typename L::V;
  constexpr int W = L::W;
  const int64_t dp = sh.dp, stride = sh.group * (dp + 2);
  float* out = scratchFloats(1, dp);
  for (int64_t i = 0; i < sh.group; i++) {
    float m = -INFINITY;
    for (int64_t c = 0; c < chunks; c++) m = std::max(m, partials[c * stride + i * (dp + 2)]);
    for (int64_t j = 0; j < dp; j += W) L::store(out + j, L::zero());
    float l = 0.0f;
    for (int64_t c = 0; c < chunks; c++) {
      const float* p = partials + c * stride + i * (dp + 2);
      if (p[0] == -INFINITY) continue;  // a chunk no row of it saw
      const float w = std::exp(p[0] - m);
      l += w * p[1];
      const V vw = L::set1(w);
      for (int64_t j = 0; j < dp; j += W) L::store(out + j, L::fma(vw, L::load(p + 2 + j), L::load(out + j)));
    }
    const V inv = L::set1(1.0f / l);
    for (int64_t j = 0; j < dp; j += W) L::store(out + j, L::mul(L::load(out + j), inv));
    const int64_t at = seq * op.tokens * op.ldout + (g * sh.group + i) * sh.d;
    if (op.dtypeOut == DType::F32) std::memcpy(static_cast<float*>(b.out) + at, out, size_t(sh.d) * sizeof(float));
    else L::fromF32(op.dtypeOut, out, sh.d, static_cast<uint16_t*>(b.out) + at);
  }
}

// Below this many multiply-adds per work item a second thread costs more than it saves.
constexpr double kMinAttentionMacsPerTask = 1 << 18;
// Decoding splits a (sequence, KV head)'s positions into chunks of at least this many.
constexpr int64_t kMinDecodeChunk = 128;

template <class L>
GEMMKIT_OPS_TARGET void runAttention(const OpDesc& op, const OpBuffers& b) {
  constexpr int W = L::W;
  AttentionShape sh;
  sh.d = op.headDim;
  sh.dp = (sh.d + W - 1) / W * W;
  sh.group = op.heads / op.kvHeads;
  sh.keyTile = std::max<int64_t>(W, std::min<int64_t>(256, 4096 / sh.d / W * W));
  struct Item {
    int64_t seq, g, t0, t1, k0, k1;
    int64_t partial;  // index of its partial block, -1: writes out directly
  };
  std::vector<Item> items;
  double macs = 0;
  const int threads = poolSize();
  if (op.tokens == 1) {
    // Flash decoding: split each pair's positions when there are fewer pairs than threads.
    const int64_t pairs = int64_t(op.batch) * op.kvHeads;
    int64_t totalKeys = 0;
    for (int32_t s = 0; s < op.batch; s++) totalKeys += int64_t(b.past[s]) + 1;
    totalKeys *= op.kvHeads;
    int64_t chunk = INT64_MAX;
    if (pairs < threads) chunk = std::max(kMinDecodeChunk, (totalKeys + 2 * threads - 1) / (2 * threads));
    int64_t partials = 0;
    for (int32_t s = 0; s < op.batch; s++) {
      const int64_t span = int64_t(b.past[s]) + 1;
      for (int64_t g = 0; g < op.kvHeads; g++) {
        if (span <= chunk) {
          items.push_back({s, g, 0, 1, 0, span, -1});
          continue;
        }
        for (int64_t k0 = 0; k0 < span; k0 += chunk) items.push_back({s, g, 0, 1, k0, std::min(span, k0 + chunk), partials++});
      }
    }
    macs = double(totalKeys) * sh.group * sh.d * 2;
  } else {
    // Query blocks of about 64 rows, the last (longest) blocks first so the pool ends evenly.
    const int64_t blockTokens = std::max<int64_t>(1, 64 / sh.group);
    for (int64_t t0 = (op.tokens - 1) / blockTokens * blockTokens; t0 >= 0; t0 -= blockTokens) {
      for (int32_t s = 0; s < op.batch; s++) {
        for (int64_t g = 0; g < op.kvHeads; g++) items.push_back({s, g, t0, std::min<int64_t>(op.tokens, t0 + blockTokens), 0, INT64_MAX, -1});
      }
    }
    for (int32_t s = 0; s < op.batch; s++) {
      const double p = b.past[s], t = op.tokens;
      macs += (p * t + t * (t + 1) / 2) * op.heads * sh.d * 2;
    }
  }
  // The partial blocks of split pairs: [item][group rows][dp + 2].
  int64_t partialCount = 0;
  for (const Item& it : items) partialCount += it.partial >= 0;
  std::vector<float> partials(size_t(partialCount * sh.group * (sh.dp + 2)));
  const int64_t want = std::min<int64_t>(int64_t(items.size()), std::max<int64_t>(1, int64_t(macs / kMinAttentionMacsPerTask)));
  auto runItem = [&](int i) {
    const Item& it = items[size_t(i)];
    attentionItem<L>(op, b, sh, it.seq, it.g, it.t0, it.t1, it.k0, it.k1,
                     it.partial >= 0 ? partials.data() + it.partial * sh.group * (sh.dp + 2) : nullptr);
  };
  if (want <= 1) {
    for (size_t i = 0; i < items.size(); i++) runItem(int(i));
  } else {
    ThreadPool::instance().parallelFor(int(items.size()), int(std::min<int64_t>(want, threads)), runItem);
  }
  if (partialCount == 0) return;
  // Combine: the split pairs' items are consecutive, in key order.
  for (size_t i = 0; i < items.size();) {
    if (items[i].partial < 0) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < items.size() && items[j].seq == items[i].seq && items[j].g == items[i].g) j++;
    combinePartials<L>(op, b, sh, items[i].seq, items[i].g, partials.data() + items[i].partial * sh.group * (sh.dp + 2), int64_t(j - i));
    i = j;
  }
}

// --- the entry point -----------------------------------------------------------------------------------------

// Weight (and bias) of a norm as [cols] f32: the buffer itself when f32, else widened into `storage`.
template <class L>
GEMMKIT_OPS_TARGET const float* weightAsF32(DType t, const void* w, int64_t n, std::vector<float>& storage) {
  if (!w) return nullptr;
  if (t == DType::F32) return static_cast<const float*>(w);
  storage.resize(size_t(n) + 1);
  L::toF32(t, static_cast<const uint16_t*>(w), n, storage.data());
  return storage.data();
}

// Runs a checked op (checkOp passed) with lane type L.
template <class L>
GEMMKIT_OPS_TARGET void runOpWith(const OpDesc& op, const OpBuffers& b) {
  const int64_t rows = op.rows, cols = op.cols;
  if (rows == 0) return;
  switch (op.kind) {
    case OpKind::RmsNorm:
    case OpKind::LayerNorm: {
      if (cols == 0) return;
      std::vector<float> w32, b32;
      const float* w = weightAsF32<L>(op.dtypeWeight, b.weight, cols, w32);
      const float* bias = op.kind == OpKind::LayerNorm ? weightAsF32<L>(op.dtypeWeight, b.bias, cols, b32) : nullptr;
      forRowChunks(rows, cols, [&](int64_t r0, int64_t r1) { normRows<L>(op, b, w, bias, r0, r1); });
      return;
    }
    case OpKind::Softmax:
      if (cols == 0) return;
      forRowChunks(rows, cols, [&](int64_t r0, int64_t r1) { softmaxRows<L>(op, b, r0, r1); });
      return;
    case OpKind::Swiglu:
    case OpKind::Add:
    case OpKind::Activate:
      if (cols == 0) return;
      forRowChunks(rows, cols, [&](int64_t r0, int64_t r1) { elementwiseRows<L>(op, b, r0, r1); });
      return;
    case OpKind::Embedding:
    case OpKind::Cast:
      if (cols == 0) return;
      forRowChunks(rows, cols, [&](int64_t r0, int64_t r1) { copyRows<L>(op, b, r0, r1); });
      return;
    case OpKind::Rope:
      forRowChunks(rows, cols, [&](int64_t r0, int64_t r1) { ropeRows<L>(op, b, r0, r1); });
      return;
    case OpKind::KvStore:
      forRowChunks(rows, cols, [&](int64_t r0, int64_t r1) { kvStoreRows<L>(op, b, r0, r1); });
      return;
    case OpKind::Argmax:
      forRowChunks(rows, cols, [&](int64_t r0, int64_t r1) { argmaxRows<L>(op, b, r0, r1); });
      return;
    case OpKind::Attention:
      runAttention<L>(op, b);
      return;
  }
}

}  // namespace
}  // namespace gemmkit
