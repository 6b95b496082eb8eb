// What every addon (CPU, CUDA, HIP) does the same way over its registered Backend: the Node-API calls
// heuristic, candidates, supports, packedLayout and timeConfig; the AsyncWorker behind each promise
// they return; and the pieces of info() they share. One implementation, compiled into each addon.
#pragma once

#include <napi.h>

#include <string>
#include <utility>

#include "../core/status.h"

namespace gemmkit {

// Sets exports.heuristic, .candidates, .supports, .packedLayout and .timeConfig.
void exportBackendCalls(Napi::Env env, Napi::Object exports);

// Runs run() on the libuv thread pool and settles a promise: rejected with statusError() of a failed
// Status, else, once finish() succeeded on the JS thread, resolved with result(). What the work reads
// (held host memory, device allocations) belongs in the subclass, so it lives until the promise
// settles and is released on the JS thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  // Queues the worker (it deletes itself once settled) and returns its promise.
  Napi::Promise queue();

 protected:
  PromiseWorker(Napi::Env env, const char* name);
  virtual Status run() = 0;                                   // on a libuv thread
  virtual Status finish() { return Status::ok(); }            // on the JS thread, once run() succeeded
  virtual Napi::Value result() { return Env().Undefined(); }  // on the JS thread, once finish() succeeded

 private:
  void Execute() override;
  // Settles the promise on the JS thread and deletes the worker. Never throws: while an environment
  // shuts down (a worker terminated with calls in flight) every call into JS fails, and an exception
  // escaping here would abort the process.
  void OnWorkComplete(Napi::Env env, napi_status status) override;
  void settle();

  Status status_;
  Napi::Promise::Deferred deferred_;
};

// A promise of undefined that settles once work() (a callable returning Status, moved in with all it
// holds) has run on the libuv thread pool.
template <typename Work>
Napi::Promise queueWork(Napi::Env env, const char* name, Work work) {
  class Worker : public PromiseWorker {
   public:
    Worker(Napi::Env env, const char* name, Work work) : PromiseWorker(env, name), work_(std::move(work)) {}

   private:
    Status run() override { return work_(); }
    Work work_;
  };
  return (new Worker(env, name, std::move(work)))->queue();
}

// A promise of undefined that settles once work(held) (a callable returning Status) has run on the libuv
// thread pool and held.finish() has copied its results into the memory JS gave for them (on the JS
// thread; a failure rejects the promise). `held` (an UnpackedCall or a struct around one) keeps the
// memory the work uses valid until then.
template <typename Held, typename Work>
Napi::Promise queueHeldWork(Napi::Env env, const char* name, Held held, Work work) {
  class Worker : public PromiseWorker {
   public:
    Worker(Napi::Env env, const char* name, Held held, Work work)
        : PromiseWorker(env, name), held_(std::move(held)), work_(std::move(work)) {}

   private:
    Status run() override { return work_(held_); }
    Status finish() override { return held_.finish(); }
    Held held_;
    Work work_;
  };
  return (new Worker(env, name, std::move(held), std::move(work)))->queue();
}

// info().libraries[i]: a library whose version can change a tuned result.
Napi::Object libraryObject(Napi::Env env, const std::string& name, const std::string& version, const std::string& path,
                           const std::string& config);

// info().compiler: the compiler that built the addon.
const char* compilerName();

}  // namespace gemmkit
