// The wrappers of nv_intrinsics.cuh on the CPU emulator (GEMMKIT_EMU_CUDA): the same names and
// contracts, each one call into the emulator, whose layouts come from the PTX ISA (see
// emu_instructions.cpp), not from the kernels.
#pragma once

#include <cstdint>

#include "../core/dtype.h"
#include "emu_api.h"

namespace gemmkit {

// Wrapper: cp.async.cg.shared.global 16 bytes, `srcBytes` (0..16) read, the rest zero-filled.
__forceinline__ void cpAsync16(void* smem, const void* gmem, int srcBytes) { emu::cpAsync16(smem, gmem, srcBytes); }

// Wrapper: cp.async.commit_group.
__forceinline__ void cpAsyncCommit() { emu::cpAsyncCommit(); }

// Wrapper: cp.async.wait_group PENDING.
template <int PENDING>
__forceinline__ void cpAsyncWait() {
  emu::cpAsyncWait(PENDING);
}

// Wrapper: ldmatrix.sync.aligned.m8n8.x4.shared.b16.
__forceinline__ void ldmatrixX4(uint32_t r[4], const void* smemRow) { emu::ldmatrixX4(r, smemRow, false); }

// Wrapper: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16.
__forceinline__ void ldmatrixX4Trans(uint32_t r[4], const void* smemRow) { emu::ldmatrixX4(r, smemRow, true); }

// Wrapper: mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32, d += A * B.
template <DType T>
__forceinline__ void mmaM16N8K16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  static_assert(T == DType::BF16 || T == DType::F16, "tensor cores take f16 or bf16");
  emu::mmaM16N8K16(d, a, b, T == DType::BF16);
}

}  // namespace gemmkit
