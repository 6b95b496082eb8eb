#include "system_blas.h"

#include <climits>
#include <cstdlib>
#include <mutex>

#include "epilogue.h"
#include "thread_pool.h"

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>
#define GEMMKIT_HAVE_DLOPEN 1
#endif

namespace gemmkit {

namespace {

// CBLAS enum values are fixed by the standard header: row-major 101, no-trans 111, trans 112.
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;
using CblasSgemm = void (*)(int order, int transA, int transB, int m, int n, int k, float alpha, const float* a,
                            int lda, const float* b, int ldb, float beta, float* c, int ldc);

const char* kDefaultSearch[] = {"libopenblas.so.0", "libblis.so.4", "libblis.so.3", "libmkl_rt.so.2",
                                "libmkl_rt.so",     "libblas.so.3", "libopenblas.dylib"};

#ifdef GEMMKIT_HAVE_DLOPEN
template <typename F>
F symbol(void* handle, const char* name) {
  return reinterpret_cast<F>(dlsym(handle, name));
}

// The libraries' thread-count setters, behind one signature.
void setIntThreads(void* f, int threads) { reinterpret_cast<void (*)(int)>(f)(threads); }
void setLongThreads(void* f, int threads) { reinterpret_cast<void (*)(long)>(f)(long(threads)); }

// Names the library, asks it for its version and finds its thread-count setter.
void identify(void* handle, SystemBlas* out) {
  if (auto config = symbol<const char* (*)()>(handle, "openblas_get_config")) {
    out->library = "openblas";
    std::string s = config();  // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64"
    size_t a = s.find(' ');
    size_t b = a == std::string::npos ? a : s.find(' ', a + 1);
    if (a != std::string::npos) out->version = s.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
    out->setThreadsFunction = dlsym(handle, "openblas_set_num_threads");
    out->setThreads = setIntThreads;
  } else if (auto version = symbol<const char* (*)()>(handle, "bli_info_get_version_str")) {
    out->library = "blis";
    out->version = version();
    out->setThreadsFunction = dlsym(handle, "bli_thread_set_num_threads");
    out->setThreads = setLongThreads;
  } else if (auto mklVersion = symbol<void (*)(char*, int)>(handle, "MKL_Get_Version_String")) {
    out->library = "mkl";
    char buf[256] = {0};
    mklVersion(buf, sizeof buf - 1);
    std::string s = buf;  // "Intel(R) oneAPI Math Kernel Library Version 2024.0.0 Product Build ..."
    size_t v = s.find("Version ");
    if (v != std::string::npos) out->version = s.substr(v + 8, s.find(' ', v + 8) - v - 8);
    out->setThreadsFunction = dlsym(handle, "MKL_Set_Num_Threads");
    out->setThreads = setIntThreads;
  } else {
    out->library = "blas";
  }
  if (!out->setThreadsFunction) out->setThreads = nullptr;
  if (out->version.empty()) out->version = "unknown";
  // Keep config names to the characters every other config name uses.
  for (char& ch : out->version) {
    bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || ch == '.';
    if (!ok) ch = (ch >= 'A' && ch <= 'Z') ? char(ch - 'A' + 'a') : '-';
  }
  out->config = "cpu.cblas." + out->library + "-" + out->version;
}
#endif

std::vector<SystemBlas> search() {
  std::vector<SystemBlas> found;
#ifdef GEMMKIT_HAVE_DLOPEN
  std::vector<std::string> paths;
  const char* env = std::getenv("GEMMKIT_BLAS");
  if (env && std::string(env) == "none") return found;
  if (env && *env) {
    std::string s = env;
    size_t start = 0;
    for (;;) {
      size_t colon = s.find(':', start);
      std::string p = s.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      if (!p.empty()) paths.push_back(p);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  } else {
    for (const char* p : kDefaultSearch) paths.push_back(p);
  }
  // A BLAS's worker threads spin after each call by default, taking the cores from the next GEMM (ours
  // or its own) for milliseconds; in a process that mixes configs that costs more than it saves. Unless
  // the user chose otherwise, they sleep as soon as they are idle. Read by the libraries when they load.
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);  // OpenBLAS: spin 2^4 cycles, then sleep
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);    // BLIS/MKL built with OpenMP
  for (const std::string& path : paths) {
    // RTLD_LOCAL: two BLAS libraries loaded side by side must not resolve each other's symbols.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) continue;
    SystemBlas blas;
    blas.path = path;
    blas.sgemm = reinterpret_cast<void*>(dlsym(handle, "cblas_sgemm"));
    if (!blas.sgemm) {
      dlclose(handle);
      continue;
    }
    identify(handle, &blas);
    bool duplicate = false;  // libblas.so.3 is often an alternative pointing at a library already found
    for (const SystemBlas& f : found) duplicate = duplicate || f.config == blas.config || f.sgemm == blas.sgemm;
    if (duplicate) continue;  // the handle stays open: harmless, and the library may be shared
    found.push_back(blas);
  }
#endif
  return found;
}

}  // namespace

