// The slow, obviously correct GEMM every kernel is held to: float64 accumulation, the full epilogue,
// output rounded to C's dtype from f32 exactly as the kernels round it (f32ToBf16 / f32ToF16).
#pragma once

#include "problem.h"

namespace gemmkit {

// Writes C exactly as the problem says (rounded to dtypeC). When `c64` is not null, also stores the
// unrounded float64 result there ([batch, m, n] dense), so callers can measure a kernel's error.
// When `scale64` is not null, stores there ([batch, m, n] dense) the root-sum-square of the terms that
// were added, sqrt(sum_l (alpha a_il b_lj)^2 + (beta c_ij)^2 + bias_j^2): the magnitude that rounding
// errors of a correct f32 accumulation scale with when the terms have random signs (the tuner's check).
void referenceGemm(const Problem& p, const Buffers& buf, double* c64 = nullptr, double* scale64 = nullptr);

// Largest |got - want| / (1 + |want|) over C, with got read from `c` in dtypeC and want from `c64`.
double relativeError(const Problem& p, const void* c, const double* c64);

}  // namespace gemmkit
