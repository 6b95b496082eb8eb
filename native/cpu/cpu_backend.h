// The CPU backend: candidates, heuristic and execution of the blocked frame behind the Backend seam.
#pragma once

#include "../core/backend.h"
#include "cpu_config.h"

namespace gemmkit {

// The configuration used when nothing is tuned: the widest ISA this CPU has, cache blocks from the
// kernel's register block, one thread for problems too small to be worth splitting.
CpuConfig cpuHeuristic(const Problem& p);

void registerCpuBackend();

}  // namespace gemmkit
