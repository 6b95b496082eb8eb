// The CPU backend: candidates, heuristic and execution of the blocked frame behind the Backend seam.
#pragma once

#include "../core/backend.h"
#include "cpu_config.h"

namespace gemmkit {

// The configuration used when nothing is tuned: the widest ISA this CPU has, cache blocks from the
// kernel's register block, one thread for problems too small to be worth splitting.
// Small M streams the weight through the GEMV family (x @ W^T up to the dot kernel's defaultMaxMTransB,
// W stored [K, N] up to kGemvMaxM); a prepacked B runs the blocked kernel and kc it was packed for.
CpuConfig cpuHeuristic(const Problem& p);

// The kernel and kc a weight is prepacked for when the caller does not say: the blocked kernel the
// heuristic would use for this problem's dtypes (p.m is irrelevant).
CpuConfig cpuDefaultPackedConfig(const Problem& p);

void registerCpuBackend();

}  // namespace gemmkit
