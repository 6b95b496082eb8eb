// Wrappers for the NVIDIA-only instructions of the tensor-core kernels (sm_80+): cp.async copies,
// ldmatrix fragment loads and mma.sync m16n8k16. Each is one inline PTX statement and nothing else,
// so the CPU emulator replaces exactly this file (native/emu/nv_intrinsics_emu.h). Shared-memory
// arguments are generic pointers; the wrappers convert them to the shared window themselves.
#pragma once

#if defined(GEMMKIT_EMU)
#include "../emu/nv_intrinsics_emu.h"
#else

#include <cstdint>

#include "../core/dtype.h"

namespace gemmkit {

__device__ __forceinline__ uint32_t sharedWindowAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Wrapper: asynchronous 16-byte copy global -> shared that reads `srcBytes` (0..16) bytes and fills
// the rest of the 16 with zeros. `gmem` must be 16-byte aligned even when fewer bytes are read.
__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem, int srcBytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sharedWindowAddress(smem)), "l"(gmem), "r"(srcBytes)
               : "memory");
}

// Wrapper: closes the group of cp.async copies issued by this thread since the last commit.
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Wrapper: waits until at most `PENDING` of this thread's committed groups are still in flight.
template <int PENDING>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}

// Wrapper: four 8x8 matrices of 16-bit elements from shared memory. Lane l gives the address of row
// l % 8 of matrix l / 8; lane l receives, in r[j], elements (l / 4, 2 * (l % 4) + {0, 1}) of matrix j.
__device__ __forceinline__ void ldmatrixX4(uint32_t r[4], const void* smemRow) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(sharedWindowAddress(smemRow)));
}

// Wrapper: as ldmatrixX4 but each matrix transposed: lane l receives elements (2 * (l % 4) + {0, 1},
// l / 4) of matrix j, i.e. the fragment of a matrix stored with the other dimension contiguous.
__device__ __forceinline__ void ldmatrixX4Trans(uint32_t r[4], const void* smemRow) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(sharedWindowAddress(smemRow)));
}

// Wrapper: d += A(16x16, row-major fragment a[4]) * B(16x8, column fragment b[2]), f32 accumulate.
// Fragments (g = lane / 4, t = lane % 4): a[0] A[g][2t..], a[1] A[g+8][2t..], a[2] A[g][2t+8..],
// a[3] A[g+8][2t+8..]; b[0] B[2t..][g], b[1] B[2t+8..][g]; d[0..1] D[g][2t..], d[2..3] D[g+8][2t..].
template <DType T>
__device__ __forceinline__ void mmaM16N8K16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  static_assert(T == DType::BF16 || T == DType::F16, "tensor cores take f16 or bf16");
  if constexpr (T == DType::BF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

}  // namespace gemmkit

#endif  // GEMMKIT_EMU
