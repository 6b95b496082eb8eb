// The slow, obviously correct version of every op in ops.h that the CPU and GPU implementations are
// held to: float64 arithmetic from the same stored inputs, one rounding to the output dtype at the end.
#pragma once

#include <vector>

#include "ops.h"
#include "status.h"

namespace gemmkit {

// Runs `op` on `buf` (host memory) as the op says: writes out (rounded to dtypeOut), the cache (KvStore),
// x in place (Rope) or idsOut (Argmax), after checkOp(). When out64 is not null it receives the unrounded
// float64 results as [rows, cols] dense (Rope: the rotated x; KvStore: the stored rows; Argmax: the
// chosen ids), so callers can measure an implementation's error.
Status referenceOp(const OpDesc& op, const OpBuffers& buf, std::vector<double>* out64 = nullptr);

}  // namespace gemmkit
