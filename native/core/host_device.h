// GEMMKIT_HD marks the small scalar helpers (dtype conversions, activations) that GPU kernels call as
// well as the CPU engine, so both round and activate with exactly the same code. Empty for plain C++.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GEMMKIT_HD __host__ __device__
#else
#define GEMMKIT_HD
#endif
