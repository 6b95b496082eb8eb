// Wrappers for the AMD-only instructions of the matrix-core kernels (CDNA2 gfx90a, CDNA3 gfx942): the
// MFMA 32x32x8 builtins for bf16 and f16. One builtin per wrapper and nothing else, so the CPU
// emulator replaces exactly this file (native/emu/amd_intrinsics_emu.h).
#pragma once

#if defined(GEMMKIT_EMU)
#include "../emu/amd_intrinsics_emu.h"
#else

#include <cstdint>

#include "../core/dtype.h"

namespace gemmkit {

// The 16 f32 accumulators one lane holds of a 32x32 MFMA tile.
typedef float MfmaAccumulator __attribute__((ext_vector_type(16)));

// Wrapper: acc += A(32x8) * B(8x32), f32 accumulate, over one wave64. `a` holds 4 16-bit elements
// A[l % 32][4 * (l / 32) + 0..3] of lane l, `b` holds B[4 * (l / 32) + 0..3][l % 32]; lane l's
// acc[i] is D[8 * (i / 4) + 4 * (l / 32) + i % 4][l % 32].
template <DType T>
__device__ __forceinline__ void mfma32x32x8(MfmaAccumulator& acc, const uint2& a, const uint2& b) {
  static_assert(T == DType::BF16 || T == DType::F16, "matrix cores take f16 or bf16");
  typedef uint32_t U32x2 __attribute__((ext_vector_type(2)));
  const U32x2 a2 = {a.x, a.y}, b2 = {b.x, b.y};
  if constexpr (T == DType::BF16) {
    typedef short Bf16x4 __attribute__((ext_vector_type(4)));
    acc = __builtin_amdgcn_mfma_f32_32x32x8bf16_1k(__builtin_bit_cast(Bf16x4, a2), __builtin_bit_cast(Bf16x4, b2), acc, 0, 0, 0);
  } else {
    typedef _Float16 F16x4 __attribute__((ext_vector_type(4)));
    acc = __builtin_amdgcn_mfma_f32_32x32x8f16(__builtin_bit_cast(F16x4, a2), __builtin_bit_cast(F16x4, b2), acc, 0, 0, 0);
  }
}

}  // namespace gemmkit

#endif  // GEMMKIT_EMU
