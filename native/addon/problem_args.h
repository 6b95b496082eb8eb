// Turns the flat problem description built by src/native.ts into a Problem and Buffers, checking
// everything that could make C++ read or write outside a buffer even if the TypeScript layer has a bug.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "../core/backend.h"

namespace gemmkit {

struct UnpackedCall {
  const Backend* backend = nullptr;
  std::string config;  // empty: use the backend's heuristic
  Problem problem;
  Buffers buffers;
  std::vector<Napi::ObjectReference> keepAlive;  // the typed arrays, held while work is in flight
};

// desc: { backend, config?, m, n, k, batch, transA, transB, lda, ldb, ldc, strideA, strideB, strideC,
//         dtypeA, dtypeB, dtypeC, alpha, beta, activation, biasDtype?, a?, b?, c?, bias? }
// With withBuffers, a, b and c are required and sized for the problem. Throws a JS error when invalid.
UnpackedCall unpackCall(const Napi::Env& env, const Napi::Value& descValue, bool withBuffers);

// The JS error for a failed Status: TypeError, RangeError or Error, by status code.
Napi::Error statusError(const Napi::Env& env, const Status& s);

}  // namespace gemmkit
