// The ops beyond GEMM that a model needs (DESIGN.md seam 6): one plain description per call, run by a
// backend's runOp() on its own memory: the CPU engine (native/cpu) or a GPU (native/gpu, written once
// for CUDA and HIP, and run by the emulator on a CPU). GEMMs keep going through Problem and run().
//
// Conventions shared by every op and every backend:
// - Matrices are row-major [rows, cols] with a row stride in elements (ld* >= the row's extent); a
//   column block of a wider matrix (q, k and v inside one fused projection output) is its first
//   element's pointer plus the wider matrix's ld.
// - Arithmetic is f32 whatever the storage dtype (f32, f16 or bf16); a 16-bit output is rounded once
//   to nearest even (dtype.h), exactly as GEMM outputs are.
// - The small integer arrays (token ids, positions, cache slots, past lengths, argmax results) are
//   always host memory, also for GPU backends, which stage them to the device themselves: they are a
//   few bytes per row, and generate() needs only the chosen ids back on the host.
// - Every index an op reads from those arrays is checked (ids < vocab, slot < slots, past + tokens
//   <= capacity) before anything runs; a bad one is an OutOfRange Status naming it, never a stray access.
// - The KV cache of one layer is two buffers [slots][kvHeads][capacity][headDim] f32 (keys, values).
#pragma once

#include <cstdint>

#include "activation.h"
#include "dtype.h"

namespace gemmkit {

enum class OpKind : int32_t {
  // out[r, :cols] = table[ids[r], :cols]                    table: [vocab, ldTable=ldx] (x), out: [rows, ldout]
  Embedding = 0,
  // out[r, c] = x[r, c] / sqrt(mean_c(x[r, :]^2) + eps) * weight[c]
  RmsNorm = 1,
  // out[r, c] = (x[r, c] - mean) / sqrt(var + eps) * weight[c] + (bias ? bias[c] : 0)   (biased variance)
  LayerNorm = 2,
  // In place on x [rows, heads * headDim] (ldx): per head, for i < headDim / 2, the pair
  // (x[i], x[i + headDim / 2]) is rotated by the angle of (positions[r], i): rotate_half, as HF Llama.
  // cos and sin are the model's tables [>= max position + 1][headDim / 2] f32 (weight = cos, bias = sin).
  Rope = 3,
  // Appends new keys or values: cache[slots[b]][h][past[b] + t][:] = x[b * tokens + t, h * headDim + :]
  // for b < batch, t < tokens, h < kvHeads. x: [batch * tokens, kvHeads * headDim] (ldx), cache: out.
  KvStore = 4,
  // Causal attention over the cache, grouped-query: query row r = b * tokens + t, head h reads kv head
  // h / (heads / kvHeads) of slot slots[b] at positions [0, past[b] + t] (the new tokens' keys and
  // values must already be stored). out[r, h * headDim + :] = softmax(scale * q . k) v.
  // q: x [batch * tokens, heads * headDim] (ldx); keys: kCache; values: vCache; out (ldout, dtypeOut).
  Attention = 5,
  // out[r, :] = softmax(x[r, :]) (max subtracted first)
  Softmax = 6,
  // out[r, c] = silu(x[r, c]) * y[r, c]: the SwiGLU product, x = gate, y = up (one fused buffer or two)
  Swiglu = 7,
  // out[r, c] = x[r, c] + y[r, c] (out may be x: the residual stream)
  Add = 8,
  // out[r, c] = activation(x[r, c])
  Activate = 9,
  // ids[r] = the lowest c with the largest x[r, c] (NaN never wins; all NaN gives 0). ids: host memory.
  Argmax = 10,
  // out[r, c] = x[r, c] in out's dtype (also a strided row copy: ldx > cols gathers rows)
  Cast = 11,
};

struct OpDesc {
  OpKind kind = OpKind::Cast;
  int64_t rows = 0, cols = 0;              // the [rows, cols] the op walks (Rope: cols = heads * headDim)
  int64_t ldx = 0, ldy = 0, ldout = 0;     // row strides in elements
  DType dtypeX = DType::F32, dtypeY = DType::F32, dtypeOut = DType::F32;
  DType dtypeWeight = DType::F32;          // weight and bias (norms); the cos/sin tables of Rope are f32
  float eps = 0.0f;                        // norms
  Activation activation = Activation::None;  // Activate
  int64_t vocab = 0;                       // Embedding: rows of the table (ids are checked against it)
  // Rope, KvStore, Attention
  int32_t heads = 0, kvHeads = 0, headDim = 0;
  int32_t batch = 0, tokens = 0;           // rows = batch * tokens
  int32_t slots = 0, capacity = 0;         // the KV cache's shape
  int32_t ropePositions = 0;               // Rope: rows of the cos/sin tables (positions are checked against it)
  float scale = 0.0f;                      // Attention: usually 1 / sqrt(headDim)
  int device = 0;                          // which device of the backend runs it
};

// Pointers for one op: backend memory (device pointers for a GPU backend) except the int32 arrays.
struct OpBuffers {
  const void* x = nullptr;
  const void* y = nullptr;
  void* out = nullptr;
  const void* weight = nullptr;   // norms: [cols]; Rope: the cos table
  const void* bias = nullptr;     // LayerNorm: [cols] or null; Rope: the sin table
  float* kCache = nullptr;        // Attention: the layer's keys
  float* vCache = nullptr;        // Attention: the layer's values
  // Host memory:
  const int32_t* ids = nullptr;        // Embedding: [rows]
  const int32_t* positions = nullptr;  // Rope: [rows]
  const int32_t* slotIndex = nullptr;  // KvStore, Attention: [batch]
  const int32_t* past = nullptr;       // KvStore, Attention: [batch], cached positions before these tokens
  int32_t* idsOut = nullptr;           // Argmax: [rows]
};

}  // namespace gemmkit
