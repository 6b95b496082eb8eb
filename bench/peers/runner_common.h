// What the C++ peer runners (blis_runner.cpp, onednn_runner.cpp) share: the command line, the shape
// tokens, rotating input sets, the timing loop and the JSON-lines output that bench/peers/index.ts
// parses. openblas_runner.py follows the same protocol in Python; keep the three in step.
//
// Command line: RUNNER [--info] [--time-ms MS] [--footprint-bytes BYTES] [runner options] SHAPE...
//   SHAPE is M x N x K : t|n : dtype [: outDtype], e.g. 8x4096x14336:t:bf16:f32 (t: x @ W^T with
//   W stored [N, K]; n: A @ B with B stored [K, N]).
// Output, one JSON object per line:
//   {"kind":"info","peer":...,"detail":...,"ok":true|false}         once, first
//   {"kind":"result","shape":TOKEN,"medianMs":...,"runs":...,"sets":...,"impl":...}   per timed shape
//   {"kind":"skip","shape":TOKEN,"reason":...}                      per shape this peer cannot run
//   {"kind":"error","shape":TOKEN,"reason":...}                     per shape that failed
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "../../native/core/dtype.h"

namespace peers {

struct ShapeArg {
  std::string token;  // as given on the command line; echoed back so the caller can match results
  int64_t m = 0, n = 0, k = 0;
  bool transB = false;      // true: B is W stored [N, K] and the product is A @ W^T
  std::string dtype;        // of A and B: "f32" or "bf16"
  std::string outDtype;     // of C; defaults to dtype
};

struct RunnerArgs {
  bool infoOnly = false;
  double timeMs = 300;                 // time budget per shape after warm-up
  size_t footprintBytes = 128u << 20;  // rotate input sets until they cover at least this much memory
  std::vector<std::string> options;    // "--name=value" options the runner itself reads
  std::vector<ShapeArg> shapes;
};

inline bool parseShape(const std::string& token, ShapeArg* out) {
  long long m, n, k;
  char t;
  char dt[8] = {0}, odt[8] = {0};
  int got = std::sscanf(token.c_str(), "%lldx%lldx%lld:%c:%7[a-z0-9]:%7[a-z0-9]", &m, &n, &k, &t, dt, odt);
  if (got < 5 || m < 1 || n < 1 || k < 1 || (t != 't' && t != 'n')) return false;
  std::string d(dt), od(got == 6 ? odt : dt);
  if ((d != "f32" && d != "bf16") || (od != "f32" && od != "bf16")) return false;
  *out = ShapeArg{token, m, n, k, t == 't', d, od};
  return true;
}

inline std::string jsonString(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') { r += '\\'; r += c; }
    else if (static_cast<unsigned char>(c) < 0x20) r += ' ';
    else r += c;
  }
  return r + "\"";
}

// ok = false: the peer is installed but cannot run as asked (the detail says why).
inline void emitInfo(const std::string& peer, const std::string& detail, bool ok = true) {
  std::printf("{\"kind\":\"info\",\"peer\":%s,\"detail\":%s,\"ok\":%s}\n", jsonString(peer).c_str(),
              jsonString(detail).c_str(), ok ? "true" : "false");
  std::fflush(stdout);
}

inline void emitSkip(const ShapeArg& s, const char* kind, const std::string& reason) {
  std::printf("{\"kind\":\"%s\",\"shape\":%s,\"reason\":%s}\n", kind, jsonString(s.token).c_str(),
              jsonString(reason).c_str());
  std::fflush(stdout);
}

inline void emitResult(const ShapeArg& s, double medianMs, int runs, int sets, const std::string& impl) {
  std::printf("{\"kind\":\"result\",\"shape\":%s,\"medianMs\":%.6f,\"runs\":%d,\"sets\":%d,\"impl\":%s}\n",
              jsonString(s.token).c_str(), medianMs, runs, sets, jsonString(impl).c_str());
  std::fflush(stdout);
}

