// The emulator's own state, shared by its translation units (never seen by kernels): fibers, blocks,
// warps, the per-OS-thread worker that runs blocks, and the failure path every check ends in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "emu_api.h"

#if defined(__x86_64__) && !defined(GEMMKIT_EMU_PORTABLE_FIBERS)
#define GEMMKIT_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

namespace gemmkit {
namespace emu {

struct Worker;
struct Block;

enum class FiberState : uint8_t { Ready, AtBarrier, AtCollective, Exited };

// The warp collectives; lanes meet only at the same one.
enum class Collective : uint8_t { None, Shuffle, Ldmatrix, LdmatrixTrans, Mma, Mfma };
const char* collectiveName(Collective c);

// A cp.async issued by a thread and not yet delivered: its 16 bytes (read at issue) and its group.
struct PendingCopy {
  uint32_t offset;  // in the block's shared memory
  uint32_t group;   // the thread's commit count when it was issued (the open group)
  uint8_t bytes[16];
};

struct Fiber {
#if defined(GEMMKIT_EMU_ASM_SWITCH)
  void* sp = nullptr;  // saved stack pointer while switched out
#else
  ucontext_t context;
#endif
  char* mapping = nullptr;  // the stack's mmap, guard page first
  size_t mappingBytes = 0;
  uintptr_t stackLo = 0;    // usable stack [stackLo, stackLo + stackBytes)
  size_t stackBytes = 0;
  Worker* worker = nullptr;
  int tid = 0;              // linear thread index in the block
  Dim3 idx{0, 0, 0};        // threadIdx
  int warp = 0, lane = 0;
  FiberState state = FiberState::Ready;
  Collective waitingAt = Collective::None;
  int staticDecls = 0;      // shared arrays this thread has declared
  uint32_t committedGroups = 0;
  std::vector<PendingCopy> copies;
};

// One lane's operands and results at a collective.
struct LaneSlot {
  uint32_t in[24];
  uintptr_t address;
  uint32_t out[16];
};

struct Warp {
  int lanes = 0;    // threads of the block in this warp
  int arrived = 0;
  Collective kind = Collective::None;
  LaneSlot slots[64];
};

// Per-byte shadow of a block's shared memory for race and cp.async checks. Thread ids are stored + 1
// (0: none); epochs are the worker's barrier counter, so entries of earlier blocks never match.
struct ShadowByte {
  uint32_t writeEpoch, readEpoch;
  uint16_t writer, reader, otherReader, pendingCopy;
};

struct SharedDecl {
  const char* name;
  size_t offset, bytes;
};

struct Block {
  const LaunchSpec* spec = nullptr;
  Dim3 idx{0, 0, 0};
  int threads = 0, warpSize = 32;
  char* shared = nullptr;   // the worker's arena
  size_t dynamicBytes = 0;  // [0, dynamicBytes) is the dynamic shared memory
  size_t used = 0;          // bytes declared so far (dynamic + static arrays)
  long long budget = -1;
  size_t limit = 0;         // the device's per-block maximum
  SharedDecl decls[32];
  int declCount = 0;
  uint32_t epoch = 0;       // current barrier interval
  uint32_t firstEpoch = 0;  // the block's first: a byte last written before it was never written by this block
  int barrierArrived = 0;
  const char* barrierFile = nullptr;
  int barrierLine = 0;
  int live = 0;             // threads that have not exited
  // The first read of shared bytes no thread of the block had written: reported at the next barrier
  // (or the block's end) unless another thread writes them first, which the race check reports.
  std::string unwrittenRead;
  std::vector<Warp> warps;
  bool failed = false;
  Error error = kSuccess;
  std::string message;
};

// A device buffer (or the launch's parameters) a kernel may access, as seen by one launch.
struct Range {
  uintptr_t base;
  size_t bytes;
  int id;  // allocation number; -1: the kernel's parameters (read-only)
};

struct Worker {
  std::vector<std::unique_ptr<Fiber>> fibers;
#if defined(GEMMKIT_EMU_ASM_SWITCH)
  void* schedulerSp = nullptr;
#else
  ucontext_t schedulerContext;
#endif
  char* arena = nullptr;  // shared memory of the block this worker runs, plus a guard zone
  uintptr_t arenaBase = 0;
  size_t arenaBytes = 0;
  std::vector<ShadowByte> shadow;
  uint32_t epochCounter = 0;
  Block block;
  std::vector<Range> ranges;  // sorted by base
  size_t lastRange = 0;
  unsigned long long collectives = 0, barriers = 0, checkedAccesses = 0;

  Worker();
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
};

// The fiber running on this OS thread, null outside kernels (the memory hooks return at once then).
// Initial-exec, so the hooks read it without a call; a library whose thread-local storage uses that
// model takes all of it from the static TLS block that a dlopen()ed addon shares with the process, so
// the emulator keeps its thread-local state to a few pointers and codes (no large arrays).
extern thread_local Fiber* tlsFiber __attribute__((tls_model("initial-exec")));

// "cuda.sm80...., block (1,0,0)" and ", thread (5,0,0)" for messages.
std::string blockContext(const Block& b);
std::string threadName(const Block& b, int tid);

// Ends the running block with an error (the scheduler never resumes its threads); never returns.
[[noreturn]] void failBlock(Error code, const std::string& message);
// As failBlock, with the launch, block and thread named first.
[[noreturn]] void failThread(Error code, int tid, const std::string& what);

// Shared-memory accounting for one access by thread `tid` at arena offset `off` (checked against
// what the block declared, then for races and pending cp.async copies); fails on a violation.
void checkSharedAccess(Block& b, ShadowByte* shadow, int tid, size_t off, size_t n, bool write, const void* pc);
// A device-memory range [a, a + n) that the running kernel reads (cp.async sources); fails outside.
void checkGlobalRead(Fiber* f, uintptr_t a, size_t n, const void* pc);
// Whether an address lies in the running block's shared memory arena; its offset if so.
bool sharedOffset(const Worker& w, const void* p, size_t* off);

// Blocks the running fiber until the scheduler resumes it.
void yieldFiber(Fiber* f);
// Delivers the thread's cp.async copies of groups older than its newest `pending` committed groups.
void deliverCopies(Fiber* f, int pending);

// The device's buffers for a launch (plus the parameters' range), sorted.
std::vector<Range> deviceRanges();
// Where an address outside every buffer lies: "12 bytes past the end of device buffer #3 (...)".
std::string describeAddress(const Worker& w, uintptr_t a, size_t n);

// Computes a collective for every lane of the warp once all have arrived (emu_instructions.cpp).
void computeCollective(Block& b, int warpIndex, Warp& w, const void* pc);

// Runtime error state shared by the runtime files (emu_vendor.cpp owns it).
Error setLastError(Error e, const std::string& message);

}  // namespace emu
}  // namespace gemmkit
