// The wrappers of amd_intrinsics.cuh on the CPU emulator (GEMMKIT_EMU_HIP): the same names and
// contracts, each one call into the emulator, whose layouts come from AMD's matrix instruction
// documentation (see emu_instructions.cpp), not from the kernels.
#pragma once

#include <cstdint>

#include "../core/dtype.h"
#include "emu_api.h"

namespace gemmkit {

// The 16 f32 accumulators one lane holds of a 32x32 MFMA tile (a clang vector type on the device).
struct MfmaAccumulator {
  float v[16];
  float& operator[](int i) { return v[i]; }
  const float& operator[](int i) const { return v[i]; }
};

// Wrapper: v_mfma_f32_32x32x8_bf16 (gfx942; gfx90a's v_mfma_f32_32x32x8bf16_1k) or
// v_mfma_f32_32x32x8f16 over one wave64, acc += A * B.
template <DType T>
__forceinline__ void mfma32x32x8(MfmaAccumulator& acc, const uint2& a, const uint2& b) {
  static_assert(T == DType::BF16 || T == DType::F16, "matrix cores take f16 or bf16");
  emu::mfma32x32x8(acc.v, a.x, a.y, b.x, b.y, T == DType::BF16);
}

}  // namespace gemmkit
