// One process-wide pool of compute threads, sized to the usable cores (GEMMKIT_NUM_THREADS overrides).
// Every GEMM borrows "core tokens" from it: a call takes as many as it wants that are free (at least
// one, waiting for it), and its calling thread counts as one of them. A system BLAS call takes a lease of
// the same tokens for the library's own threads. So however many matmuls run at once (async workers,
// several JS threads), whatever runs them, no more than size() threads compute at any moment.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace gemmkit {

class ThreadPool {
 public:
  static ThreadPool& instance();
  int size() const { return size_; }
  // Runs fn(task) for every task in [0, tasks) on up to `wantThreads` threads, the caller included,
  // and returns when all are done. Rethrows the first exception a task threw.
  void parallelFor(int tasks, int wantThreads, const std::function<void(int)>& fn);
  // Runs fn(member, team) once for every member in [0, team) on `team` threads at once, the caller being
  // member 0, where team (1..wantThreads) is what the core tokens granted. All members run concurrently,
  // so they may wait for each other (TeamBarrier); fn must not throw once a member may be waiting for it.
  void runTeam(int wantThreads, const std::function<void(int member, int team)>& fn);
  // Takes up to wantThreads core tokens (at least one, waiting for it) for work that runs on threads the
  // pool does not own (a system BLAS's), the calling thread counting as one; release() gives them back.
  // See CoreLease.
  int acquire(int wantThreads);
  void release(int tokens);

 private:
  struct Job;
  explicit ThreadPool(int size);  // never destroyed: workers are detached and live with the process
  void workerLoop();
  static void runTasks(Job& job);
  // Takes up to wantThreads core tokens (at least one, waiting for it) and runs job on them.
  void runJob(Job& job, int wantThreads, int tasksPerToken);
  // queue_.pop_front(), keeping queued_ in step; under the mutex.
  void popFront() {
    queue_.pop_front();
    queued_.store(int(queue_.size()), std::memory_order_release);
  }

  int size_;
  std::mutex mutex_;
  std::condition_variable workAvailable_;  // workers wait here for jobs
  std::condition_variable stateChanged_;   // callers wait here for tokens and job completion
  std::deque<Job*> queue_;                 // jobs that still want helpers
  std::atomic<int> queued_{0};             // queue_.size(), for workers spinning without the mutex
  int freeTokens_;
  std::vector<std::thread> workers_;
};

// A share of the pool's core budget held for the lifetime of the object: code that computes on threads of
// its own (a system BLAS) takes one before it starts them, and starts at most tokens() of them.
class CoreLease {
 public:
  explicit CoreLease(int wantThreads) : tokens_(ThreadPool::instance().acquire(wantThreads)) {}
  ~CoreLease() { ThreadPool::instance().release(tokens_); }
  CoreLease(const CoreLease&) = delete;
  CoreLease& operator=(const CoreLease&) = delete;
  int tokens() const { return tokens_; }

 private:
  int tokens_;
};

// The thread count the pool was sized with and where it came from, for info().
int configuredThreads();

// A reusable barrier for the members of one runTeam call: wait(team) returns once all `team` members
// called it. Members spin briefly, then yield the core (on a shared machine the awaited thread may need it).
class TeamBarrier {
 public:
  void wait(int members);

 private:
  std::atomic<int> arrived_{0};
  std::atomic<unsigned> generation_{0};
};

}  // namespace gemmkit
