// The system BLAS as one more CPU candidate: a cblas_sgemm found at run time (dlopen), so the tuned
// table never loses to the library a user could have called instead. f32 only (A, B and C); the
// library computes alpha*op(A)op(B) + beta*C and a second pass over C adds the bias and activation.
// Each library found is one config named cpu.cblas.<library>-<version>, e.g. cpu.cblas.openblas-0.3.21.
// Its threads are the library's own (set to the pool's size when it loads), not the pool's core tokens.
#pragma once

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
};

// Every cblas library found (once per process; GEMMKIT_BLAS=path[:path...] replaces the default search
// list, GEMMKIT_BLAS=none disables it). Empty where none is installed or dlopen is unavailable.
const std::vector<SystemBlas>& systemBlasLibraries();

bool isSystemBlasConfig(const std::string& config);  // has the cpu.cblas. prefix
// The library behind a config, or the reason it cannot run p (unknown library, a dtype other than f32).
Status findSystemBlas(const Problem& p, const std::string& config, const SystemBlas** out);
Status runSystemBlas(const Problem& p, const SystemBlas& blas, const Buffers& buf);

}  // namespace gemmkit
