// The emulator's execution engine: fibers (a hand-written x86-64 context switch, ucontext elsewhere),
// the per-block scheduler with its barrier and warp rendezvous, deadlock reports, the pool of OS
// threads that runs blocks, launches, shared-memory declarations and cp.async queues.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "emu_internal.h"

namespace gemmkit {
namespace emu {

thread_local Fiber* tlsFiber __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

constexpr size_t kStackBytes = 256 * 1024;  // per fiber; the kernels' frames are a few KiB
constexpr size_t kGuardBytes = 4096;
constexpr size_t kArenaGuard = 64 * 1024;   // past the largest block's shared memory, still "shared"

}  // namespace

// ---- context switch ----------------------------------------------------------------------------------

#if defined(GEMMKIT_EMU_ASM_SWITCH)
// gemmkit_emu_switch(save, next): saves the callee-saved registers, MXCSR and the x87 control word on
// the current stack, stores the stack pointer in *save, and resumes the context whose stack pointer is
// `next`. A new fiber's stack is laid out as if it had been switched out just before its start routine,
// which calls the function in r13 with the fiber (r12) as its argument.
extern "C" void gemmkit_emu_switch(void** save, void* next);
extern "C" void gemmkit_emu_fiber_start();
asm(R"(
  .pushsection .text
  .p2align 4
  .globl gemmkit_emu_switch
  .hidden gemmkit_emu_switch
  .type gemmkit_emu_switch,@function
gemmkit_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size gemmkit_emu_switch, .-gemmkit_emu_switch

  .p2align 4
  .globl gemmkit_emu_fiber_start
  .hidden gemmkit_emu_fiber_start
  .type gemmkit_emu_fiber_start,@function
gemmkit_emu_fiber_start:
  endbr64
  movq %r12, %rdi
  callq *%r13
  ud2
  .size gemmkit_emu_fiber_start, .-gemmkit_emu_fiber_start
  .popsection
)");
#endif

namespace {

[[noreturn]] void fiberMain(Fiber* f);

#if !defined(GEMMKIT_EMU_ASM_SWITCH)
void fiberTrampoline(unsigned lo, unsigned hi) {
  fiberMain(reinterpret_cast<Fiber*>((uintptr_t(hi) << 32) | uintptr_t(lo)));
}
#endif

// Makes the fiber start at fiberMain the next time it is switched to.
void resetFiber(Fiber* f) {
#if defined(GEMMKIT_EMU_ASM_SWITCH)
  uint64_t* s = reinterpret_cast<uint64_t*>((f->stackLo + f->stackBytes) & ~uintptr_t(15)) - 8;
  s[0] = 0x1F80ull | (0x037Full << 32);  // default MXCSR, x87 control word
  s[1] = 0;                              // r15
  s[2] = 0;                              // r14
  s[3] = reinterpret_cast<uint64_t>(&fiberMain);  // r13: the routine
  s[4] = reinterpret_cast<uint64_t>(f);           // r12: its argument
  s[5] = 0;                                       // rbx
  s[6] = 0;                                       // rbp
  s[7] = reinterpret_cast<uint64_t>(&gemmkit_emu_fiber_start);
  f->sp = s;
#else
  getcontext(&f->context);
  f->context.uc_stack.ss_sp = reinterpret_cast<void*>(f->stackLo);
  f->context.uc_stack.ss_size = f->stackBytes;
  f->context.uc_link = nullptr;
  const uintptr_t p = reinterpret_cast<uintptr_t>(f);
  makecontext(&f->context, reinterpret_cast<void (*)()>(&fiberTrampoline), 2, unsigned(p & 0xffffffffu), unsigned(p >> 32));
#endif
}

void switchToFiber(Worker& w, Fiber* f) {
  tlsFiber = f;
#if defined(GEMMKIT_EMU_ASM_SWITCH)
  gemmkit_emu_switch(&w.schedulerSp, f->sp);
#else
  swapcontext(&w.schedulerContext, &f->context);
#endif
  tlsFiber = nullptr;
}

}  // namespace

void yieldFiber(Fiber* f) {
#if defined(GEMMKIT_EMU_ASM_SWITCH)
  gemmkit_emu_switch(&f->sp, f->worker->schedulerSp);
#else
  swapcontext(&f->context, &f->worker->schedulerContext);
#endif
}

// ---- workers -----------------------------------------------------------------------------------------

Worker::Worker() {
  const size_t limit = deviceProperties().sharedMemPerBlock;
  arenaBytes = (limit + kArenaGuard + 4095) & ~size_t(4095);
  void* p = mmap(nullptr, arenaBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "gemmkit emulator: cannot map %zu bytes of shared memory\n", arenaBytes);
    std::abort();
  }
  arena = static_cast<char*>(p);
  arenaBase = reinterpret_cast<uintptr_t>(p);
  shadow.assign(arenaBytes, ShadowByte{0, 0, 0, 0, 0, 0});
}

