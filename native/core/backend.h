// The backend seam (DESIGN.md seam 2). A backend knows its kernel configurations only by their canonical
// names at this boundary; inside, each name parses to the backend's own config struct and back.
// Adding a backend means implementing this interface in its own folder and one registerBackend() call.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ops.h"
#include "problem.h"
#include "status.h"

namespace gemmkit {

struct DeviceInfo {
  std::string name;     // "AMD EPYC 9R14", "NVIDIA H200"
  std::string arch;     // "x86-64-avx512", "sm_90", "gfx942:sramecc+:xnack-"
  int computeUnits = 0; // cores, SMs or CUs
  int64_t memoryBytes = 0;
};

struct TimingOptions {
  int warmup = 2;                 // untimed runs first
  int iterations = 10;            // timed runs; the caller takes the median
  int64_t rotatingBytes = 0;      // inputs rotate through copies totalling at least this many bytes
  double maxMilliseconds = 0.0;   // stop early once this much time was spent (0: no bound)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual std::vector<DeviceInfo> devices() const = 0;
  // Every configuration worth timing for this problem (the tuner's search space).
  virtual std::vector<std::string> candidates(const Problem& p) const = 0;
  // The configuration used when nothing is tuned for this problem.
  virtual std::string heuristic(const Problem& p) const = 0;
  // Ok when `config` names a valid configuration that can run `p` on this machine; else why not.
  virtual Status supports(const Problem& p, const std::string& config) const = 0;
  virtual Status run(const Problem& p, const std::string& config, const Buffers& buf) const = 0;
  // The prepacked-weight layout `config` reads B in (Problem::packedB), or "" when it reads B as stored,
  // so prepacking does not apply to it. Backends without prepacking keep the default.
  virtual std::string packedLayout(const std::string& config) const {
    (void)config;
    return "";
  }
  // Runs one op beyond GEMM (ops.h) on this backend's memory. Backends without ops keep the default.
  virtual Status runOp(const OpDesc& op, const OpBuffers& buf) const {
    (void)op;
    (void)buf;
    return unsupported(std::string("backend '") + name() + "' has no ops beyond GEMM");
  }
  // Per-iteration wall times in microseconds of running `config` on buffers the backend allocates.
  virtual Status time(const Problem& p, const std::string& config, const TimingOptions& opts,
                      std::vector<double>* microseconds) const = 0;
};

void registerBackend(std::unique_ptr<Backend> backend);
const Backend* findBackend(const std::string& name);  // nullptr when not registered
std::vector<const Backend*> allBackends();

}  // namespace gemmkit
