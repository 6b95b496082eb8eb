// The emulator's memory checks: the __tsan_* callbacks that -fsanitize=thread inserts before every load
// and store of a kernel translation unit, and what they check. An access is classified by address:
//   the running fiber's stack                 fine (the fast path);
//   the block's shared memory arena           inside what the block declared; written by the block
//                                             before it is read; no race with another thread since
//                                             the last barrier; no cp.async in flight;
//   a device buffer or the launch parameters  fine (parameters are read-only);
//   anything else                             out of bounds: named with the nearest device buffer.
// The callback runs before the access, so a bad access fails its block instead of touching memory.
// Outside emulated kernels (tlsFiber null: host code in the same translation unit) they return at once.
#include <dlfcn.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "emu_internal.h"

namespace gemmkit {
namespace emu {

namespace {

std::string hex(uintptr_t a) {
  char s[32];
  std::snprintf(s, sizeof s, "0x%" PRIxPTR, a);
  return s;
}

// " [code at gemmkit_emu_cuda.node+0x1a2b3]": where the access is, for addr2line.
std::string codeAt(const void* pc) {
  Dl_info info;
  if (!pc || !dladdr(pc, &info) || !info.dli_fname) return "";
  const char* name = std::strrchr(info.dli_fname, '/');
  return std::string(" [code at ") + (name ? name + 1 : info.dli_fname) + "+" +
         hex(reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(info.dli_fbase)) + "]";
}

std::string bytesWord(size_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

}  // namespace

bool sharedOffset(const Worker& w, const void* p, size_t* off) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a - w.arenaBase >= w.arenaBytes) return false;
  *off = a - w.arenaBase;
  return true;
}

void checkSharedAccess(Block& b, ShadowByte* shadow, int tid, size_t off, size_t n, bool write, const void* pc) {
  const char* verb = write ? "write" : "read";
  if (off + n > b.used) {
    std::string budget = b.budget >= 0 ? "; the config declares " + std::to_string(b.budget) : "";
    failThread(kErrorKernelFault, tid,
               std::string("shared-memory ") + verb + " of " + bytesWord(n) + " at offset " + std::to_string(off) +
                   " is beyond the block's declared shared memory (" + std::to_string(b.used) + " bytes: " + std::to_string(b.dynamicBytes) +
                   " dynamic + " + std::to_string(b.used - b.dynamicBytes) + " in static arrays" + budget + ")" + codeAt(pc));
  }
  const uint32_t epoch = b.epoch;
  const uint16_t me = uint16_t(tid + 1);
  for (size_t i = 0; i < n; i++) {
    ShadowByte& s = shadow[off + i];
    if (s.pendingCopy != 0) {
      failThread(kErrorKernelFault, tid,
                 std::string("shared-memory ") + verb + " of " + bytesWord(n) + " at offset " + std::to_string(off) + " touches bytes that " +
                     (s.pendingCopy == me ? std::string("this thread") : threadName(b, s.pendingCopy - 1)) +
                     " is still copying with cp.async: they arrive only at the cp.async.wait_group covering that copy (a missing wait?)" +
                     codeAt(pc));
    }
    if (!write && s.writeEpoch < b.firstEpoch && b.unwrittenRead.empty()) {
      b.unwrittenRead = blockContext(b) + ", " + threadName(b, tid) + ": shared-memory read of " + bytesWord(n) + " at offset " +
                        std::to_string(off) + " reads byte " + std::to_string(off + i) +
                        " before any thread of the block wrote it, and none did before the next barrier or the block's end "
                        "(on a GPU it holds whatever was left there)" + codeAt(pc);
    }
    uint16_t other = 0;
    const char* how = nullptr;
    if (s.writeEpoch == epoch && s.writer != me) {
      other = s.writer;
      how = "wrote";
    } else if (write && s.readEpoch == epoch) {
      other = s.reader != me ? s.reader : s.otherReader;
      how = "read";
    }
    if (other != 0) {
      failThread(kErrorKernelFault, tid,
                 std::string("shared-memory race at offset ") + std::to_string(off + i) + ": this thread " + (write ? "writes" : "reads") +
                     " a byte that " + threadName(b, other - 1) + " " + how + " since the last __syncthreads() (a " + bytesWord(n) + " " +
                     verb + " at offset " + std::to_string(off) + "; a missing barrier?)" + codeAt(pc));
    }
    if (write) {
      s.writeEpoch = epoch;
      s.writer = me;
    } else if (s.readEpoch != epoch) {
      s.readEpoch = epoch;
      s.reader = me;
      s.otherReader = 0;
    } else if (s.reader != me && s.otherReader == 0) {
      s.otherReader = me;
    }
  }
}

std::string describeAddress(const Worker& w, uintptr_t a, size_t n) {
  std::string s;
  // The nearest device buffer below and above the address.
  const Range* below = nullptr;
  const Range* above = nullptr;
  for (const Range& r : w.ranges) {
    if (r.id < 0) continue;
    if (r.base <= a) below = &r;
    else if (!above) above = &r;
  }
  auto name = [](const Range& r) { return "device buffer #" + std::to_string(r.id) + " (" + std::to_string(r.bytes) + " bytes at " + hex(r.base) + ")"; };
  if (below && a < below->base + below->bytes) {
    s = "the access runs " + bytesWord(a + n - (below->base + below->bytes)) + " past the end of " + name(*below);
  } else if (below && (!above || a - (below->base + below->bytes) <= above->base - a)) {
    s = std::to_string(a - (below->base + below->bytes)) + " bytes past the end of " + name(*below);
  } else if (above) {
    s = std::to_string(above->base - a) + " bytes before the start of " + name(*above);
  } else {
    s = "no device buffer is allocated";
  }
  for (const Range& r : w.ranges) {
    if (r.id < 0 && a - r.base < r.bytes) s = "the kernel's parameters";
  }
  return s;
}

namespace {

[[noreturn]] void outOfBounds(Fiber* f, uintptr_t a, size_t n, bool write, const void* pc) {
  const std::string where = describeAddress(*f->worker, a, n);
  failThread(kErrorKernelFault, f->tid,
             std::string("global ") + (write ? "write" : "read") + " of " + bytesWord(n) + " at " + hex(a) +
                 " is outside every device buffer of the launch: " + where + codeAt(pc));
}

// Whether [a, a + n) lies inside one of the launch's ranges (writes: not the parameters).
bool inRanges(Worker& w, uintptr_t a, size_t n, bool write) {
  const std::vector<Range>& rs = w.ranges;
  if (rs.empty()) return false;
  const Range* r = &rs[w.lastRange < rs.size() ? w.lastRange : 0];
  if (!(a - r->base < r->bytes && n <= r->bytes - (a - r->base))) {
    auto it = std::upper_bound(rs.begin(), rs.end(), a, [](uintptr_t x, const Range& y) { return x < y.base; });
    if (it == rs.begin()) return false;
    r = &*(it - 1);
    if (!(a - r->base < r->bytes && n <= r->bytes - (a - r->base))) return false;
    w.lastRange = size_t(r - rs.data());
  }
  return !(write && r->id < 0);
}

__attribute__((noinline)) void slowAccess(Fiber* f, uintptr_t a, size_t n, bool write, const void* pc) {
  Worker& w = *f->worker;
  w.checkedAccesses++;
  if (a - w.arenaBase < w.arenaBytes) {
    checkSharedAccess(w.block, w.shadow.data(), f->tid, a - w.arenaBase, n, write, pc);
    return;
  }
  if (inRanges(w, a, n, write)) return;
  for (const Range& r : w.ranges) {
    if (r.id < 0 && a - r.base < r.bytes) failThread(kErrorKernelFault, f->tid, "writes to the kernel's parameters" + codeAt(pc));
  }
  outOfBounds(f, a, n, write, pc);
}

inline void onAccess(void* addr, size_t n, bool write, const void* pc) {
  Fiber* f = tlsFiber;
  if (__builtin_expect(f == nullptr, 0)) return;
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  if (a - f->stackLo < f->stackBytes) return;
  slowAccess(f, a, n, write, pc);
}

// A load or store the compiler emits as one naturally aligned access of n bytes (1, 2, 4, 8, 16): GPUs
// fault on a misaligned one, so the emulator fails it too (even on the stack, which is never shared).
inline void onAlignedAccess(void* addr, size_t n, bool write, const void* pc) {
  Fiber* f = tlsFiber;
  if (__builtin_expect(f == nullptr, 0)) return;
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  if (__builtin_expect((a & (n - 1)) != 0, 0)) {
    failThread(kErrorKernelFault, f->tid, std::string("misaligned ") + (write ? "write" : "read") + " of " + bytesWord(n) + " at " + hex(a) +
                                              " (a GPU faults on an access that is not aligned to its size)" + codeAt(pc));
  }
  if (a - f->stackLo < f->stackBytes) return;
  slowAccess(f, a, n, write, pc);
}

}  // namespace

void checkVectorAlignment(const void* p, size_t bytes) {
  Fiber* f = tlsFiber;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (f && a % bytes != 0) {
    failThread(kErrorKernelFault, f->tid, "misaligned " + std::to_string(bytes) + "-byte vector load at " + hex(a) +
                                              " (a GPU faults on an access that is not aligned to its size)" + codeAt(__builtin_return_address(0)));
  }
}

void checkGlobalRead(Fiber* f, uintptr_t a, size_t n, const void* pc) {
  f->worker->checkedAccesses++;
  if (!inRanges(*f->worker, a, n, false)) outOfBounds(f, a, n, false, pc);
}

}  // namespace emu
}  // namespace gemmkit