Worker::~Worker() {
  for (auto& f : fibers) {
    if (f->mapping) munmap(f->mapping, f->mappingBytes);
  }
  if (arena) munmap(arena, arenaBytes);
}

namespace {

Fiber* fiberAt(Worker& w, int index) {
  while (int(w.fibers.size()) <= index) {
    std::unique_ptr<Fiber> f(new Fiber());
    f->mappingBytes = kStackBytes + kGuardBytes;
    void* p = mmap(nullptr, f->mappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "gemmkit emulator: cannot map a fiber stack\n");
      std::abort();
    }
    mprotect(p, kGuardBytes, PROT_NONE);  // the stack grows down into this page: a fault, not corruption
    f->mapping = static_cast<char*>(p);
    f->stackLo = reinterpret_cast<uintptr_t>(p) + kGuardBytes;
    f->stackBytes = kStackBytes;
    f->worker = &w;
    w.fibers.push_back(std::move(f));
  }
  return w.fibers[size_t(index)].get();
}

std::string threadRanges(const std::vector<int>& tids) {
  std::string s;
  for (size_t i = 0; i < tids.size();) {
    size_t j = i;
    while (j + 1 < tids.size() && tids[j + 1] == tids[j] + 1) j++;
    if (!s.empty()) s += ", ";
    s += std::to_string(tids[i]);
    if (j > i) s += "-" + std::to_string(tids[j]);
    i = j + 1;
  }
  return s;
}

}  // namespace

std::string blockContext(const Block& b) {
  return b.spec->label + ", block (" + std::to_string(b.idx.x) + "," + std::to_string(b.idx.y) + "," + std::to_string(b.idx.z) + ")";
}

std::string threadName(const Block& b, int tid) {
  const Dim3 d = b.spec->block;
  const int x = tid % int(d.x), y = tid / int(d.x) % int(d.y), z = tid / int(d.x * d.y);
  return "thread (" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + ")";
}

void failBlock(Error code, const std::string& message) {
  Fiber* f = tlsFiber;
  Block& b = f->worker->block;
  if (!b.failed) {
    b.failed = true;
    b.error = code;
    b.message = message;
  }
  f->state = FiberState::Exited;
  for (;;) yieldFiber(f);  // the scheduler stops the block and never resumes this fiber
}

void failThread(Error code, int tid, const std::string& what) {
  const Block& b = tlsFiber->worker->block;
  failBlock(code, blockContext(b) + ", " + threadName(b, tid) + ": " + what);
}

// ---- the block scheduler -----------------------------------------------------------------------------

