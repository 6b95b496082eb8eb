// The seam between the GPU backend's runOp (plain C++) and the op kernels (op_launchers.cu, built by
// nvcc or the HIP compiler): the arguments every op kernel receives by value, and the one function
// that queues an op's kernels on a stream. Plain C++, no GPU headers.
#pragma once

#include <cstdint>

#include "../core/ops.h"
#include "../core/status.h"

namespace gemmkit {

// What an op kernel reads: the description and device pointers, the host int arrays included (the
// backend stages them to device memory first).
struct OpArgs {
  OpDesc op;
  const void* x = nullptr;
  const void* y = nullptr;
  void* out = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;        // LayerNorm: null for no bias
  const float* kCache = nullptr;
  const float* vCache = nullptr;
  // Device copies of OpBuffers' host arrays.
  const int32_t* ids = nullptr;        // Embedding: [rows]
  const int32_t* positions = nullptr;  // Rope: [rows]
  const int32_t* slotIndex = nullptr;  // KvStore, Attention: [batch]
  const int32_t* past = nullptr;       // KvStore, Attention: [batch]
  int32_t* idsOut = nullptr;           // Argmax: [rows], copied to the host by the backend
  // Attention: the positions each block covers are split over `splits` blocks (flash-decoding, for
  // decode steps that alone would not fill the device); with splits > 1 each writes its partial
  // (max, sum, output) to `partials` and a second kernel combines them.
  int splits = 1;
  float* partials = nullptr;  // [rows][heads][splits][headDim + 2] f32 when splits > 1
};

// The largest headDim the attention kernels take (their register blocks are sized for 64, 128, 256).
constexpr int kMaxAttentionHeadDim = 256;

// The split count of an attention whose longest sequence covers `maxKeys` positions (past + tokens)
// on a device with `computeUnits` SMs / CUs: 1 when its blocks fill the device several times over
// (prefill), else enough splits to do so (decode), each streaming at least 128 positions.
int attentionSplits(const OpDesc& op, int64_t maxKeys, int computeUnits);

// Bytes of f32 partials an attention with `splits` needs in the workspace (0 when splits == 1).
int64_t attentionPartialBytes(const OpDesc& op, int splits);

// Queues the op's kernels (one, or two for split attention) on `stream` (a cudaStream_t /
// hipStream_t). The caller has validated the op and staged its int arrays; rows and cols are > 0.
Status launchOpKernels(const OpArgs& args, void* stream);

}  // namespace gemmkit
