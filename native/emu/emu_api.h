// The CPU emulator's interface, used by the kernel-side header (emu_device.h, the emulated intrinsics)
// and by the emulated vendor runtime (vendor_runtime.h under GEMMKIT_EMU_CUDA / GEMMKIT_EMU_HIP).
// Everything here is implemented in native/emu/*.cpp, which are compiled without instrumentation.
//
// Model: a launch runs its blocks one after another on a few OS threads; a block's threads are fibers
// on one OS thread that switch only at __syncthreads() and at warp collectives (shuffles, ldmatrix,
// mma, MFMA), which are rendezvous of every lane of the warp. Kernel translation units are compiled
// with -fsanitize=thread, and the __tsan_* callbacks defined here check every load and store of a
// kernel: device buffers in bounds, shared memory within the block's declaration and free of races.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace gemmkit {
namespace emu {

// Error codes of the emulated runtime (vendor::Error in emulated builds). Not sticky: the emulated
// device keeps working after any of them. In a namespace of their own, so that argument-dependent
// lookup of vendor::errorName(e) and friends finds no emu:: function of the same name.
namespace codes {
enum Error : int {
  kSuccess = 0,
  kErrorInvalidValue = 1,      // a bad argument to a runtime call (copy outside a buffer, bad launch)
  kErrorMemoryAllocation = 2,  // the emulated device memory is exhausted
  kErrorNoDevice = 3,
  kErrorKernelFault = 4,       // a check failed inside a kernel: bounds, race, cp.async, divergence
  kErrorDeadlock = 5,          // a barrier or collective that can never complete
  kErrorLaunch = 6,            // a launch the hardware would refuse (grid, block, shared memory)
};
}  // namespace codes
using namespace codes;

const char* errorName(Error e);
// The message of the last error this OS thread saw (kept until the next error), else a generic text.
const char* errorString(Error e);
Error getLastError();  // and clears it
Error peekLastError();

// ---- the device --------------------------------------------------------------------------------

// What the emulated device reports about itself; the vendor flavour decides its architecture.
struct DeviceProperties {
  char name[128];
  std::string arch;            // "sm_90" or "gfx942"
  int multiProcessorCount;
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;    // the opt-in maximum on CUDA (sm_90: 227 KiB), the LDS size on AMD
  int warpSize;
};

// The flavour this emulator build runs: warp size and the device description (set by the build).
int warpSize();
DeviceProperties deviceProperties();

Error deviceMalloc(void** p, size_t bytes);
Error deviceFree(void* p);
Error memGetInfo(size_t* freeBytes, size_t* totalBytes);
// Copies check that every device range lies inside one allocation.
Error memcpyHostToDevice(void* dst, const void* src, size_t n);
Error memcpyDeviceToHost(void* dst, const void* src, size_t n);
Error memcpyDeviceToDevice(void* dst, const void* src, size_t n);
Error memset(void* dst, int value, size_t n);

struct StreamState;
struct EventState;
Error streamCreate(StreamState** s);
Error eventCreate(EventState** e);
Error eventDestroy(EventState* e);
// Launches run to completion when they are queued, so an event records the host clock.
Error eventRecord(EventState* e);
Error eventElapsedMs(float* ms, EventState* start, EventState* stop);

// cudaFuncSetAttribute(MaxDynamicSharedMemorySize): a CUDA kernel must opt in above 48 KiB.
Error setMaxDynamicShared(const void* kernel, int bytes);

// ---- launches -------------------------------------------------------------------------------------

struct Dim3 {
  unsigned x, y, z;
};

// Calls `kernel` with its parameters (a std::tuple of them at `params`).
using KernelInvoker = void (*)(const void* kernel, const void* params);

struct LaunchSpec {
  const void* kernel = nullptr;
  KernelInvoker invoke = nullptr;
  const void* params = nullptr;   // the kernel's parameters, readable by the kernel like its stack
  size_t paramsBytes = 0;
  Dim3 grid{1, 1, 1}, block{1, 1, 1};
  size_t dynamicShared = 0;
  // Names the launch in every message: the config name, plus which kernel of it.
  std::string label;
  // The shared memory / LDS bytes the kernel's config declares (GpuConfig::sharedBytes); a block that
  // declares more, or touches shared memory past what it declared, fails. -1: only the device limit.
  long long sharedBudget = -1;
};

// Runs every block of the launch; returns kSuccess or the first failure (also the last error).
Error runLaunch(const LaunchSpec& spec);

// ---- what kernels call (only while a kernel runs on a fiber) ----------------------------------------

Dim3 threadIndex();
Dim3 blockIndex();
Dim3 blockDimension();
Dim3 gridDimension();
// __syncthreads(): a barrier over every thread of the block; `file`:`line` names the call site, and
// threads at different call sites do not meet (reported as a deadlock).
void syncthreads(const char* file, int line);
// The shared array a kernel declares (the k-th declaration a thread executes is the block's k-th
// array; every thread gets the same one). Static arrays follow the dynamic shared memory.
void* staticShared(const char* name, size_t bytes, size_t align);
void* dynamicShared(size_t align);

// Warp collectives: each is a rendezvous of every lane of the calling thread's warp; the lanes must
// arrive at the same instruction. Layouts are documented in emu_instructions.cpp.
float shuffleXor(float v, int laneMask);
uint32_t shuffleXorBits(uint32_t v, int laneMask);  // the same exchange of 32 raw bits
void ldmatrixX4(uint32_t r[4], const void* smemRow, bool trans);
void mmaM16N8K16(float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16);
void mfma32x32x8(float acc[16], uint32_t a0, uint32_t a1, uint32_t b0, uint32_t b1, bool bf16);

// A vector load the kernels make through device_common.cuh's helpers: GPUs fault on a misaligned one,
// and the compiler may split it into scalar accesses on the CPU, so the helpers check it explicitly.
void checkVectorAlignment(const void* p, size_t bytes);

// cp.async: the source is read (and checked) when the copy is issued; its 16 bytes reach shared memory
// only at the cp.async.wait_group that covers its group, as writes of the issuing thread then.
void cpAsync16(void* smem, const void* gmem, int srcBytes);
void cpAsyncCommit();
void cpAsyncWait(int pending);

// ---- statistics (drivers print them) ------------------------------------------------------------------

struct Stats {
  unsigned long long launches, blocks, threads, collectives, barriers, checkedAccesses;
};
Stats stats();

}  // namespace emu
}  // namespace gemmkit