namespace {

[[noreturn]] void fiberMain(Fiber* f) {
  Block& b = f->worker->block;
  b.spec->invoke(b.spec->kernel, b.spec->params);
  if (!f->copies.empty()) {
    failThread(kErrorKernelFault, f->tid,
               "exited with " + std::to_string(f->copies.size()) +
                   " cp.async copies that no cp.async.wait_group delivered (their bytes never reached shared memory)");
  }
  f->state = FiberState::Exited;
  b.live--;
  for (;;) yieldFiber(f);
}

// Every live thread waits and none can go on: say what each group of threads waits for.
std::string deadlockReport(Worker& w) {
  Block& b = w.block;
  std::vector<int> atBarrier, exited;
  std::map<int, std::map<std::string, std::vector<int>>> warpsWaiting;  // warp -> what -> lanes
  for (int t = 0; t < b.threads; t++) {
    const Fiber* f = w.fibers[size_t(t)].get();
    if (f->state == FiberState::AtBarrier) atBarrier.push_back(t);
    else if (f->state == FiberState::Exited) exited.push_back(t);
    else if (f->state == FiberState::AtCollective) warpsWaiting[f->warp][collectiveName(f->waitingAt)].push_back(f->lane);
  }
  std::string site = b.barrierFile ? std::string(b.barrierFile) + ":" + std::to_string(b.barrierLine) : "?";
  const size_t slash = site.rfind('/');
  if (slash != std::string::npos) site = site.substr(slash + 1);
  std::string s = blockContext(b) + ": deadlock: ";
  if (warpsWaiting.empty()) {
    s += "barrier reached by only part of the block: threads " + threadRanges(atBarrier) + " wait at __syncthreads() (" + site + ")";
    if (!exited.empty()) s += "; threads " + threadRanges(exited) + " have exited";
    return s;
  }
  s += "warp collective reached by only part of a warp:";
  for (auto& [warp, groups] : warpsWaiting) {
    s += " warp " + std::to_string(warp) + ":";
    std::vector<int> lanesExited, lanesAtBarrier;
    for (int t = warp * b.warpSize; t < std::min(b.threads, (warp + 1) * b.warpSize); t++) {
      const Fiber* f = w.fibers[size_t(t)].get();
      if (f->state == FiberState::Exited) lanesExited.push_back(f->lane);
      if (f->state == FiberState::AtBarrier) lanesAtBarrier.push_back(f->lane);
    }
    for (auto& [what, lanes] : groups) s += " lanes " + threadRanges(lanes) + " wait at " + what + ";";
    if (!lanesAtBarrier.empty()) s += " lanes " + threadRanges(lanesAtBarrier) + " wait at __syncthreads() (" + site + ");";
    if (!lanesExited.empty()) s += " lanes " + threadRanges(lanesExited) + " have exited;";
  }
  if (!atBarrier.empty()) s += " threads " + threadRanges(atBarrier) + " wait at __syncthreads() (" + site + ")";
  return s;
}

void runBlock(Worker& w, const LaunchSpec& spec, Dim3 idx) {
  Block& b = w.block;
  b.spec = &spec;
  b.idx = idx;
  b.threads = int(spec.block.x * spec.block.y * spec.block.z);
  b.warpSize = warpSize();
  b.shared = w.arena;
  b.dynamicBytes = spec.dynamicShared;
  b.used = spec.dynamicShared;
  b.budget = spec.sharedBudget;
  b.limit = deviceProperties().sharedMemPerBlock;
  b.declCount = 0;
  if (++w.epochCounter == 0) {  // wrapped: stale shadow entries could match again
    std::fill(w.shadow.begin(), w.shadow.end(), ShadowByte{0, 0, 0, 0, 0, 0});
    w.epochCounter = 1;
  }
  b.epoch = w.epochCounter;
  b.firstEpoch = b.epoch;
  // Copies a failed block left in flight still mark their bytes as pending.
  for (auto& f : w.fibers) {
    for (const PendingCopy& c : f->copies) {
      for (size_t j = 0; j < 16; j++) w.shadow[c.offset + j].pendingCopy = 0;
    }
    f->copies.clear();
  }
  b.barrierArrived = 0;
  b.barrierFile = nullptr;
  b.barrierLine = 0;
  b.live = b.threads;
  b.unwrittenRead.clear();
  b.failed = false;
  b.error = kSuccess;
  b.message.clear();
  const int warps = (b.threads + b.warpSize - 1) / b.warpSize;
  if (int(b.warps.size()) < warps) b.warps.resize(size_t(warps));
  for (int i = 0; i < warps; i++) {
    b.warps[size_t(i)].lanes = std::min(b.warpSize, b.threads - i * b.warpSize);
    b.warps[size_t(i)].arrived = 0;
    b.warps[size_t(i)].kind = Collective::None;
  }
  for (int t = 0; t < b.threads; t++) {
    Fiber* f = fiberAt(w, t);
    f->tid = t;
    f->idx = Dim3{unsigned(t) % spec.block.x, unsigned(t) / spec.block.x % spec.block.y, unsigned(t) / (spec.block.x * spec.block.y)};
    f->warp = t / b.warpSize;
    f->lane = t % b.warpSize;
    f->state = FiberState::Ready;
    f->waitingAt = Collective::None;
    f->staticDecls = 0;
    f->committedGroups = 0;
    f->copies.clear();
    resetFiber(f);
  }
  for (;;) {
    bool ran = false;
    for (int t = 0; t < b.threads && !b.failed; t++) {
      Fiber* f = w.fibers[size_t(t)].get();
      if (f->state != FiberState::Ready) continue;
      switchToFiber(w, f);
      ran = true;
    }
    if (!b.failed && b.live == 0 && !b.unwrittenRead.empty()) {
      b.failed = true;
      b.error = kErrorKernelFault;
      b.message = b.unwrittenRead;
    }
    if (b.failed || b.live == 0) return;
    if (!ran) {
      b.failed = true;
      b.error = kErrorDeadlock;
      b.message = deadlockReport(w);
      return;
    }
  }
}

// ---- the pool ------------------------------------------------------------------------------------------

int threadCount() {
  const char* v = std::getenv("GEMMKIT_EMU_THREADS");
  if (v && *v) {
    const int n = std::atoi(v);
    if (n >= 1 && n <= 64) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return int(std::max(1u, std::min(hw, 8u)));
}

Worker& callerWorker() {
  thread_local std::unique_ptr<Worker> worker;
  if (!worker) worker.reset(new Worker());
  return *worker;
}

// OS threads that run blocks next to the launching thread. Never destroyed: threads blocked on its
// condition variable at exit must not see it go away.
class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool(threadCount() - 1);
    return *pool;
  }

