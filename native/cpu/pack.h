// Packing of op(A) and op(B) into the sliver layout the f32 micro-kernels read (see micro_kernels.h).
// Packing converts f16/bf16 to f32 and applies the transpose on the way, so every dtype and transpose
// combination reaches the same kernels.
#pragma once

#include <cstdint>

#include "../core/problem.h"

namespace gemmkit {

// A: one batch item of stored A. Packs op(A)[i0:i0+mb, p0:p0+kb] as ceil(mb/mr) slivers of [kb][mr].
void packA(const Problem& p, const void* a, int64_t i0, int64_t mb, int64_t p0, int64_t kb, int mr, float* Ap);

// B: one batch item of stored B. Packs op(B)[p0:p0+kb, j0:j0+nb] as ceil(nb/nr) slivers of [kb][nr].
void packB(const Problem& p, const void* b, int64_t p0, int64_t kb, int64_t j0, int64_t nb, int nr, float* Bp);

}  // namespace gemmkit
