// The CPU kernel configuration (DESIGN.md seam 3): the tuner's search space, the persisted record and
// what the frame runs. Two kernel families, each with its canonical name:
//   blocked GEMM (gemm_frame.h):       cpu.<kernel id>.mc<MC>.kc<KC>.nc<NC>.t<threads>
//                                      e.g. cpu.avx512.f32.14x32.mc168.kc384.nc4096.t2
//   weight-streaming GEMV (gemv.h):    cpu.gemv.<isa>.kc<KC>.ks<K splits>.t<threads>
//                                      e.g. cpu.gemv.avx512.kc1024.ks1.t2
// A prepacked weight fixes the blocked kernel and kc (Problem::packedB); the name is the same as for the
// unpacked call, which gives bit-identical results.
#pragma once

#include <string>

#include "../core/status.h"

namespace gemmkit {

struct CpuConfig {
  std::string kernel;  // micro-kernel id from micro_kernels.h, e.g. "avx512.f32.14x32"
  int mc = 0;          // rows of op(A) packed per block, a multiple of MR; sized so the A block stays in L2
  int kc = 0;          // depth of a packed block; sized so one B sliver (kc x NR) stays in L1. GEMV: the depth
                       // block of the kernels (a multiple of 32; see gemvDepthBlock)
  int nc = 0;          // columns of op(B) packed per block, a multiple of NR; sized for the L3 cache
  int threads = 1;     // compute threads asked of the pool (the pool may grant fewer under load)
  int ks = 1;          // GEMV only: K is split into this many parts summed in a fixed order (so results do
                       // not depend on the threads granted); 1 for the blocked family
  bool isGemv() const { return kernel.compare(0, 5, "gemv.") == 0; }

  std::string name() const;
  // Fields in range and consistent with the kernel's register block; the kernel may still be one this
  // CPU cannot run (see CpuBackend::supports).
  Status valid() const;
  // Parses a canonical name; on failure returns a status that says which part is wrong.
  static Status parse(const std::string& name, CpuConfig* out);
};

}  // namespace gemmkit