  // Runs job(worker, i) for i in [0, total) on the pool's threads and the caller.
  void run(int total, const std::function<bool(Worker&, int)>& job) {
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = &job;
    total_ = total;
    next_.store(0);
    stop_.store(false);
    busy_ = int(threads_.size());
    generation_++;
    lock.unlock();
    wake_.notify_all();
    work(callerWorker());
    lock.lock();
    done_.wait(lock, [&] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  explicit Pool(int extra) {
    for (int i = 0; i < extra; i++) threads_.emplace_back([this] { loop(); });
    for (auto& t : threads_) t.detach();
  }

  void work(Worker& w) {
    for (;;) {
      if (stop_.load(std::memory_order_relaxed)) return;
      const int i = next_.fetch_add(1);
      if (i >= total_) return;
      if (!(*job_)(w, i)) stop_.store(true);
    }
  }

  void loop() {
    Worker w;
    unsigned long seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      lock.unlock();
      work(w);
      lock.lock();
      if (--busy_ == 0) done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<bool(Worker&, int)>* job_ = nullptr;
  int total_ = 0;
  std::atomic<int> next_{0};
  std::atomic<bool> stop_{false};
  int busy_ = 0;
  unsigned long generation_ = 0;
};

std::mutex& launchMutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}

std::mutex& attributeMutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}

std::map<const void*, int>& dynamicSharedOptIn() {
  static std::map<const void*, int>* m = new std::map<const void*, int>();
  return *m;
}

std::atomic<unsigned long long> statLaunches{0}, statBlocks{0}, statThreads{0}, statCollectives{0}, statBarriers{0},
    statAccesses{0};

std::string dims(Dim3 d) { return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")"; }

}  // namespace

Error setMaxDynamicShared(const void* kernel, int bytes) {
  if (bytes < 0 || size_t(bytes) > deviceProperties().sharedMemPerBlock) {
    return setLastError(kErrorInvalidValue, "cudaFuncSetAttribute: " + std::to_string(bytes) +
                                                " bytes of dynamic shared memory is more than the device's " +
                                                std::to_string(deviceProperties().sharedMemPerBlock));
  }
  std::lock_guard<std::mutex> lock(attributeMutex());
  dynamicSharedOptIn()[kernel] = bytes;
  return kSuccess;
}