// The instrumentation interface of -fsanitize=thread (the functions GCC and clang call; nm -u on an
// instrumented object lists them). Memory accesses go to the checks above; atomics do what they say;
// the rest does nothing.
#define GEMMKIT_TSAN extern "C" __attribute__((visibility("hidden")))
#define GEMMKIT_TSAN_ACCESS(N)                                                                                     \
  GEMMKIT_TSAN void __tsan_read##N(void* a) { gemmkit::emu::onAlignedAccess(a, N, false, __builtin_return_address(0)); } \
  GEMMKIT_TSAN void __tsan_write##N(void* a) { gemmkit::emu::onAlignedAccess(a, N, true, __builtin_return_address(0)); } \
  GEMMKIT_TSAN void __tsan_unaligned_read##N(void* a) { gemmkit::emu::onAccess(a, N, false, __builtin_return_address(0)); } \
  GEMMKIT_TSAN void __tsan_unaligned_write##N(void* a) { gemmkit::emu::onAccess(a, N, true, __builtin_return_address(0)); } \
  GEMMKIT_TSAN void __tsan_volatile_read##N(void* a) { gemmkit::emu::onAccess(a, N, false, __builtin_return_address(0)); } \
  GEMMKIT_TSAN void __tsan_volatile_write##N(void* a) { gemmkit::emu::onAccess(a, N, true, __builtin_return_address(0)); }
