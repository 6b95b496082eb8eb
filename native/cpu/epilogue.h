// The finalize step of every CPU path: what the micro-kernels leave out of C = act(alpha*AB + beta*C +
// bias). For f32 outputs the accumulator is C itself and only bias/activation remain; for f16/bf16 outputs
// the f32 accumulator is scratch and finalize adds beta*C, bias, applies the activation and rounds once to
// nearest even, bit for bit as f32ToBf16 / f32ToF16 (the check driver compares every path with them).
// Vectorised with AVX-512 (bias, relu, rounding, and gelu/silu through vector exp/erf approximations
// accurate to a few f32 ulps); other CPUs use the scalar loop.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/problem.h"

namespace gemmkit {

// The bias of p (bias: [n] of p.dtypeBias) as [n] f32, converted once per call; empty when p has none.
std::vector<float> biasAsF32(const Problem& p, const void* bias);

// acc: [m1-m0, nb] f32 accumulator (row stride ldacc) for rows [m0, m1) and columns [jc, jc+nb) of C.
// bias: [n] f32 or null.
void finalizeRows(const Problem& p, const float* acc, int64_t ldacc, void* c, const float* bias, int64_t m0,
                  int64_t m1, int64_t jc, int64_t nb);

// The scalar implementation, kept for CPUs without AVX-512 and as the reference for the vector one.
void finalizeRowsPortable(const Problem& p, const float* acc, int64_t ldacc, void* c, const float* bias, int64_t m0,
                          int64_t m1, int64_t jc, int64_t nb);

// Row `row` of n f32 values rounded to dtype t into out (elements [0, n)). Exposed for the rounding tests.
void storeRowFromF32(DType t, const float* row, int64_t n, void* out);

}  // namespace gemmkit
