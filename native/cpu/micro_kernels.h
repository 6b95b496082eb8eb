// The table of register-blocked micro-kernels compiled into this binary. Each ISA file adds its own
// entries (one call in micro_kernels.cpp); a kernel runs only where cpuFeatures() has its ISA.
//
// Contract of every f32 micro-kernel (packed operands produced by pack.h):
//   Ap: [kc][MR] floats (one MR-row sliver of op(A), zero padded past the edge)
//   Bp: [kc][NR] floats (one NR-column sliver of op(B), zero padded past the edge)
//   C:  the top-left of an mr x nr tile (mr <= MR, nr <= NR) with row stride ldc
//   C = alpha * Ap*Bp + beta * C on that tile; beta == 0 means C is not read (it may hold NaN).
// The kernel handles its own edges (mr < MR, nr < NR) and never touches C outside the tile.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gemmkit {

enum class Isa { Scalar, Avx2, Avx512 };

const char* isaName(Isa isa);
bool isaAvailable(Isa isa);  // on this CPU, now

using MicroKernelF32 = void (*)(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                                int mr, int nr, float alpha, float beta);

struct MicroKernel {
  std::string id;       // canonical part of config names: "<isa>.f32.<MR>x<NR>", e.g. "avx512.f32.14x32"
  Isa isa;
  int mr, nr;           // register block
  MicroKernelF32 run;
};

const std::vector<MicroKernel>& microKernels();                 // every kernel compiled in
const MicroKernel* findMicroKernel(const std::string& id);      // nullptr when unknown

// Per-ISA registration, defined in kernel_<isa>.cpp (the x86 ones add nothing on other architectures).
void addScalarKernels(std::vector<MicroKernel>& out);
void addAvx2Kernels(std::vector<MicroKernel>& out);
void addAvx512Kernels(std::vector<MicroKernel>& out);

}  // namespace gemmkit
