// The table of register-blocked micro-kernels compiled into this binary. Each ISA file adds its own
// entries (one call in micro_kernels.cpp); a kernel runs only where isaAvailable() says its ISA is usable.
//
// Contract of every micro-kernel (packed operands produced by pack.h in the kernel's panel formats):
//   Ap: one MR-row sliver of op(A) in aFormat, Bp: one NR-column sliver of op(B) in bFormat, both
//       covering depth kb and zero padded past the edges (rows >= mr, columns >= nr, depth >= kb).
//   C:  the top-left of an mr x nr tile (mr <= MR, nr <= NR) with row stride ldc
//   C = alpha * Ap*Bp + beta * C on that tile; beta == 0 means C is not read (it may hold NaN).
// The kernel handles its own edges (mr < MR runs a kernel specialised for mr rows; nr < NR masks) and
// never touches C outside the tile. Every C element is accumulated in the same order whatever mr, nr,
// the tile position or the thread, so results never depend on how C was split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/dtype.h"

namespace gemmkit {

enum class Isa {
  Scalar,
  Avx2,        // AVX2 + FMA
  Avx512,      // AVX-512 F/BW/VL/DQ
  Avx512Bf16,  // AVX-512 + VDPBF16PS
  Amx,         // AMX-TILE + AMX-BF16, usable once the kernel granted tile-data permission
  AmxEmulated  // the AMX kernel's logic on emulated tiles (plain C++); offered only when asked for
};

const char* isaName(Isa isa);
bool isaAvailable(Isa isa);  // on this CPU, now (for Amx: permission requested and granted)
// Why isaAvailable(isa) is false, for error messages ("" when it is available).
std::string isaUnavailableReason(Isa isa);

// How a packed sliver stores its elements (R = MR for A slivers, NR for B slivers; depth kb padded to
// the kernel's kAlign):
enum class PanelFormat {
  F32,       // [kb][R] f32: element (l, r) at l*R + r. Any input dtype, converted while packing.
  Bf16Pairs, // [kb/2][R][2] bf16: element (l, r) at (l/2)*2R + 2r + l%2 (the VNNI pair layout).
  Bf16K32,   // [kb/32][R][32] bf16: element (l, r) at (l/32)*32R + 32r + l%32 (AMX A tiles: rows of 32 k).
};

inline int panelElementSize(PanelFormat f) { return f == PanelFormat::F32 ? 4 : 2; }
// Formats holding bf16 need bf16 inputs: converting f32/f16 to bf16 would lose precision.
inline bool panelAccepts(PanelFormat f, DType t) { return f == PanelFormat::F32 || t == DType::BF16; }

using MicroKernelFn = void (*)(int64_t kb, const void* Ap, const void* Bp, float* C, int64_t ldc, int mr, int nr,
                               float alpha, float beta);

struct MicroKernel {
  std::string id;  // canonical part of config names: "<isa>.<panel dtype>.<MR>x<NR>", e.g. "avx512.f32.14x32"
  Isa isa;
  int mr, nr;      // register block
  PanelFormat aFormat, bFormat;
  int kAlign;      // packed depth is padded to a multiple of this; kc must be a multiple of it
  MicroKernelFn run;
  // The depth of the packed slivers for depth kb: kb rounded up to kAlign.
  int64_t paddedK(int64_t kb) const { return (kb + kAlign - 1) / kAlign * kAlign; }
};

const std::vector<MicroKernel>& microKernels();                 // every kernel compiled in
const MicroKernel* findMicroKernel(const std::string& id);      // nullptr when unknown

// Per-ISA registration, defined in kernel_<isa>.cpp (the x86 ones add nothing on other architectures).
void addScalarKernels(std::vector<MicroKernel>& out);
void addAvx2Kernels(std::vector<MicroKernel>& out);
void addAvx512Kernels(std::vector<MicroKernel>& out);
void addAvx512Bf16Kernels(std::vector<MicroKernel>& out);
void addAmxKernels(std::vector<MicroKernel>& out);

}  // namespace gemmkit
