// The warp collectives, computed for every lane once the whole warp has arrived. The lane layouts are
// the vendors' documented ones, written here from the documents (never from our kernels):
//
// NVIDIA, PTX ISA 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type"
// (groupID = laneid >> 2, threadID_in_group = laneid % 4; registers hold elements low to high):
//   A (16x16, .f16/.bf16, a0..a7 in four .f16x2 registers):
//     row = groupID for ai with 0 <= i < 2 || 4 <= i < 6, groupID + 8 otherwise
//     col = threadID_in_group * 2 + (i & 1), plus 8 for i >= 4
//   B (16x8, b0..b3 in two .f16x2 registers):
//     row = threadID_in_group * 2 + (i & 1), plus 8 for i >= 2;  col = groupID
//   C, D (16x8, .f32 c0..c3):
//     row = groupID for i < 2, groupID + 8 otherwise;  col = threadID_in_group * 2 + (i & 1)
// NVIDIA, PTX ISA 9.7.14.5.15 "Warp-level matrix load instruction: ldmatrix" (.m8n8, .x4, .b16):
//   threads 8j..8j+7 give the addresses of rows 0..7 of matrix j (16 bytes each, 16-byte aligned);
//   "each thread in a warp loads fragments of a row, with thread 0 receiving the first fragment":
//   lane l receives in r[j] the elements (l / 4, 2 (l % 4)) and (l / 4, 2 (l % 4) + 1) of matrix j,
//   low half first; with .trans the matrix is read in column-major order, so lane l receives
//   (2 (l % 4), l / 4) and (2 (l % 4) + 1, l / 4).
// AMD, CDNA3 ISA "Matrix fused-multiply-add (MFMA)" operand layouts of v_mfma_f32_32x32x8_bf16 (gfx942;
// v_mfma_f32_32x32x8bf16_1k on gfx90a) and v_mfma_f32_32x32x8f16, as AMD's Matrix Instruction
// Calculator prints them (--register-layout / --matrix-layout, one block):
//   A (32x8): lane l, element e of {v0[15:0], v0[31:16], v1[15:0], v1[31:16]} is A[l % 32][4 (l / 32) + e]
//   B (8x32): lane l, element e is B[4 (l / 32) + e][l % 32]
//   C, D (32x32 f32): lane l, register i is D[8 (i / 4) + 4 (l / 32) + i % 4][l % 32]
//
// Arithmetic: products of f16/bf16 values are exact in double, and each output's dot product is summed
// in double and rounded to f32 once, after adding C. The documents leave the hardware's internal
// rounding unspecified, so the last bits of real results may differ (only hardware can show that).
#include <cstring>

#include "../core/dtype.h"
#include "emu_internal.h"

