// The Goto/BLIS blocked frame: for each NC block of op(B), each KC block of depth, pack B once; for
// each MC block of op(A), pack A; then sweep the micro-kernel over MR x NR tiles. Threads split C into
// rectangles over M and N (and batch items), each computed start to finish by one task, so results are
// bit-identical whatever the thread count.
#pragma once

#include "../core/problem.h"
#include "cpu_config.h"
#include "micro_kernels.h"

namespace gemmkit {

// Runs p with the given config. The config must be valid and its kernel available (the caller checks).
// When p.packedB is set, buf.b is a PackedWeight packed for this kernel and cfg.kc; or, for inputs its own
// kernel cannot multiply (a bf16 panel, f32/f16 inputs), for another kernel while this one reads F32 slivers,
// and then its blocks are widened as they are packed (the caller checks).
Status runCpuGemm(const Problem& p, const CpuConfig& cfg, const MicroKernel& kernel, const Buffers& buf);

// How C is split over tasks: tm x tn rectangles per batch item. Exposed for tests and the heuristic.
struct TaskGrid {
  int tm = 1, tn = 1;
};
TaskGrid chooseTaskGrid(int64_t m, int64_t n, int mr, int nr, int threads);

}  // namespace gemmkit
