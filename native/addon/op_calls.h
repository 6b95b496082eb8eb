// The op call format shared by the addons (the CPU addon here; a GPU addon takes the same scalar fields
// and host int arrays, with { buffer, byteOffset } memory operands): desc mirrors core/ops.h's OpDesc
// field for field (dtypes as 'f32' | 'f16' | 'bf16', kind as the OpKind number, activation as
// 'none' | 'relu' | 'gelu' | 'silu'; an absent field is 0, 'f32' or 'none'), plus the operands.
#pragma once

#include <napi.h>

#include <vector>

#include "../core/op_check.h"
#include "../core/ops.h"
#include "host_memory.h"

namespace gemmkit {

// The scalar fields of desc, checked (checkOpDesc); *extents says what each operand must span. Throws a
// TypeError / RangeError naming the field otherwise.
OpDesc unpackOpDesc(const Napi::Env& env, const Napi::Value& desc, OpExtents* extents);

// The host int arrays of an op (ids, positions, slotIndex, past: Int32Arrays, copied, so the indices
// checked are the ones used even if JS changes the arrays while an async op runs; idsOut: an Int32Array
// the op writes, held in *idsOut for `lifetime` as host_memory.h describes).
struct OpHostArrays {
  std::vector<int32_t> ids, positions, slotIndex, past;
  int32_t* idsOut = nullptr;
  void setPointers(OpBuffers* b) const;  // b's host-array pointers at these copies and at idsOut
};
OpHostArrays unpackOpHostArrays(const Napi::Env& env, const Napi::Object& desc, const OpExtents& extents,
                                HostLifetime lifetime, std::vector<HostOperand>* idsOut);

// Sets exports.opSync and exports.opAsync (CPU addon: typed-array operands).
void exportOpCalls(Napi::Env env, Napi::Object exports);

}  // namespace gemmkit