Error runLaunch(const LaunchSpec& spec) {
  const DeviceProperties props = deviceProperties();
  const unsigned long long threads = (unsigned long long)spec.block.x * spec.block.y * spec.block.z;
  const std::string what = "launch of " + spec.label + " over grid " + dims(spec.grid) + ", block " + dims(spec.block);
  if (threads == 0 || threads > 1024 || spec.block.z > 64) {
    return setLastError(kErrorLaunch, what + ": a block has 1 to 1024 threads (z at most 64)");
  }
  if (spec.grid.x == 0 || spec.grid.y == 0 || spec.grid.z == 0 || spec.grid.x > 2147483647u || spec.grid.y > 65535 || spec.grid.z > 65535) {
    return setLastError(kErrorLaunch, what + ": grid dimensions must be in [1, 2^31-1] x [1, 65535] x [1, 65535]");
  }
  if (spec.dynamicShared > props.sharedMemPerBlock) {
    return setLastError(kErrorLaunch, what + ": " + std::to_string(spec.dynamicShared) + " bytes of dynamic shared memory, more than the device's " +
                                          std::to_string(props.sharedMemPerBlock));
  }
#if defined(GEMMKIT_EMU_CUDA)
  if (spec.dynamicShared > 48 * 1024) {
    std::lock_guard<std::mutex> lock(attributeMutex());
    auto it = dynamicSharedOptIn().find(spec.kernel);
    if (it == dynamicSharedOptIn().end() || size_t(it->second) < spec.dynamicShared) {
      return setLastError(kErrorLaunch, what + ": " + std::to_string(spec.dynamicShared) +
                                            " bytes of dynamic shared memory need cudaFuncSetAttribute(MaxDynamicSharedMemorySize) first (above 48 KiB)");
    }
  }
#endif
  if (spec.sharedBudget >= 0 && spec.dynamicShared > size_t(spec.sharedBudget)) {
    return setLastError(kErrorLaunch, what + ": " + std::to_string(spec.dynamicShared) +
                                          " bytes of dynamic shared memory, more than the config's declared " + std::to_string(spec.sharedBudget));
  }

  std::lock_guard<std::mutex> lock(launchMutex());
  std::vector<Range> ranges = deviceRanges();
  ranges.push_back(Range{reinterpret_cast<uintptr_t>(spec.params), spec.paramsBytes, -1});
  std::sort(ranges.begin(), ranges.end(), [](const Range& x, const Range& y) { return x.base < y.base; });

  const unsigned long long blocks = (unsigned long long)spec.grid.x * spec.grid.y * spec.grid.z;
  std::mutex resultMutex;
  unsigned long long failedBlock = ~0ull;
  Error failure = kSuccess;
  std::string failureMessage;
  std::atomic<unsigned long long> done{0};
  // Blocks are numbered x fastest; a job claims one block (launches beyond 2^31 blocks do not occur:
  // the GEMM launchers bound their grids).
  const int total = int(std::min<unsigned long long>(blocks, 2147483647ull));
  Pool::instance().run(total, [&](Worker& w, int i) {
    if (w.ranges.size() != ranges.size() || !std::equal(ranges.begin(), ranges.end(), w.ranges.begin(), [](const Range& x, const Range& y) {
          return x.base == y.base && x.bytes == y.bytes && x.id == y.id;
        })) {
      w.ranges = ranges;
      w.lastRange = 0;
    }
    const unsigned long long linear = (unsigned long long)i;
    const Dim3 idx{unsigned(linear % spec.grid.x), unsigned(linear / spec.grid.x % spec.grid.y),
                   unsigned(linear / (spec.grid.x * (unsigned long long)spec.grid.y))};
    const unsigned long long c0 = w.collectives, b0 = w.barriers, a0 = w.checkedAccesses;
    runBlock(w, spec, idx);
    statCollectives += w.collectives - c0;
    statBarriers += w.barriers - b0;
    statAccesses += w.checkedAccesses - a0;
    done++;
    if (!w.block.failed) return true;
    std::lock_guard<std::mutex> g(resultMutex);
    if (linear < failedBlock) {
      failedBlock = linear;
      failure = w.block.error;
      failureMessage = w.block.message;
    }
    return false;
  });
  statLaunches++;
  statBlocks += done.load();
  statThreads += done.load() * threads;
  if (failure != kSuccess) return setLastError(failure, failureMessage);
  return kSuccess;
}