const std::vector<SystemBlas>& systemBlasLibraries() {
  static const std::vector<SystemBlas> libraries = search();
  return libraries;
}

bool isSystemBlasConfig(const std::string& config) { return config.rfind("cpu.cblas.", 0) == 0; }

Status findSystemBlas(const Problem& p, const std::string& config, const SystemBlas** out) {
  const SystemBlas* blas = nullptr;
  for (const SystemBlas& b : systemBlasLibraries()) {
    if (b.config == config) blas = &b;
  }
  if (!blas) {
    std::string have;
    for (const SystemBlas& b : systemBlasLibraries()) have += (have.empty() ? "" : ", ") + b.config;
    return unsupported("config " + config + " names a system BLAS that is not loaded here (found: " +
                       (have.empty() ? std::string("none") : have) + ")");
  }
  if (p.dtypeA != DType::F32 || p.dtypeB != DType::F32 || p.dtypeC != DType::F32) {
    return unsupported("config " + config + " runs f32 only, not " + p.describe());
  }
  const int64_t big = INT_MAX;
  if (p.m > big || p.n > big || p.k > big || p.lda > big || p.ldb > big || p.ldc > big) {
    return unsupported("config " + config + ": " + p.describe() + " has a dimension past the 32-bit BLAS interface");
  }
  *out = blas;
  return Status::ok();
}

Status runSystemBlas(const Problem& p, const SystemBlas& blas, const Buffers& buf, int threads) {
  if (p.m == 0 || p.n == 0 || p.batch == 0) return Status::ok();
  auto sgemm = reinterpret_cast<CblasSgemm>(blas.sgemm);
  const std::vector<float> bias = biasAsF32(p, buf.bias);
  // The library's threads count against the pool's core budget like the engine's: its turn first (so a
  // waiting call holds no tokens), then a lease, and the library runs on as many threads as it holds.
  std::unique_lock<std::mutex> turn(blas.turn->mutex);
  CoreLease lease(threads);
  if (blas.setThreads && blas.turn->threads != lease.tokens()) {
    blas.setThreads(blas.setThreadsFunction, lease.tokens());
    blas.turn->threads = lease.tokens();
  }
  for (int64_t item = 0; item < p.batch; item++) {
    const float* a = static_cast<const float*>(buf.a) + item * p.strideA;  // A: rowsA x lda
    const float* b = static_cast<const float*>(buf.b) + item * p.strideB;  // B: rowsB x ldb
    float* c = static_cast<float*>(buf.c) + item * p.strideC;              // C: m x ldc
    if (p.k == 0) {
      // Not every library honours beta == 0 when k == 0 (C may hold NaN); do it here.
      for (int64_t i = 0; i < p.m; i++) {
        for (int64_t j = 0; j < p.n; j++) c[i * p.ldc + j] = p.beta == 0.0f ? 0.0f : p.beta * c[i * p.ldc + j];
      }
    } else {
      sgemm(kCblasRowMajor, p.transA ? kCblasTrans : kCblasNoTrans, p.transB ? kCblasTrans : kCblasNoTrans, int(p.m),
            int(p.n), int(p.k), p.alpha, a, int(p.lda), b, int(p.ldb), p.beta, c, int(p.ldc));
    }
  }
  turn.unlock();
  for (int64_t item = 0; item < p.batch; item++) {
    float* c = static_cast<float*>(buf.c) + item * p.strideC;  // C: m x ldc
    if (p.hasBias || p.activation != Activation::None) {
      for (int64_t i = 0; i < p.m; i++) {
        float* row = c + i * p.ldc;
        for (int64_t j = 0; j < p.n; j++) {
          float v = row[j] + (p.hasBias ? bias[size_t(j)] : 0.0f);
          row[j] = applyActivation(p.activation, v);
        }
      }
    }
  }
  return Status::ok();
}

}  // namespace gemmkit
