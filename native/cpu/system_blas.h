// The system BLAS as one more CPU candidate: a cblas_sgemm found at run time (dlopen), so the tuned
// table never loses to the library a user could have called instead. f32 only (A, B and C); the
// library computes alpha*op(A)op(B) + beta*C and a second pass over C adds the bias and activation.
// Each library found is one config named cpu.cblas.<library>-<version>, e.g. cpu.cblas.openblas-0.3.21.
// Its threads are the library's own, but they count against the pool's core budget: a call takes a
// lease of core tokens (CoreLease) before it enters the library and sets the library's thread count to
// the lease. The thread count is the library's global setting, so calls into one library take turns.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/problem.h"
#include "../core/status.h"

namespace gemmkit {

struct SystemBlas {
  std::string config;   // cpu.cblas.openblas-0.3.21
  std::string library;  // openblas, blis, mkl, blas (an unidentified libblas.so.3)
  std::string version;  // 0.3.21 ("unknown" when the library does not say)
  std::string path;     // what was dlopen()ed
  void* sgemm = nullptr;
  // Sets the library's thread count (openblas_set_num_threads, bli_thread_set_num_threads,
  // MKL_Set_Num_Threads), or null for a library that has none (it then runs as it is configured).
  void (*setThreads)(void* function, int threads) = nullptr;
  void* setThreadsFunction = nullptr;
  // Calls into the library take turns, each setting the thread count to its lease (guarded by mutex).
  struct Turn {
    std::mutex mutex;
    int threads = 0;  // the count last set
  };
  std::shared_ptr<Turn> turn = std::make_shared<Turn>();
};

// Every cblas library found (once per process; GEMMKIT_BLAS=path[:path...] replaces the default search
// list, GEMMKIT_BLAS=none disables it). Empty where none is installed or dlopen is unavailable.
const std::vector<SystemBlas>& systemBlasLibraries();

bool isSystemBlasConfig(const std::string& config);  // has the cpu.cblas. prefix
// The library behind a config, or the reason it cannot run p (unknown library, a dtype other than f32).
Status findSystemBlas(const Problem& p, const std::string& config, const SystemBlas** out);
// Runs p on the library with at most `threads` threads (fewer when the pool's core tokens are taken).
Status runSystemBlas(const Problem& p, const SystemBlas& blas, const Buffers& buf, int threads);

}  // namespace gemmkit