namespace gemmkit {
namespace emu {

namespace {

float halfToFloat(uint16_t h, bool bf16) { return bf16 ? bf16ToF32(h) : f16ToF32(h); }

// Element `e` (0 low, 1 high) of a register holding two 16-bit values.
uint16_t half(uint32_t r, int e) { return uint16_t(e == 0 ? r & 0xffffu : r >> 16); }

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float floatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void shuffle(Block& b, int warpIndex, Warp& w) {
  for (int l = 0; l < w.lanes; l++) {
    const int src = l ^ int(w.slots[l].in[1]);
    if (src < 0 || src >= w.lanes) {
      failThread(kErrorKernelFault, warpIndex * b.warpSize + l,
                 "shfl.xor with lane mask " + std::to_string(w.slots[l].in[1]) + " reads lane " + std::to_string(src) + ", outside the warp's " +
                     std::to_string(w.lanes) + " lanes");
    }
  }
  for (int l = 0; l < w.lanes; l++) w.slots[l].out[0] = w.slots[l ^ int(w.slots[l].in[1])].in[0];
}

void ldmatrix(Block& b, int warpIndex, Warp& w, bool trans, const void* pc) {
  if (w.lanes != 32) failThread(kErrorKernelFault, warpIndex * b.warpSize, "ldmatrix needs a full warp of 32 lanes");
  Worker& worker = *tlsFiber->worker;
  uint16_t rows[4][8][8];  // [matrix][row][column]
  for (int l = 0; l < 32; l++) {
    const int tid = warpIndex * b.warpSize + l;
    size_t off;
    if (!sharedOffset(worker, reinterpret_cast<const void*>(w.slots[l].address), &off)) {
      failThread(kErrorKernelFault, tid, "ldmatrix row address is not in the block's shared memory");
    }
    if (off % 16 != 0) failThread(kErrorKernelFault, tid, "ldmatrix row address (shared offset " + std::to_string(off) + ") is not 16-byte aligned");
    checkSharedAccess(b, worker.shadow.data(), tid, off, 16, false, pc);
    std::memcpy(rows[l / 8][l % 8], b.shared + off, 16);
  }
  for (int l = 0; l < 32; l++) {
    for (int j = 0; j < 4; j++) {
      uint16_t lo, hi;
      if (!trans) {
        lo = rows[j][l / 4][2 * (l % 4)];
        hi = rows[j][l / 4][2 * (l % 4) + 1];
      } else {
        lo = rows[j][2 * (l % 4)][l / 4];
        hi = rows[j][2 * (l % 4) + 1][l / 4];
      }
      w.slots[l].out[j] = uint32_t(lo) | (uint32_t(hi) << 16);
    }
  }
}

void mma(Block& b, int warpIndex, Warp& w) {
  if (w.lanes != 32) failThread(kErrorKernelFault, warpIndex * b.warpSize, "mma.sync needs a full warp of 32 lanes");
  const bool bf16 = w.slots[0].in[10] != 0;
  double A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; l++) {
    const LaneSlot& s = w.slots[l];
    const int group = l >> 2, inGroup = l % 4;
    for (int i = 0; i < 8; i++) {  // a0..a7: register i / 2, half i % 2
      const int row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
      const int col = inGroup * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      A[row][col] = halfToFloat(half(s.in[i / 2], i % 2), bf16);
    }
    for (int i = 0; i < 4; i++) {  // b0..b3
      const int row = inGroup * 2 + (i & 1) + (i >= 2 ? 8 : 0);
      B[row][group] = halfToFloat(half(s.in[4 + i / 2], i % 2), bf16);
    }
    for (int i = 0; i < 4; i++) {  // c0..c3
      C[i < 2 ? group : group + 8][inGroup * 2 + (i & 1)] = floatOf(s.in[6 + i]);
    }
  }
  for (int l = 0; l < 32; l++) {
    const int group = l >> 2, inGroup = l % 4;
    for (int i = 0; i < 4; i++) {
      const int row = i < 2 ? group : group + 8, col = inGroup * 2 + (i & 1);
      double sum = 0.0;
      for (int k = 0; k < 16; k++) sum += A[row][k] * B[k][col];
      w.slots[l].out[i] = bitsOf(float(sum + C[row][col]));
    }
  }
}

void mfma(Block& b, int warpIndex, Warp& w) {
  if (w.lanes != 64) failThread(kErrorKernelFault, warpIndex * b.warpSize, "MFMA needs a full wave of 64 lanes");
  const bool bf16 = w.slots[0].in[4] != 0;
  double A[32][8], B[8][32], C[32][32];  // 12 KiB on the calling fiber's stack
  for (int l = 0; l < 64; l++) {
    const LaneSlot& s = w.slots[l];
    for (int e = 0; e < 4; e++) {
      A[l % 32][4 * (l / 32) + e] = halfToFloat(half(s.in[e / 2], e % 2), bf16);
      B[4 * (l / 32) + e][l % 32] = halfToFloat(half(s.in[2 + e / 2], e % 2), bf16);
    }
    for (int i = 0; i < 16; i++) C[8 * (i / 4) + 4 * (l / 32) + i % 4][l % 32] = floatOf(s.in[5 + i]);
  }
  for (int l = 0; l < 64; l++) {
    for (int i = 0; i < 16; i++) {
      const int row = 8 * (i / 4) + 4 * (l / 32) + i % 4, col = l % 32;
      double sum = 0.0;
      for (int k = 0; k < 8; k++) sum += A[row][k] * B[k][col];
      w.slots[l].out[i] = bitsOf(float(sum + C[row][col]));
    }
  }
}

}  // namespace

void computeCollective(Block& b, int warpIndex, Warp& w, const void* pc) {
  switch (w.kind) {
    case Collective::Shuffle: shuffle(b, warpIndex, w); break;
    case Collective::Ldmatrix: ldmatrix(b, warpIndex, w, false, pc); break;
    case Collective::LdmatrixTrans: ldmatrix(b, warpIndex, w, true, pc); break;
    case Collective::Mma: mma(b, warpIndex, w); break;
    case Collective::Mfma: mfma(b, warpIndex, w); break;
    case Collective::None: break;
  }
}

}  // namespace emu
}  // namespace gemmkit