// Exits with status 2 on a malformed command line (the caller built it, so that is a bug there).
inline RunnerArgs parseArgs(int argc, char** argv) {
  RunnerArgs a;
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    if (s == "--info") a.infoOnly = true;
    else if (s == "--time-ms" && i + 1 < argc) a.timeMs = std::atof(argv[++i]);
    else if (s == "--footprint-bytes" && i + 1 < argc) a.footprintBytes = std::strtoull(argv[++i], nullptr, 10);
    else if (s.rfind("--", 0) == 0 && s.find('=') != std::string::npos) a.options.push_back(s);
    else {
      ShapeArg shape;
      if (!parseShape(s, &shape)) {
        std::fprintf(stderr, "%s: bad argument '%s' (expected MxNxK:t|n:f32|bf16[:f32|bf16])\n", argv[0], s.c_str());
        std::exit(2);
      }
      a.shapes.push_back(shape);
    }
  }
  return a;
}

inline std::string option(const RunnerArgs& a, const std::string& name, const std::string& fallback) {
  for (const auto& o : a.options)
    if (o.rfind("--" + name + "=", 0) == 0) return o.substr(name.size() + 3);
  return fallback;
}

// How many independent (A, B, C) sets to cycle through so that consecutive calls do not find their
// operands in the last-level cache, as in serving where every layer has its own weights.
inline int rotatingSets(size_t bytesPerSet, size_t footprintBytes) {
  if (bytesPerSet >= footprintBytes) return 1;
  return int(std::min<size_t>(16, (footprintBytes + bytesPerSet - 1) / bytesPerSet));
}

// 64-byte aligned, zeroed floats, as a serving stack allocates its tensors (no split cache lines).
using FloatBuffer = std::unique_ptr<float[], void (*)(void*)>;
inline FloatBuffer alignedFloats(size_t n) {
  size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return FloatBuffer(p, std::free);
}

// Deterministic values in [-1, 1): the timing must not depend on the data, but zeros and denormals
// would flatter or slow some kernels.
inline void fillF32(float* p, size_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = float(s >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
}

inline void fillBf16(uint16_t* p, size_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = gemmkit::f32ToBf16(float(s >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
}

// Before a peer is timed its result is checked, so that a figure never comes from a misread layout:
// sampled entries of C [M, N] against a float64 dot product, the error relative to sum |a * b| (which
// bounds the rounding of any summation order). a(i, k), b(k, j) read op(A), op(B); c(i, j) reads C.
template <typename GetA, typename GetB, typename GetC>
double sampledError(const ShapeArg& s, GetA&& a, GetB&& b, GetC&& c) {
  double worst = 0;
  uint32_t r = 12345;
  for (int sample = 0; sample < 64; sample++) {
    int64_t i = sample == 0 ? 0 : sample == 1 ? s.m - 1 : int64_t((r = r * 1664525u + 1013904223u) >> 8) % s.m;
    int64_t j = sample == 0 ? 0 : sample == 1 ? s.n - 1 : int64_t((r = r * 1664525u + 1013904223u) >> 8) % s.n;
    double dot = 0, mag = 0;
    for (int64_t k = 0; k < s.k; k++) {
      double p = double(a(i, k)) * double(b(k, j));
      dot += p;
      mag += p < 0 ? -p : p;
    }
    double err = double(c(i, j)) - dot;
    err = (err < 0 ? -err : err) / (mag > 0 ? mag : 1);
    if (!(err <= worst)) worst = err;  // NaN sticks
  }
  return worst;
}

// The largest sampledError a correct result can have: f32 accumulation over K, then the output's rounding.
inline double errorLimit(const ShapeArg& s) { return s.outDtype == "bf16" ? 1e-2 : 2e-3; }

inline std::string errorText(double err) {
  char b[64];
  std::snprintf(b, sizeof b, "wrong result: sampled error %.3g relative to sum |a*b|", err);
  return b;
}

struct Timing {
  double medianMs;
  int runs;
};

inline double medianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One warm-up call per set (at most 3), then single timed calls rotating through the sets until at
// least 5 calls and timeMs have passed (at most 2000 calls); the median call time.
template <typename Call>
Timing timeCalls(int sets, double timeMs, Call&& call) {
  using clock = std::chrono::steady_clock;
  for (int s = 0; s < std::min(sets, 3); s++) call(s);
  std::vector<double> ms;
  auto start = clock::now();
  for (int i = 0;; i++) {
    auto t0 = clock::now();
    call(i % sets);
    auto t1 = clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    double elapsed = std::chrono::duration<double, std::milli>(t1 - start).count();
    if ((ms.size() >= 5 && elapsed >= timeMs) || ms.size() >= 2000) break;
  }
  return Timing{medianOf(ms), int(ms.size())};
}

}  // namespace peers