GEMMKIT_TSAN_ACCESS(1)
GEMMKIT_TSAN_ACCESS(2)
GEMMKIT_TSAN_ACCESS(4)
GEMMKIT_TSAN_ACCESS(8)
GEMMKIT_TSAN_ACCESS(16)
GEMMKIT_TSAN void __tsan_read_range(void* a, unsigned long n) {
  if (n) gemmkit::emu::onAccess(a, n, false, __builtin_return_address(0));
}
GEMMKIT_TSAN void __tsan_write_range(void* a, unsigned long n) {
  if (n) gemmkit::emu::onAccess(a, n, true, __builtin_return_address(0));
}
// clang routes the memory intrinsics of instrumented code through these.
GEMMKIT_TSAN void* __tsan_memcpy(void* d, const void* s, unsigned long n) {
  if (n) {
    gemmkit::emu::onAccess(const_cast<void*>(s), n, false, __builtin_return_address(0));
    gemmkit::emu::onAccess(d, n, true, __builtin_return_address(0));
  }
  return std::memcpy(d, s, n);
}
GEMMKIT_TSAN void* __tsan_memmove(void* d, const void* s, unsigned long n) {
  if (n) {
    gemmkit::emu::onAccess(const_cast<void*>(s), n, false, __builtin_return_address(0));
    gemmkit::emu::onAccess(d, n, true, __builtin_return_address(0));
  }
  return std::memmove(d, s, n);
}
GEMMKIT_TSAN void* __tsan_memset(void* d, int v, unsigned long n) {
  if (n) gemmkit::emu::onAccess(d, n, true, __builtin_return_address(0));
  return std::memset(d, v, n);
}
GEMMKIT_TSAN void __tsan_init() {}
GEMMKIT_TSAN void __tsan_func_entry(void*) {}
GEMMKIT_TSAN void __tsan_func_exit() {}
GEMMKIT_TSAN void __tsan_vptr_update(void**, void*) {}
GEMMKIT_TSAN void __tsan_vptr_read(void**) {}
GEMMKIT_TSAN void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
GEMMKIT_TSAN void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

#define GEMMKIT_TSAN_ATOMICS(N, T)                                                                                       \
  GEMMKIT_TSAN T __tsan_atomic##N##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); }     \
  GEMMKIT_TSAN void __tsan_atomic##N##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); }     \
  GEMMKIT_TSAN T __tsan_atomic##N##_exchange(volatile T* a, T v, int) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); } \
  GEMMKIT_TSAN T __tsan_atomic##N##_fetch_add(volatile T* a, T v, int) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); } \
  GEMMKIT_TSAN T __tsan_atomic##N##_fetch_sub(volatile T* a, T v, int) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); } \
  GEMMKIT_TSAN T __tsan_atomic##N##_fetch_and(volatile T* a, T v, int) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); } \
  GEMMKIT_TSAN T __tsan_atomic##N##_fetch_or(volatile T* a, T v, int) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }   \
  GEMMKIT_TSAN T __tsan_atomic##N##_fetch_xor(volatile T* a, T v, int) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); } \
  GEMMKIT_TSAN T __tsan_atomic##N##_fetch_nand(volatile T* a, T v, int) { return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST); } \
  GEMMKIT_TSAN int __tsan_atomic##N##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {                       \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                               \
  }                                                                                                                      \
  GEMMKIT_TSAN int __tsan_atomic##N##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {                         \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                                \
  }                                                                                                                      \
  GEMMKIT_TSAN T __tsan_atomic##N##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                             \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                                     \
    return c;                                                                                                            \
  }
GEMMKIT_TSAN_ATOMICS(8, char)
GEMMKIT_TSAN_ATOMICS(16, short)
GEMMKIT_TSAN_ATOMICS(32, int)
GEMMKIT_TSAN_ATOMICS(64, long long)
