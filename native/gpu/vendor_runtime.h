// The GPU runtime API under one set of names, mapped onto CUDA or, when GEMMKIT_HIP is defined (or
// the HIP compiler runs), onto HIP, or, when GEMMKIT_EMU_CUDA / GEMMKIT_EMU_HIP is defined, onto the
// CPU emulator (native/emu). The runtime side (gpu_backend.cpp, gpu_memory.cpp) and the kernel
// launchers are written once against these names; nothing else in the engine includes a vendor header.
#pragma once

#if defined(GEMMKIT_EMU_CUDA) || defined(GEMMKIT_EMU_HIP)
#define GEMMKIT_EMU 1
#elif defined(__HIPCC__) && !defined(GEMMKIT_HIP)
#define GEMMKIT_HIP 1
#endif

#if defined(GEMMKIT_EMU)
#include "../emu/emu_api.h"
#elif defined(GEMMKIT_HIP)
#if !defined(__HIP_PLATFORM_AMD__)
#define __HIP_PLATFORM_AMD__ 1
#endif
#include <hip/hip_runtime_api.h>
#else
#include <cuda_runtime_api.h>
#endif

#include <string>

namespace gemmkit {
namespace vendor {

#if defined(GEMMKIT_EMU)
// The emulated device: launches run when queued, so streams only order what already happened and
// events read the host clock. Its timings are host timings of the emulator, never a GPU's.
#if defined(GEMMKIT_EMU_CUDA)
constexpr const char* kBackendName = "emu-cuda";
constexpr const char* kRuntimeName = "emulated CUDA";
#else
constexpr const char* kBackendName = "emu-hip";
constexpr const char* kRuntimeName = "emulated HIP";
#endif
using Error = emu::Error;
using Stream = emu::StreamState*;
using Event = emu::EventState*;
using DeviceProperties = emu::DeviceProperties;
constexpr Error kSuccess = emu::kSuccess;
constexpr Error kErrorMemoryAllocation = emu::kErrorMemoryAllocation;
inline const char* errorName(Error e) { return emu::errorName(e); }
inline const char* errorString(Error e) { return emu::errorString(e); }
inline Error getLastError() { return emu::getLastError(); }
inline Error getDeviceCount(int* n) { *n = 1; return emu::kSuccess; }
inline Error setDevice(int d) { return d == 0 ? emu::kSuccess : emu::kErrorNoDevice; }
inline Error getDeviceProperties(DeviceProperties* p, int d) {
  if (d != 0) return emu::kErrorNoDevice;
  *p = emu::deviceProperties();
  return emu::kSuccess;
}
inline Error runtimeVersion(int* v) { *v = 1; return emu::kSuccess; }  // the emulator's own version
inline Error driverVersion(int* v) { *v = 0; return emu::kSuccess; }   // no driver
inline Error deviceMalloc(void** p, size_t bytes) { return emu::deviceMalloc(p, bytes); }
inline Error deviceFree(void* p) { return emu::deviceFree(p); }
inline Error memGetInfo(size_t* freeBytes, size_t* totalBytes) { return emu::memGetInfo(freeBytes, totalBytes); }
inline Error memcpyHostToDevice(void* dst, const void* src, size_t n, Stream) { return emu::memcpyHostToDevice(dst, src, n); }
inline Error memcpyDeviceToHost(void* dst, const void* src, size_t n, Stream) { return emu::memcpyDeviceToHost(dst, src, n); }
inline Error memcpyDeviceToDevice(void* dst, const void* src, size_t n, Stream) { return emu::memcpyDeviceToDevice(dst, src, n); }
inline Error memsetAsync(void* dst, int value, size_t n, Stream) { return emu::memset(dst, value, n); }
inline Error streamCreate(Stream* s) { return emu::streamCreate(s); }
inline Error streamSynchronize(Stream) { return emu::kSuccess; }
inline Error eventCreate(Event* e) { return emu::eventCreate(e); }
inline Error eventDestroy(Event e) { return emu::eventDestroy(e); }
inline Error eventRecord(Event e, Stream) { return emu::eventRecord(e); }
inline Error eventSynchronize(Event) { return emu::kSuccess; }
inline Error eventElapsedMs(float* ms, Event start, Event stop) { return emu::eventElapsedMs(ms, start, stop); }
// "sm_90" / "gfx942"
inline std::string deviceArch(const DeviceProperties& p) { return p.arch; }
inline long long sharedMemoryPerBlock(const DeviceProperties& p) { return (long long)p.sharedMemPerBlock; }
#elif defined(GEMMKIT_HIP)
constexpr const char* kBackendName = "hip";
constexpr const char* kRuntimeName = "HIP";
using Error = hipError_t;
using Stream = hipStream_t;
using Event = hipEvent_t;
using DeviceProperties = hipDeviceProp_t;
constexpr Error kSuccess = hipSuccess;
constexpr Error kErrorMemoryAllocation = hipErrorOutOfMemory;
inline const char* errorName(Error e) { return hipGetErrorName(e); }
inline const char* errorString(Error e) { return hipGetErrorString(e); }
inline Error getLastError() { return hipGetLastError(); }
inline Error getDeviceCount(int* n) { return hipGetDeviceCount(n); }
inline Error setDevice(int d) { return hipSetDevice(d); }
inline Error getDeviceProperties(DeviceProperties* p, int d) { return hipGetDeviceProperties(p, d); }
inline Error runtimeVersion(int* v) { return hipRuntimeGetVersion(v); }
inline Error driverVersion(int* v) { return hipDriverGetVersion(v); }
inline Error deviceMalloc(void** p, size_t bytes) { return hipMalloc(p, bytes); }
inline Error deviceFree(void* p) { return hipFree(p); }
inline Error memGetInfo(size_t* freeBytes, size_t* totalBytes) { return hipMemGetInfo(freeBytes, totalBytes); }
inline Error memcpyHostToDevice(void* dst, const void* src, size_t n, Stream s) { return hipMemcpyAsync(dst, src, n, hipMemcpyHostToDevice, s); }
inline Error memcpyDeviceToHost(void* dst, const void* src, size_t n, Stream s) { return hipMemcpyAsync(dst, src, n, hipMemcpyDeviceToHost, s); }
inline Error memcpyDeviceToDevice(void* dst, const void* src, size_t n, Stream s) { return hipMemcpyAsync(dst, src, n, hipMemcpyDeviceToDevice, s); }
inline Error memsetAsync(void* dst, int value, size_t n, Stream s) { return hipMemsetAsync(dst, value, n, s); }
inline Error streamCreate(Stream* s) { return hipStreamCreateWithFlags(s, hipStreamNonBlocking); }
inline Error streamSynchronize(Stream s) { return hipStreamSynchronize(s); }
inline Error eventCreate(Event* e) { return hipEventCreate(e); }
inline Error eventDestroy(Event e) { return hipEventDestroy(e); }
inline Error eventRecord(Event e, Stream s) { return hipEventRecord(e, s); }
inline Error eventSynchronize(Event e) { return hipEventSynchronize(e); }
inline Error eventElapsedMs(float* ms, Event start, Event stop) { return hipEventElapsedTime(ms, start, stop); }
// "gfx942:sramecc+:xnack-"
inline std::string deviceArch(const DeviceProperties& p) { return p.gcnArchName; }
inline long long sharedMemoryPerBlock(const DeviceProperties& p) { return (long long)p.sharedMemPerBlock; }
#else
constexpr const char* kBackendName = "cuda";
constexpr const char* kRuntimeName = "CUDA";
using Error = cudaError_t;
using Stream = cudaStream_t;
using Event = cudaEvent_t;
using DeviceProperties = cudaDeviceProp;
constexpr Error kSuccess = cudaSuccess;
constexpr Error kErrorMemoryAllocation = cudaErrorMemoryAllocation;
inline const char* errorName(Error e) { return cudaGetErrorName(e); }
inline const char* errorString(Error e) { return cudaGetErrorString(e); }
inline Error getLastError() { return cudaGetLastError(); }
inline Error getDeviceCount(int* n) { return cudaGetDeviceCount(n); }
inline Error setDevice(int d) { return cudaSetDevice(d); }
inline Error getDeviceProperties(DeviceProperties* p, int d) { return cudaGetDeviceProperties(p, d); }
inline Error runtimeVersion(int* v) { return cudaRuntimeGetVersion(v); }
inline Error driverVersion(int* v) { return cudaDriverGetVersion(v); }
inline Error deviceMalloc(void** p, size_t bytes) { return cudaMalloc(p, bytes); }
inline Error deviceFree(void* p) { return cudaFree(p); }
inline Error memGetInfo(size_t* freeBytes, size_t* totalBytes) { return cudaMemGetInfo(freeBytes, totalBytes); }
inline Error memcpyHostToDevice(void* dst, const void* src, size_t n, Stream s) { return cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s); }
inline Error memcpyDeviceToHost(void* dst, const void* src, size_t n, Stream s) { return cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s); }
inline Error memcpyDeviceToDevice(void* dst, const void* src, size_t n, Stream s) { return cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s); }
inline Error memsetAsync(void* dst, int value, size_t n, Stream s) { return cudaMemsetAsync(dst, value, n, s); }
inline Error streamCreate(Stream* s) { return cudaStreamCreateWithFlags(s, cudaStreamNonBlocking); }
inline Error streamSynchronize(Stream s) { return cudaStreamSynchronize(s); }
inline Error eventCreate(Event* e) { return cudaEventCreate(e); }
inline Error eventDestroy(Event e) { return cudaEventDestroy(e); }
inline Error eventRecord(Event e, Stream s) { return cudaEventRecord(e, s); }
inline Error eventSynchronize(Event e) { return cudaEventSynchronize(e); }
inline Error eventElapsedMs(float* ms, Event start, Event stop) { return cudaEventElapsedTime(ms, start, stop); }
// "sm_90"
inline std::string deviceArch(const DeviceProperties& p) { return "sm_" + std::to_string(p.major * 10 + p.minor); }
inline long long sharedMemoryPerBlock(const DeviceProperties& p) { return (long long)p.sharedMemPerBlockOptin; }
#endif

// Resets the runtime's last-error state after a handled failure (non-sticky errors only).
inline void clearLastError() { (void)getLastError(); }

// "cudaErrorMemoryAllocation: out of memory"
inline std::string describe(Error e) {
  const std::string name = errorName(e), text = errorString(e);
  return name == text ? name : name + ": " + text;
}

}  // namespace vendor
}  // namespace gemmkit
