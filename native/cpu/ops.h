// The ops beyond GEMM (core/ops.h) on the CPU: one implementation (ops_kernels.h) compiled for plain C++,
// AVX2 + FMA and AVX-512, the widest this CPU runs picked at run time, multithreaded on the ThreadPool.
#pragma once

#include <vector>

#include "../core/ops.h"
#include "../core/status.h"
#include "micro_kernels.h"

namespace gemmkit {

// The instruction sets the ops have code paths for that this CPU runs, the widest first.
std::vector<Isa> cpuOpIsas();

// Checks op (checkOp) and runs it on the widest path.
Status runCpuOp(const OpDesc& op, const OpBuffers& buf);

// The same on a given path (the check driver runs every one); Unsupported when this CPU cannot run it.
Status runCpuOpOn(Isa isa, const OpDesc& op, const OpBuffers& buf);

// The per-ISA entry points (ops_avx2.cpp, ops_avx512.cpp) for a checked op; false where the file was not
// compiled for this architecture.
bool runOpAvx2(const OpDesc& op, const OpBuffers& buf);
bool runOpAvx512(const OpDesc& op, const OpBuffers& buf);

}  // namespace gemmkit
