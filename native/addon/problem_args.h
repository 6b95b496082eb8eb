// Turns the flat problem description built by src/native.ts into a Problem and Buffers, checking
// everything that could make C++ read or write outside a buffer even if the TypeScript layer has a bug.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "../core/backend.h"
#include "../cpu/packed_weight.h"
#include "host_memory.h"

namespace gemmkit {

struct UnpackedCall {
  const Backend* backend = nullptr;
  std::string config;  // empty: use the backend's heuristic
  Problem problem;
  Buffers buffers;
  // The host memory of a, b, c and bias, valid for the lifetime the call was unpacked with (host_memory.h).
  std::vector<HostOperand> operands;
  std::shared_ptr<const PackedWeight> packedB;  // a prepacked B's layout and panel
  std::shared_ptr<void> packedBHold;            // keeps the panel's memory for async work (CPU addon)

  // The config to run: the one named, else the backend's heuristic choice.
  std::string configOrHeuristic() const { return config.empty() ? backend->heuristic(problem) : config; }
  // On the JS thread once the work succeeded: copies results computed in snapshots into their arrays.
  Status finish();
};

// desc: { backend, config?, device?, m, n, k, batch, transA, transB, lda, ldb, ldc, strideA, strideB,
//         strideC, dtypeA, dtypeB, dtypeC, alpha, beta, activation, biasDtype?, a?, b?, c?, bias?, packedB? }
// With withBuffers, a, b and c are required and sized for the problem, their memory kept valid for
// `lifetime`. packedB (a prepack() handle) replaces b: it must match k, n and dtypeB. Throws a JS error
// when invalid.
UnpackedCall unpackCall(const Napi::Env& env, const Napi::Value& descValue, bool withBuffers,
                        HostLifetime lifetime = HostLifetime::Call);

// The typed array desc[key] as an operand of `elements` elements of dtype t (Float32Array for f32,
// Uint16Array for f16/bf16), kept valid for `lifetime`: a TypeError for a wrong or detached array, a
// RangeError for one too short. See HostOperand for output and readBack.
HostOperand hostOperand(const Napi::Env& env, const Napi::Object& desc, const char* key, DType t, int64_t elements,
                        HostLifetime lifetime, bool output = false, bool readBack = false);

// The same for a typed array of any element type given directly (`type` what it must be).
HostOperand hostOperand(const Napi::Env& env, const Napi::Value& v, const std::string& name, napi_typedarray_type type,
                        const char* typeName, int64_t elements, HostLifetime lifetime, bool output = false,
                        bool readBack = false);

// The weight description of prepack(): { config, k, n, transB, ldb, dtypeB, b } as the B of a problem
// (b is read during the call only).
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
