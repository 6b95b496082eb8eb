// The emulated vendor runtime behind vendor_runtime.h in emulated builds: the device's description,
// device memory (host memory with red zones, registered so kernels' accesses can be checked, filled
// with 0xff so that reading memory nobody wrote gives NaN), copies that check their ranges, streams
// whose work runs when it is queued, events on the host clock, and the last-error state.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "emu_internal.h"

#if !defined(GEMMKIT_EMU_CUDA) && !defined(GEMMKIT_EMU_HIP)
#error "the emulator is built as GEMMKIT_EMU_CUDA or GEMMKIT_EMU_HIP"
#endif

namespace gemmkit {
namespace emu {

namespace {

thread_local Error lastError = kSuccess;    // cleared by getLastError
thread_local Error messageError = kSuccess;  // the error lastMessage describes (kept)
thread_local std::string lastMessage;

constexpr size_t kRedZone = 256;  // unallocated bytes on each side of a buffer, so overruns land nowhere

struct Allocation {
  char* raw;
  size_t bytes;
  int id;
};

struct Memory {
  std::mutex mutex;
  std::map<uintptr_t, Allocation> allocations;  // by base address
  size_t used = 0;
  int nextId = 0;
};

Memory& memory() {
  static Memory* m = new Memory();  // outlives every static that frees device memory at exit
  return *m;
}

size_t memoryLimit() {
  const char* v = std::getenv("GEMMKIT_EMU_MEMORY_MB");
  const long long mb = v && *v ? std::atoll(v) : 0;
  return size_t(mb > 0 ? mb : 4096) << 20;
}

// Whether [p, p + n) lies inside one allocation.
bool inAllocation(const void* p, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  auto it = m.allocations.upper_bound(a);
  if (it == m.allocations.begin()) return false;
  --it;
  return a - it->first <= it->second.bytes && n <= it->second.bytes - (a - it->first);
}

Error copyError(const char* what, size_t n) {
  return setLastError(kErrorInvalidValue, std::string(what) + " of " + std::to_string(n) + " bytes: the device range is not inside one device buffer");
}

}  // namespace

struct StreamState {};
struct EventState {
  std::chrono::steady_clock::time_point at;
};

Error setLastError(Error e, const std::string& message) {
  lastError = e;
  messageError = e;
  lastMessage = message;
  return e;
}

const char* errorName(Error e) {
  switch (e) {
    case kSuccess: return "emuSuccess";
    case kErrorInvalidValue: return "emuErrorInvalidValue";
    case kErrorMemoryAllocation: return "emuErrorMemoryAllocation";
    case kErrorNoDevice: return "emuErrorNoDevice";
    case kErrorKernelFault: return "emuErrorKernelFault";
    case kErrorDeadlock: return "emuErrorDeadlock";
    case kErrorLaunch: return "emuErrorLaunch";
  }
  return "emuErrorUnknown";
}

const char* errorString(Error e) {
  if (e != kSuccess && e == messageError) return lastMessage.c_str();
  switch (e) {
    case kSuccess: return "no error";
    case kErrorInvalidValue: return "invalid argument";
    case kErrorMemoryAllocation: return "out of memory";
    case kErrorNoDevice: return "no emulated device";
    case kErrorKernelFault: return "a kernel check failed";
    case kErrorDeadlock: return "a kernel deadlocked";
    case kErrorLaunch: return "invalid launch";
  }
  return "unknown error";
}

Error getLastError() {
  const Error e = lastError;
  lastError = kSuccess;
  return e;
}

Error peekLastError() { return lastError; }

int warpSize() {
#if defined(GEMMKIT_EMU_CUDA)
  return 32;
#else
  return 64;
#endif
}

DeviceProperties deviceProperties() {
  DeviceProperties p{};
#if defined(GEMMKIT_EMU_CUDA)
  std::strcpy(p.name, "Emulated NVIDIA sm_90 (gemmkit CPU emulator)");
  p.arch = "sm_90";
  p.sharedMemPerBlock = 232448;  // sm_90's opt-in maximum per block
#else
  std::strcpy(p.name, "Emulated AMD gfx942 (gemmkit CPU emulator)");
  p.arch = "gfx942";
  p.sharedMemPerBlock = 65536;
#endif
  p.multiProcessorCount = 8;  // fixed, so the heuristic chooses alike on every machine
  p.totalGlobalMem = memoryLimit();
  p.warpSize = warpSize();
  return p;
}

Error deviceMalloc(void** p, size_t bytes) {
  *p = nullptr;
  if (bytes == 0) return kSuccess;
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  const size_t limit = memoryLimit();
  if (bytes > limit - m.used || m.used > limit) {
    return setLastError(kErrorMemoryAllocation, "out of memory: " + std::to_string(bytes) + " bytes requested, " + std::to_string(limit - m.used) +
                                                    " of the emulated device's " + std::to_string(limit) + " free (GEMMKIT_EMU_MEMORY_MB sets its size)");
  }
  const size_t total = (bytes + 2 * kRedZone + 255) / 256 * 256;
  char* raw = static_cast<char*>(std::aligned_alloc(256, total));
  if (!raw) return setLastError(kErrorMemoryAllocation, "out of host memory for " + std::to_string(bytes) + " bytes of emulated device memory");
  std::memset(raw + kRedZone, 0xff, bytes);
  const uintptr_t base = reinterpret_cast<uintptr_t>(raw + kRedZone);
  m.allocations[base] = Allocation{raw, bytes, m.nextId++};
  m.used += bytes;
  *p = raw + kRedZone;
  return kSuccess;
}

Error deviceFree(void* p) {
  if (!p) return kSuccess;
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  auto it = m.allocations.find(reinterpret_cast<uintptr_t>(p));
  if (it == m.allocations.end()) return setLastError(kErrorInvalidValue, "free of a pointer that is not an emulated device buffer");
  m.used -= it->second.bytes;
  std::free(it->second.raw);
  m.allocations.erase(it);
  return kSuccess;
}

Error memGetInfo(size_t* freeBytes, size_t* totalBytes) {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  *totalBytes = memoryLimit();
  *freeBytes = *totalBytes > m.used ? *totalBytes - m.used : 0;
  return kSuccess;
}

std::vector<Range> deviceRanges() {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  std::vector<Range> out;
  out.reserve(m.allocations.size() + 1);
  for (const auto& [base, a] : m.allocations) out.push_back(Range{base, a.bytes, a.id});
  return out;
}

Error memcpyHostToDevice(void* dst, const void* src, size_t n) {
  if (n == 0) return kSuccess;
  if (!inAllocation(dst, n)) return copyError("host-to-device copy", n);
  std::memcpy(dst, src, n);
  return kSuccess;
}

Error memcpyDeviceToHost(void* dst, const void* src, size_t n) {
  if (n == 0) return kSuccess;
  if (!inAllocation(src, n)) return copyError("device-to-host copy", n);
  std::memcpy(dst, src, n);
  return kSuccess;
}

Error memcpyDeviceToDevice(void* dst, const void* src, size_t n) {
  if (n == 0) return kSuccess;
  if (!inAllocation(src, n) || !inAllocation(dst, n)) return copyError("device-to-device copy", n);
  std::memmove(dst, src, n);
  return kSuccess;
}

Error memset(void* dst, int value, size_t n) {
  if (n == 0) return kSuccess;
  if (!inAllocation(dst, n)) return copyError("memset", n);
  std::memset(dst, value, n);
  return kSuccess;
}

Error streamCreate(StreamState** s) {
  static StreamState stream;  // work runs when queued: one stream serves everyone
  *s = &stream;
  return kSuccess;
}

Error eventCreate(EventState** e) {
  *e = new EventState();
  return kSuccess;
}

Error eventDestroy(EventState* e) {
  delete e;
  return kSuccess;
}

Error eventRecord(EventState* e) {
  e->at = std::chrono::steady_clock::now();
  return kSuccess;
}

Error eventElapsedMs(float* ms, EventState* start, EventState* stop) {
  *ms = std::chrono::duration<float, std::milli>(stop->at - start->at).count();
  return kSuccess;
}

}  // namespace emu
}  // namespace gemmkit