Stats stats() {
  return Stats{statLaunches.load(), statBlocks.load(), statThreads.load(), statCollectives.load(), statBarriers.load(), statAccesses.load()};
}

// ---- what kernels call -----------------------------------------------------------------------------------

Dim3 threadIndex() { return tlsFiber ? tlsFiber->idx : Dim3{0, 0, 0}; }
Dim3 blockIndex() { return tlsFiber ? tlsFiber->worker->block.idx : Dim3{0, 0, 0}; }
Dim3 blockDimension() { return tlsFiber ? tlsFiber->worker->block.spec->block : Dim3{1, 1, 1}; }
Dim3 gridDimension() { return tlsFiber ? tlsFiber->worker->block.spec->grid : Dim3{1, 1, 1}; }

void syncthreads(const char* file, int line) {
  Fiber* f = tlsFiber;
  if (!f) return;
  Worker& w = *f->worker;
  Block& b = w.block;
  if (b.barrierArrived == 0) {
    b.barrierFile = file;
    b.barrierLine = line;
  } else if (b.barrierLine != line || std::strcmp(b.barrierFile, file) != 0) {
    std::string here = std::string(file) + ":" + std::to_string(line), there = std::string(b.barrierFile) + ":" + std::to_string(b.barrierLine);
    for (std::string* s : {&here, &there}) {
      const size_t slash = s->rfind('/');
      if (slash != std::string::npos) *s = s->substr(slash + 1);
    }
    failThread(kErrorDeadlock, f->tid, "deadlock: threads reach different __syncthreads() call sites: this thread at " + here + ", " +
                                           std::to_string(b.barrierArrived) + " thread(s) wait at " + there);
  }
  w.barriers++;
  if (++b.barrierArrived == b.threads) {
    if (!b.unwrittenRead.empty()) failBlock(kErrorKernelFault, b.unwrittenRead);
    b.barrierArrived = 0;
    if (++w.epochCounter == 0) {  // wrapped: the shadow forgets this block's writes too
      std::fill(w.shadow.begin(), w.shadow.end(), ShadowByte{0, 0, 0, 0, 0, 0});
      w.epochCounter = 1;
      b.firstEpoch = 0;
    }
    b.epoch = w.epochCounter;
    for (int t = 0; t < b.threads; t++) {
      Fiber* o = w.fibers[size_t(t)].get();
      if (o->state == FiberState::AtBarrier) o->state = FiberState::Ready;
    }
    return;
  }
  f->state = FiberState::AtBarrier;
  yieldFiber(f);
}

void* dynamicShared(size_t align) {
  Fiber* f = tlsFiber;
  if (!f) return nullptr;
  (void)align;  // the arena is page-aligned
  return f->worker->block.shared;
}

void* staticShared(const char* name, size_t bytes, size_t align) {
  Fiber* f = tlsFiber;
  if (!f) return nullptr;
  Block& b = f->worker->block;
  const int k = f->staticDecls++;
  if (k < b.declCount) {
    const SharedDecl& d = b.decls[k];
    if (d.bytes != bytes || std::strcmp(d.name, name) != 0) {
      failThread(kErrorKernelFault, f->tid, "declares shared array '" + std::string(name) + "' (" + std::to_string(bytes) +
                                                " bytes) where other threads declared '" + d.name + "' (" + std::to_string(d.bytes) + " bytes)");
    }
    return b.shared + d.offset;
  }
  if (k >= int(sizeof(b.decls) / sizeof(b.decls[0]))) failThread(kErrorKernelFault, f->tid, "declares more than 32 shared arrays");
  const size_t offset = (b.used + align - 1) / align * align;
  const size_t end = offset + bytes;
  if (b.budget >= 0 && end > size_t(b.budget)) {
    failThread(kErrorKernelFault, f->tid, "shared array '" + std::string(name) + "' (" + std::to_string(bytes) + " bytes at offset " +
                                              std::to_string(offset) + ") takes the block's shared memory to " + std::to_string(end) +
                                              " bytes, beyond the config's declared budget of " + std::to_string(b.budget) + " bytes");
  }
  if (end > b.limit) {
    failThread(kErrorKernelFault, f->tid, "shared array '" + std::string(name) + "' takes the block's shared memory to " + std::to_string(end) +
                                              " bytes, beyond the device's " + std::to_string(b.limit));
  }
  b.decls[k] = SharedDecl{name, offset, bytes};
  b.declCount = k + 1;
  b.used = end;
  return b.shared + offset;
}

