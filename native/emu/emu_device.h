// The CUDA / HIP dialect of the kernels as plain C++ for the CPU emulator: device_common.cuh includes
// this instead of the vendor headers when GEMMKIT_EMU_CUDA or GEMMKIT_EMU_HIP is defined. It gives
// the kernels what the vendor compilers give them (qualifiers, built-in index variables, vector types,
// __syncthreads, the launch) on top of the emulator (emu_api.h). The device-only instructions are
// replaced one wrapper at a time in nv_intrinsics_emu.h and amd_intrinsics_emu.h.
#pragma once

#if defined(GEMMKIT_EMU_CUDA) && defined(GEMMKIT_EMU_HIP)
#error "an emulated build is either GEMMKIT_EMU_CUDA or GEMMKIT_EMU_HIP"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>

#include "emu_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Shared memory goes through GEMMKIT_SHARED_ARRAY / GEMMKIT_DYNAMIC_SHARED (device_common.cuh), so
// the emulator knows each block's arrays; a bare __shared__ fails to compile with this name.
#define __shared__ GEMMKIT_EMU_declare_shared_memory_with_GEMMKIT_SHARED_ARRAY_or_GEMMKIT_DYNAMIC_SHARED

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};

inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}

namespace gemmkit {
namespace emu {

inline uint3 toUint3(Dim3 d) { return uint3{d.x, d.y, d.z}; }
inline dim3 toDim3(Dim3 d) { return dim3(d.x, d.y, d.z); }

// The kernel's by-value parameters are read from the launch's copy by this (uninstrumented) call, as
// a GPU reads them from its parameter space; the kernel itself then sees them on its own stack.
template <class... P, size_t... I>
__attribute__((no_sanitize("thread"))) void invokeWith(void (*kernel)(P...), const std::tuple<P...>& params,
                                                      std::index_sequence<I...>) {
  kernel(std::get<I>(params)...);
}

template <class... P>
__attribute__((no_sanitize("thread"))) void invokeKernel(const void* kernel, const void* params) {
  invokeWith(reinterpret_cast<void (*)(P...)>(const_cast<void*>(kernel)), *static_cast<const std::tuple<P...>*>(params),
             std::index_sequence_for<P...>{});
}

// kernel<<<grid, block, dynamicShared, stream>>>(args...): runs every block before it returns; a
// failure is the runtime's last error (cudaGetLastError / hipGetLastError in emulated builds).
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t dynamicSharedBytes, const void* /*stream*/, const std::string& label,
            long long sharedBudget, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "a kernel launch passes every parameter");
  const std::tuple<P...> params(std::forward<A>(args)...);
  LaunchSpec s;
  s.kernel = reinterpret_cast<const void*>(kernel);
  s.invoke = &invokeKernel<P...>;
  s.params = &params;
  s.paramsBytes = sizeof(params);
  s.grid = Dim3{grid.x, grid.y, grid.z};
  s.block = Dim3{block.x, block.y, block.z};
  s.dynamicShared = dynamicSharedBytes;
  s.label = label;
  s.sharedBudget = sharedBudget;
  (void)runLaunch(s);
}

}  // namespace emu
}  // namespace gemmkit

// The built-in variables, read from the running fiber (by value: the emulator's own memory is never
// touched by instrumented kernel code).
#define threadIdx (::gemmkit::emu::toUint3(::gemmkit::emu::threadIndex()))
#define blockIdx (::gemmkit::emu::toUint3(::gemmkit::emu::blockIndex()))
#define blockDim (::gemmkit::emu::toDim3(::gemmkit::emu::blockDimension()))
#define gridDim (::gemmkit::emu::toDim3(::gemmkit::emu::gridDimension()))
#define __syncthreads() ::gemmkit::emu::syncthreads(__FILE__, __LINE__)

#if defined(GEMMKIT_EMU_CUDA)
// The one CUDA runtime call in kernel_tables.cu besides the vendor:: layer.
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline ::gemmkit::emu::Error cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attribute, int value) {
  return attribute == cudaFuncAttributeMaxDynamicSharedMemorySize ? ::gemmkit::emu::setMaxDynamicShared(kernel, value)
                                                                  : ::gemmkit::emu::kErrorInvalidValue;
}
#endif
