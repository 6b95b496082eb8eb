// Turns the flat problem description built by src/native.ts into a Problem and Buffers, checking
// everything that could make C++ read or write outside a buffer even if the TypeScript layer has a bug.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "../core/backend.h"
#include "../cpu/packed_weight.h"

namespace gemmkit {

struct UnpackedCall {
  const Backend* backend = nullptr;
  std::string config;  // empty: use the backend's heuristic
  Problem problem;
  Buffers buffers;
  std::vector<Napi::ObjectReference> keepAlive;  // the typed arrays, held while work is in flight
  std::shared_ptr<const PackedWeight> packedB;   // a prepacked B, held while work is in flight

  // The config to run: the one named, else the backend's heuristic choice.
  std::string configOrHeuristic() const { return config.empty() ? backend->heuristic(problem) : config; }
};

// desc: { backend, config?, device?, m, n, k, batch, transA, transB, lda, ldb, ldc, strideA, strideB,
//         strideC, dtypeA, dtypeB, dtypeC, alpha, beta, activation, biasDtype?, a?, b?, c?, bias?, packedB? }
// With withBuffers, a, b and c are required and sized for the problem. packedB (a prepack() handle)
// replaces b: it must match k, n and dtypeB. Throws a JS error when invalid.
UnpackedCall unpackCall(const Napi::Env& env, const Napi::Value& descValue, bool withBuffers);

// The weight description of prepack(): { config, k, n, transB, ldb, dtypeB, b } as the B of a problem.
UnpackedCall unpackWeight(const Napi::Env& env, const Napi::Value& descValue);

// Elements a strided matrix batch touches: the last element's index plus one (0 when empty).
int64_t matrixExtent(int64_t batch, int64_t stride, int64_t rows, int64_t ld, int64_t cols);
// The elements of A, B and C a problem touches (what a buffer for each must hold).
int64_t extentA(const Problem& p);
int64_t extentB(const Problem& p);
int64_t extentC(const Problem& p);

// v as a non-negative integer (at most 2^53 - 1); a TypeError or RangeError naming `name` otherwise.
int64_t nonNegativeInteger(const Napi::Env& env, const Napi::Value& v, const std::string& name);

// The JS error for a failed Status: TypeError, RangeError or Error, by status code.
Napi::Error statusError(const Napi::Env& env, const Status& s);

}  // namespace gemmkit