// ---- collectives: the rendezvous ---------------------------------------------------------------------------

const char* collectiveName(Collective c) {
  switch (c) {
    case Collective::None: return "nothing";
    case Collective::Shuffle: return "shfl.xor";
    case Collective::Ldmatrix: return "ldmatrix.x4";
    case Collective::LdmatrixTrans: return "ldmatrix.x4.trans";
    case Collective::Mma: return "mma.m16n8k16";
    case Collective::Mfma: return "v_mfma_f32_32x32x8";
  }
  return "?";
}

namespace {

// Deposits this lane's operands (filled by `in`), waits for the whole warp, and reads its results.
template <class In, class Out>
void rendezvous(Collective kind, const void* pc, In&& in, Out&& out) {
  Fiber* f = tlsFiber;
  Worker& w = *f->worker;
  Block& b = w.block;
  Warp& wp = b.warps[size_t(f->warp)];
  if (wp.arrived == 0) {
    wp.kind = kind;
  } else if (wp.kind != kind) {
    std::vector<int> lanes;
    for (int t = f->warp * b.warpSize; t < f->warp * b.warpSize + wp.lanes; t++) {
      if (w.fibers[size_t(t)]->state == FiberState::AtCollective) lanes.push_back(t % b.warpSize);
    }
    failThread(kErrorKernelFault, f->tid, "lanes of warp " + std::to_string(f->warp) + " reach different warp collectives: this lane (" +
                                              std::to_string(f->lane) + ") is at " + collectiveName(kind) + ", lanes " + threadRanges(lanes) +
                                              " wait at " + collectiveName(wp.kind));
  }
  in(wp.slots[f->lane]);
  w.collectives++;
  if (++wp.arrived == wp.lanes) {
    computeCollective(b, f->warp, wp, pc);
    wp.arrived = 0;
    for (int t = f->warp * b.warpSize; t < f->warp * b.warpSize + wp.lanes; t++) {
      Fiber* o = w.fibers[size_t(t)].get();
      if (o->state == FiberState::AtCollective) o->state = FiberState::Ready;
    }
  } else {
    f->state = FiberState::AtCollective;
    f->waitingAt = kind;
    yieldFiber(f);
  }
  out(wp.slots[f->lane]);
}

void requireKernel(const char* what) {
  if (!tlsFiber) {
    std::fprintf(stderr, "gemmkit emulator: %s called outside an emulated kernel\n", what);
    std::abort();
  }
}

}  // namespace

__attribute__((noinline)) uint32_t shuffleXorBits(uint32_t v, int laneMask) {
  requireKernel("shfl.xor");
  uint32_t result;
  rendezvous(
      Collective::Shuffle, __builtin_return_address(0),
      [&](LaneSlot& s) {
        s.in[0] = v;
        s.in[1] = uint32_t(laneMask);
      },
      [&](LaneSlot& s) { result = s.out[0]; });
  return result;
}

float shuffleXor(float v, int laneMask) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits = shuffleXorBits(bits, laneMask);
  std::memcpy(&v, &bits, 4);
  return v;
}

__attribute__((noinline)) void ldmatrixX4(uint32_t r[4], const void* smemRow, bool trans) {
  requireKernel("ldmatrix");
  rendezvous(
      trans ? Collective::LdmatrixTrans : Collective::Ldmatrix, __builtin_return_address(0),
      [&](LaneSlot& s) { s.address = reinterpret_cast<uintptr_t>(smemRow); }, [&](LaneSlot& s) { std::memcpy(r, s.out, 16); });
}

__attribute__((noinline)) void mmaM16N8K16(float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16) {
  requireKernel("mma");
  rendezvous(
      Collective::Mma, __builtin_return_address(0),
      [&](LaneSlot& s) {
        std::memcpy(&s.in[0], a, 16);
        std::memcpy(&s.in[4], b, 8);
        std::memcpy(&s.in[6], d, 16);
        s.in[10] = bf16;
      },
      [&](LaneSlot& s) { std::memcpy(d, s.out, 16); });
}

