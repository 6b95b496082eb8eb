#include "thread_pool.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <thread>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cpu_features.h"

namespace gemmkit {

struct ThreadPool::Job {
  const std::function<void(int)>* fn;
  int tasks;
  int helpersWanted;
  int helpersJoined = 0;   // guarded by the pool mutex
  std::atomic<int> helpersActive{0};  // changed under the pool mutex; read without it while spinning
  std::atomic<int> next{0};
  std::exception_ptr error;  // first failure, guarded by the pool mutex
  std::mutex* poolMutex;
};

namespace {

// A decode step runs dozens of small GEMMs on the pool with a few tens of microseconds of other work
// (the host's calls, single-threaded ops) between them. A worker that went to sleep on the condition
// variable after each one takes a futex wake-up and a reschedule (tens of microseconds on a VM) to join
// the next; so a worker that finished a job first spins this long for the next one, and a caller whose
// helpers are still busy spins this long before it sleeps. Bounded, so an idle pool costs nothing.
const std::chrono::microseconds kWorkerSpin{200};
const std::chrono::microseconds kCallerSpin{50};

inline void cpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until done() or `limit` has passed; whether done() came true.
template <typename Done>
bool spinUntil(Done done, std::chrono::microseconds limit) {
  if (limit.count() <= 0) return done();
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    for (int i = 0; i < 64; i++) {
      if (done()) return true;
      cpuRelax();
    }
    if (std::chrono::steady_clock::now() >= end) return done();
  }
}

}  // namespace

int configuredThreads() {
  int cores = cpuFeatures().cores;
  const char* env = std::getenv("GEMMKIT_NUM_THREADS");
  if (env && *env) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end && *end == 0 && v >= 1 && v <= 4096) return int(v);
  }
  return cores;
}

ThreadPool& ThreadPool::instance() {
  // Never destroyed: worker threads must not be joined during static destruction of the addon.
  static ThreadPool* pool = new ThreadPool(configuredThreads());
  return *pool;
}

ThreadPool::ThreadPool(int size) : size_(size), freeTokens_(size) {
  for (int i = 0; i + 1 < size; i++) workers_.emplace_back([this] { workerLoop(); });
  for (auto& w : workers_) w.detach();
}

void ThreadPool::runTasks(Job& job) {
  for (;;) {
    int t = job.next.fetch_add(1);
    if (t >= job.tasks) return;
    try {
      (*job.fn)(t);
    } catch (...) {
      std::lock_guard<std::mutex> lock(*job.poolMutex);
      if (!job.error) job.error = std::current_exception();
      job.next.store(job.tasks);  // skip what is left
    }
  }
}

void ThreadPool::workerLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (queue_.empty()) {
      lock.unlock();
      spinUntil([this] { return queued_.load(std::memory_order_acquire) > 0; }, kWorkerSpin);
      lock.lock();
    }
    workAvailable_.wait(lock, [this] { return !queue_.empty(); });
    Job* job = queue_.front();
    job->helpersJoined++;
    job->helpersActive++;
    if (job->helpersJoined >= job->helpersWanted) popFront();
    lock.unlock();
    runTasks(*job);
    lock.lock();
    job->helpersActive--;
    stateChanged_.notify_all();
  }
}

void ThreadPool::runJob(Job& job, int wantThreads, int tasksPerToken) {
  int tokens;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    stateChanged_.wait(lock, [this] { return freeTokens_ > 0; });
    tokens = wantThreads < freeTokens_ ? wantThreads : freeTokens_;
    freeTokens_ -= tokens;
    if (tasksPerToken > 0) job.tasks = tokens * tasksPerToken;
    job.helpersWanted = tokens - 1;
    if (job.helpersWanted > 0) {
      queue_.push_back(&job);
      queued_.store(int(queue_.size()), std::memory_order_release);
      workAvailable_.notify_all();
    }
  }
  runTasks(job);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    // Helpers that never joined are no longer wanted: every task has been taken.
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (*it == &job) {
        queue_.erase(it);
        queued_.store(int(queue_.size()), std::memory_order_release);
        break;
      }
    }
    if (job.helpersActive.load() > 0) {
      lock.unlock();
      spinUntil([&job] { return job.helpersActive.load(std::memory_order_acquire) == 0; }, kCallerSpin);
      lock.lock();
    }
    stateChanged_.wait(lock, [&job] { return job.helpersActive == 0; });
    freeTokens_ += tokens;
    stateChanged_.notify_all();
  }
  if (job.error) std::rethrow_exception(job.error);
}

int ThreadPool::acquire(int wantThreads) {
  if (wantThreads < 1) wantThreads = 1;
  std::unique_lock<std::mutex> lock(mutex_);
  stateChanged_.wait(lock, [this] { return freeTokens_ > 0; });
  const int tokens = wantThreads < freeTokens_ ? wantThreads : freeTokens_;
  freeTokens_ -= tokens;
  return tokens;
}

void ThreadPool::release(int tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  freeTokens_ += tokens;
  stateChanged_.notify_all();
}

void ThreadPool::parallelFor(int tasks, int wantThreads, const std::function<void(int)>& fn) {
  if (tasks <= 0) return;
  if (wantThreads > tasks) wantThreads = tasks;
  if (wantThreads < 1) wantThreads = 1;
  Job job;
  job.fn = &fn;
  job.tasks = tasks;
  job.poolMutex = &mutex_;
  runJob(job, wantThreads, 0);
}

// One task per token granted. Every free token stands for an idle worker (a job's tokens return to the
// pool only after its helpers left it), so all helpers of the team join, and the task a member claims
// first is the only one it runs while another member may wait for it.
void ThreadPool::runTeam(int wantThreads, const std::function<void(int member, int team)>& fn) {
  if (wantThreads < 1) wantThreads = 1;
  Job job;
  // job.tasks is set (to the tokens granted) under the pool mutex before any member runs.
  const std::function<void(int)> member = [&fn, &job](int t) { fn(t, job.tasks); };
  job.fn = &member;
  job.poolMutex = &mutex_;
  runJob(job, wantThreads, 1);
}

void TeamBarrier::wait(int members) {
  const unsigned generation = generation_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) == members - 1) {
    arrived_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    return;
  }
  for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; spins++) {
    if (spins >= 2000) std::this_thread::yield();
  }
}

}  // namespace gemmkit
