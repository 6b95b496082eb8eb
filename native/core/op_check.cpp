#include "op_check.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace gemmkit {

namespace {

std::string str(int64_t v) { return std::to_string(v); }

Status bad(const OpDesc& op, const std::string& what) {
  return invalidArgument(std::string(opKindName(op.kind)) + ": " + what);
}
Status range(const OpDesc& op, const std::string& what) {
  return outOfRange(std::string(opKindName(op.kind)) + ": " + what);
}

bool validDType(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// Every index the kernels form must fit comfortably in int64 arithmetic (and in a double, exactly).
constexpr double kIndexLimit = 9.0e15;

Status checkLd(const OpDesc& op, const char* name, int64_t ld) {
  if (ld < op.cols) return range(op, std::string(name) + " = " + str(ld) + " is less than cols = " + str(op.cols));
  if (double(op.rows) * double(ld) > kIndexLimit) return range(op, "[" + str(op.rows) + ", " + name + " = " + str(ld) + "] is too large to index");
  return Status::ok();
}

// The cache of one layer: [slots][kvHeads][capacity][headDim] f32.
int64_t cacheElements(const OpDesc& op) { return int64_t(op.slots) * op.kvHeads * op.capacity * op.headDim; }

Status checkHeads(const OpDesc& op, bool needQueryHeads) {
  if (op.kvHeads < 1 && op.kind != OpKind::Rope) return range(op, "kvHeads must be >= 1, got " + str(op.kvHeads));
  if (needQueryHeads) {
    if (op.heads < 1) return range(op, "heads must be >= 1, got " + str(op.heads));
  }
  if (op.headDim < 1) return range(op, "headDim must be >= 1, got " + str(op.headDim));
  return Status::ok();
}

Status checkBatch(const OpDesc& op, int64_t colsWanted, const char* colsName) {
  if (op.batch < 0 || op.tokens < 0) return range(op, "batch and tokens must be >= 0, got " + str(op.batch) + " and " + str(op.tokens));
  if (op.rows != int64_t(op.batch) * op.tokens) {
    return range(op, "rows = " + str(op.rows) + " but batch * tokens = " + str(op.batch) + " * " + str(op.tokens));
  }
  if (op.cols != colsWanted) return range(op, "cols = " + str(op.cols) + " but " + colsName + " = " + str(colsWanted));
  if (op.slots < 0 || op.capacity < 0) return range(op, "slots and capacity must be >= 0, got " + str(op.slots) + " and " + str(op.capacity));
  if (double(op.slots) * op.kvHeads * op.capacity * op.headDim > kIndexLimit) return range(op, "the KV cache is too large to index");
  return Status::ok();
}

}  // namespace

bool isOpKind(int32_t kind) { return kind >= int32_t(OpKind::Embedding) && kind <= int32_t(OpKind::Cast); }

const char* opKindName(OpKind kind) {
  switch (kind) {
    case OpKind::Embedding: return "embedding";
    case OpKind::RmsNorm: return "rmsNorm";
    case OpKind::LayerNorm: return "layerNorm";
    case OpKind::Rope: return "rope";
    case OpKind::KvStore: return "kvStore";
    case OpKind::Attention: return "attention";
    case OpKind::Softmax: return "softmax";
    case OpKind::Swiglu: return "swiglu";
    case OpKind::Add: return "add";
    case OpKind::Activate: return "activate";
    case OpKind::Argmax: return "argmax";
    case OpKind::Cast: return "cast";
  }
  return "?";
}

Status checkOpDesc(const OpDesc& op, OpExtents* extents) {
  if (!isOpKind(int32_t(op.kind))) return invalidArgument("op: unknown kind " + str(int32_t(op.kind)));
  if (op.rows < 0 || op.cols < 0) return range(op, "rows and cols must be >= 0, got " + str(op.rows) + " and " + str(op.cols));
  if (!validDType(op.dtypeX) || !validDType(op.dtypeY) || !validDType(op.dtypeOut) || !validDType(op.dtypeWeight)) {
    return bad(op, "a dtype is not f32, f16 or bf16");
  }
  if (op.device < 0) return range(op, "device must be >= 0, got " + str(op.device));
  OpExtents e;
  Status s;
  const int64_t rows = op.rows, cols = op.cols;
  auto xRows = [&](int64_t* ext) {
    s = checkLd(op, "ldx", op.ldx);
    *ext = stridedExtent(rows, op.ldx, cols);
    return s;
  };
  auto yRows = [&](int64_t* ext) {
    s = checkLd(op, "ldy", op.ldy);
    *ext = stridedExtent(rows, op.ldy, cols);
    return s;
  };
  auto outRows = [&](int64_t* ext) {
    s = checkLd(op, "ldout", op.ldout);
    *ext = stridedExtent(rows, op.ldout, cols);
    return s;
  };
  switch (op.kind) {
    case OpKind::Embedding:
      if (op.vocab < 0) return range(op, "vocab must be >= 0, got " + str(op.vocab));
      if (op.ldx < cols) return range(op, "ldx = " + str(op.ldx) + " is less than cols = " + str(cols));
      if (double(op.vocab) * double(op.ldx) > kIndexLimit) return range(op, "the table is too large to index");
      e.x = stridedExtent(op.vocab, op.ldx, cols);
      if (!outRows(&e.out).isOk()) return s;
      e.ids = rows;
      break;
    case OpKind::RmsNorm:
    case OpKind::LayerNorm:
      if (!std::isfinite(op.eps) || op.eps < 0) return range(op, "eps must be a finite number >= 0, got " + std::to_string(op.eps));
      if (!xRows(&e.x).isOk() || !outRows(&e.out).isOk()) return s;
      e.weight = cols;
      e.dtypeWeight = op.dtypeWeight;
      if (op.kind == OpKind::LayerNorm) {
        e.bias = cols;
        e.biasOptional = true;
      }
      break;
    case OpKind::Rope:
      if (op.heads < 1) return range(op, "heads must be >= 1, got " + str(op.heads));
      if (op.headDim < 2 || op.headDim % 2 != 0) return range(op, "headDim must be even and >= 2, got " + str(op.headDim));
      if (cols != int64_t(op.heads) * op.headDim) {
        return range(op, "cols = " + str(cols) + " but heads * headDim = " + str(op.heads) + " * " + str(op.headDim));
      }
      if (op.ropePositions < 0) return range(op, "ropePositions must be >= 0, got " + str(op.ropePositions));
      if (!xRows(&e.x).isOk()) return s;
      e.positions = rows;
      e.weight = e.bias = int64_t(op.ropePositions) * (op.headDim / 2);
      e.dtypeWeight = DType::F32;
      break;
    case OpKind::KvStore:
      if (!(s = checkHeads(op, false)).isOk()) return s;
      if (!(s = checkBatch(op, int64_t(op.kvHeads) * op.headDim, "kvHeads * headDim")).isOk()) return s;
      if (op.dtypeOut != DType::F32) return bad(op, std::string("the KV cache (out) is f32, not ") + dtypeName(op.dtypeOut));
      if (!xRows(&e.x).isOk()) return s;
      e.out = cacheElements(op);
      e.slotIndex = e.past = op.batch;
      break;
    case OpKind::Attention:
      if (!(s = checkHeads(op, true)).isOk()) return s;
      if (op.heads % op.kvHeads != 0) return range(op, "heads = " + str(op.heads) + " is not a multiple of kvHeads = " + str(op.kvHeads));
      if (!(s = checkBatch(op, int64_t(op.heads) * op.headDim, "heads * headDim")).isOk()) return s;
      if (!std::isfinite(op.scale)) return range(op, "scale must be finite, got " + std::to_string(op.scale));
      if (!xRows(&e.x).isOk() || !outRows(&e.out).isOk()) return s;
      e.kCache = e.vCache = cacheElements(op);
      e.slotIndex = e.past = op.batch;
      break;
    case OpKind::Softmax:
    case OpKind::Cast:
      if (!xRows(&e.x).isOk() || !outRows(&e.out).isOk()) return s;
      break;
    case OpKind::Activate:
      if (int32_t(op.activation) < 0 || int32_t(op.activation) > int32_t(Activation::Silu)) {
        return bad(op, "unknown activation " + str(int32_t(op.activation)));
      }
      if (!xRows(&e.x).isOk() || !outRows(&e.out).isOk()) return s;
      break;
    case OpKind::Swiglu:
    case OpKind::Add:
      if (!xRows(&e.x).isOk() || !yRows(&e.y).isOk() || !outRows(&e.out).isOk()) return s;
      break;
    case OpKind::Argmax:
      if (rows > 0 && cols < 1) return range(op, "cols must be >= 1 (an argmax of an empty row is undefined)");
      if (!xRows(&e.x).isOk()) return s;
      e.idsOut = rows;
      break;
  }
  if (extents) *extents = e;
  return Status::ok();
}

Status checkOp(const OpDesc& op, const OpBuffers& buf) {
  OpExtents e;
  Status s = checkOpDesc(op, &e);
  if (!s.isOk()) return s;
  struct Need {
    const char* name;
    int64_t extent;
    const void* ptr;
    bool optional;
  };
  const Need needs[] = {
      {"x", e.x, buf.x, false},           {"y", e.y, buf.y, false},
      {"out", e.out, buf.out, false},     {"weight", e.weight, buf.weight, false},
      {"bias", e.bias, buf.bias, e.biasOptional}, {"kCache", e.kCache, buf.kCache, false},
      {"vCache", e.vCache, buf.vCache, false},    {"ids", e.ids, buf.ids, false},
      {"positions", e.positions, buf.positions, false}, {"slotIndex", e.slotIndex, buf.slotIndex, false},
      {"past", e.past, buf.past, false},  {"idsOut", e.idsOut, buf.idsOut, false},
  };
  // An operand is needed when the op touches it: any row at all (a zero-width row still reads weights
  // of nothing, so only the extent counts).
  for (const Need& n : needs) {
    if (n.extent > 0 && !n.ptr && !n.optional) return bad(op, std::string(n.name) + " is missing");
  }
  if (op.kind == OpKind::Embedding) {
    for (int64_t r = 0; r < op.rows; r++) {
      if (buf.ids[r] < 0 || buf.ids[r] >= op.vocab) {
        return range(op, "ids[" + str(r) + "] = " + str(buf.ids[r]) + " is outside the table's [0, " + str(op.vocab) + ")");
      }
    }
  }
  if (op.kind == OpKind::Rope && op.cols > 0) {
    for (int64_t r = 0; r < op.rows; r++) {
      if (buf.positions[r] < 0 || buf.positions[r] >= op.ropePositions) {
        return range(op, "positions[" + str(r) + "] = " + str(buf.positions[r]) + " is outside the tables' [0, " + str(op.ropePositions) + ")");
      }
    }
  }
  if ((op.kind == OpKind::KvStore || op.kind == OpKind::Attention) && op.rows > 0) {
    for (int32_t b = 0; b < op.batch; b++) {
      const int32_t slot = buf.slotIndex[b], past = buf.past[b];
      if (slot < 0 || slot >= op.slots) {
        return range(op, "slotIndex[" + str(b) + "] = " + str(slot) + " is outside the cache's [0, " + str(op.slots) + ")");
      }
      if (past < 0 || int64_t(past) + op.tokens > op.capacity) {
        return range(op, "sequence " + str(b) + ": past = " + str(past) + " plus " + str(op.tokens) +
                             " new positions exceed the cache capacity of " + str(op.capacity));
      }
    }
    if (op.kind == OpKind::KvStore) {
      // Two sequences writing one slot would race for the same positions.
      std::vector<int32_t> sorted(buf.slotIndex, buf.slotIndex + op.batch);
      std::sort(sorted.begin(), sorted.end());
      auto dup = std::adjacent_find(sorted.begin(), sorted.end());
      if (dup != sorted.end()) return range(op, "slot " + str(*dup) + " is given to two sequences of the batch");
    }
  }
  return Status::ok();
}

}  // namespace gemmkit
