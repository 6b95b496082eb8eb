// What every backend and addon checks of an op (ops.h) before anything runs, in one place: the scalar
// fields (extents, strides, dtypes, head counts), the elements each memory operand spans (the addons
// compare them with the buffers they were given), and every index read from the host int arrays
// (ids < vocab, positions < ropePositions, slot < slots, past + tokens <= capacity).
#pragma once

#include <cstdint>

#include "ops.h"
#include "status.h"

namespace gemmkit {

const char* opKindName(OpKind kind);  // "rmsNorm", "attention", ...; "?" for a number that is no OpKind
bool isOpKind(int32_t kind);

// The elements (of the operand's dtype) each operand of an op spans from its first element; -1 for an
// operand the op does not use. Host int arrays count int32 elements.
struct OpExtents {
  int64_t x = -1, y = -1, out = -1, weight = -1, bias = -1, kCache = -1, vCache = -1;
  int64_t ids = -1, positions = -1, slotIndex = -1, past = -1, idsOut = -1;
  bool biasOptional = false;  // LayerNorm: bias may be absent
  DType dtypeWeight = DType::F32;  // of weight and bias: the norms' dtypeWeight; f32 for Rope's tables
};

// Rows of `cols` elements with row stride ld: the last element's index plus one (0 when empty).
inline int64_t stridedExtent(int64_t rows, int64_t ld, int64_t cols) {
  return rows <= 0 || cols <= 0 ? 0 : (rows - 1) * ld + cols;
}

// Ok when the scalar fields describe a valid op of its kind (then *extents says what each operand
// spans); InvalidArgument / OutOfRange naming the field otherwise.
Status checkOpDesc(const OpDesc& op, OpExtents* extents);

// checkOpDesc, then: every pointer the op needs is present (for a non-empty extent) and every index the
// op reads from the host arrays is in range (and KvStore's slots distinct). What a backend's runOp()
// calls first; OutOfRange naming the index otherwise.
Status checkOp(const OpDesc& op, const OpBuffers& buf);

}  // namespace gemmkit