__attribute__((noinline)) void mfma32x32x8(float acc[16], uint32_t a0, uint32_t a1, uint32_t b0, uint32_t b1, bool bf16) {
  requireKernel("mfma");
  rendezvous(
      Collective::Mfma, __builtin_return_address(0),
      [&](LaneSlot& s) {
        s.in[0] = a0;
        s.in[1] = a1;
        s.in[2] = b0;
        s.in[3] = b1;
        s.in[4] = bf16;
        std::memcpy(&s.in[5], acc, 64);
      },
      [&](LaneSlot& s) { std::memcpy(acc, s.out, 64); });
}

// ---- cp.async ---------------------------------------------------------------------------------------------------

__attribute__((noinline)) void cpAsync16(void* smem, const void* gmem, int srcBytes) {
  requireKernel("cp.async");
  Fiber* f = tlsFiber;
  Worker& w = *f->worker;
  Block& b = w.block;
  const void* pc = __builtin_return_address(0);
  size_t off;
  if (!sharedOffset(w, smem, &off)) failThread(kErrorKernelFault, f->tid, "cp.async destination is not in the block's shared memory");
  if (off % 16 != 0) failThread(kErrorKernelFault, f->tid, "cp.async destination (shared offset " + std::to_string(off) + ") is not 16-byte aligned");
  if (reinterpret_cast<uintptr_t>(gmem) % 16 != 0) failThread(kErrorKernelFault, f->tid, "cp.async source is not 16-byte aligned");
  if (srcBytes < 0 || srcBytes > 16) failThread(kErrorKernelFault, f->tid, "cp.async source size " + std::to_string(srcBytes) + " is not in 0..16");
  if (off + 16 > b.used) {
    failThread(kErrorKernelFault, f->tid, "cp.async writes 16 bytes at shared offset " + std::to_string(off) + ", outside the " +
                                              std::to_string(b.used) + " bytes the block declared");
  }
  if (srcBytes > 0) checkGlobalRead(f, reinterpret_cast<uintptr_t>(gmem), size_t(srcBytes), pc);
  ShadowByte* shadow = w.shadow.data();
  for (size_t i = 0; i < 16; i++) {
    if (shadow[off + i].pendingCopy != 0) {
      failThread(kErrorKernelFault, f->tid, "cp.async to shared offset " + std::to_string(off) + " while " +
                                                threadName(b, shadow[off + i].pendingCopy - 1) + "'s cp.async to those bytes is still in flight");
    }
  }
  PendingCopy c;
  c.offset = uint32_t(off);
  c.group = f->committedGroups;
  std::memset(c.bytes, 0, 16);
  if (srcBytes > 0) std::memcpy(c.bytes, gmem, size_t(srcBytes));
  for (size_t i = 0; i < 16; i++) shadow[off + i].pendingCopy = uint16_t(f->tid + 1);
  f->copies.push_back(c);
}

void cpAsyncCommit() {
  requireKernel("cp.async.commit_group");
  tlsFiber->committedGroups++;
}

void deliverCopies(Fiber* f, int pending) {
  Worker& w = *f->worker;
  Block& b = w.block;
  // Committed groups are [0, committedGroups); the newest `pending` of them may stay in flight.
  const long long deliverBelow = (long long)f->committedGroups - pending;
  size_t kept = 0;
  for (size_t i = 0; i < f->copies.size(); i++) {
    PendingCopy& c = f->copies[i];
    if ((long long)c.group < deliverBelow) {
      for (size_t j = 0; j < 16; j++) w.shadow[c.offset + j].pendingCopy = 0;
      checkSharedAccess(b, w.shadow.data(), f->tid, c.offset, 16, true, nullptr);
      std::memcpy(b.shared + c.offset, c.bytes, 16);
    } else {
      f->copies[kept++] = c;
    }
  }
  f->copies.resize(kept);
}

void cpAsyncWait(int pending) {
  requireKernel("cp.async.wait_group");
  deliverCopies(tlsFiber, pending);
}

}  // namespace emu
}  // namespace gemmkit
