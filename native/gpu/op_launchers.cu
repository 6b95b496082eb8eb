// Host launchers of the op kernels (op_kernels.cuh): nvcc builds them for the CUDA targets, the HIP
// compiler for the AMD ones (and the CPU emulator as plain C++). One instantiation per op kind; the
// attention kernel per head-dimension block (64, 128, 256) for prefill and for decode (their lanes per
// row and tiles: attentionLanes, attentionTileKeys), and the split count of each call (attentionSplits).
// Every launch goes through launchKernel, the one place with launch syntax.
#include "op_kernels.cuh"
#include "op_launch.h"
#include "vendor_runtime.h"

namespace gemmkit {

namespace {

using OpKernel = void (*)(OpArgs);

// Positions one attention split streams at least, so its setup and merge stay small next to its loads.
constexpr int64_t kMinPositionsPerSplit = 128;
constexpr int kMaxSplits = 64;
// Grid-stride kernels: enough blocks to fill any device several times over.
constexpr int64_t kMaxStrideBlocks = 65536;

Status launchKernel(const char* what, OpKernel kernel, dim3 grid, dim3 block, const OpArgs& args, void* stream) {
  GEMMKIT_LAUNCH(kernel, grid, block, 0, static_cast<vendor::Stream>(stream), what, -1, args);
  vendor::Error e = vendor::getLastError();
  if (e == vendor::kSuccess) return Status::ok();
  return Status(StatusCode::Internal, std::string(vendor::kRuntimeName) + " launch of the " + what + " kernel failed: " +
                                          vendor::describe(e));
}

unsigned strideBlocks(int64_t work) {
  const int64_t blocks = (work + kOpThreads - 1) / kOpThreads;
  return unsigned(blocks < kMaxStrideBlocks ? blocks : kMaxStrideBlocks);
}

// Attention blocks by head-dimension block D_MAX: lanes per query row (each holds D_MAX / lanes
// dimensions) and positions per shared-memory tile. Prefill (tokens > 1) has many rows per kv head:
// 32 dimensions a lane on NVIDIA (160 registers, tiles of 32 positions), 16 on AMD (within 128 VGPRs
// and 16 KiB of LDS, tiles of 8). Decode (tokens == 1) has only the query heads of a group as rows:
// 8 dimensions a lane, so a block has few rows (8 at D_MAX 128) and the cached positions are split
// over blocks instead.
template <int D_MAX, bool DECODE>
constexpr int attentionLanes() {
  return DECODE ? D_MAX / 8 : kWarpSize == 64 ? D_MAX / 16 : D_MAX / 32;
}

template <int D_MAX, bool DECODE>
constexpr int attentionTileKeys() {
  if (kWarpSize == 64) return DECODE && D_MAX <= 128 ? 16 : 8;
  return D_MAX <= 128 ? 32 : 16;
}

template <int D_MAX, bool DECODE>
Status launchAttentionAs(const OpArgs& a, void* stream) {
  const OpDesc& op = a.op;
  constexpr int lanes = attentionLanes<D_MAX, DECODE>();
  constexpr int rows = kAttentionThreads / lanes;
  const int64_t rowBlocks = (int64_t(op.tokens) * (op.heads / op.kvHeads) + rows - 1) / rows;
  if (rowBlocks * a.splits > 2147483647) {
    return unsupported("attention: " + std::to_string(rowBlocks * a.splits) + " blocks of query rows are more than one grid holds");
  }
  Status s = launchKernel("attention", attentionKernel<D_MAX, lanes, attentionTileKeys<D_MAX, DECODE>()>,
                          dim3(unsigned(rowBlocks * a.splits), unsigned(op.kvHeads), unsigned(op.batch)), dim3(kAttentionThreads),
                          a, stream);
  if (!s.isOk() || a.splits == 1) return s;
  return launchKernel("attention combine", attentionCombineKernel, dim3(unsigned(op.rows), unsigned(op.heads)),
                      dim3(kAttentionThreads), a, stream);
}

template <int D_MAX>
Status launchAttention(const OpArgs& a, void* stream) {
  return a.op.tokens == 1 ? launchAttentionAs<D_MAX, true>(a, stream) : launchAttentionAs<D_MAX, false>(a, stream);
}

// Rows of an attention block for `op` (see attentionLanes).
int attentionRows(const OpDesc& op) {
  const bool decode = op.tokens == 1;
  const int dMax = op.headDim <= 64 ? 64 : op.headDim <= 128 ? 128 : 256;
  const int lanes = decode ? dMax / 8 : dMax / (kWarpSize == 64 ? 16 : 32);
  return kAttentionThreads / lanes;
}

}  // namespace

int attentionSplits(const OpDesc& op, int64_t maxKeys, int computeUnits) {
  if (op.kind != OpKind::Attention || op.kvHeads <= 0 || op.heads % op.kvHeads != 0) return 1;
  const int rows = attentionRows(op);
  const int64_t rowBlocks = (int64_t(op.tokens) * (op.heads / op.kvHeads) + rows - 1) / rows;
  const int64_t blocks = rowBlocks * op.kvHeads * op.batch;
  const int64_t target = 4 * int64_t(computeUnits > 0 ? computeUnits : 1);  // about 4 blocks per SM / CU
  const int64_t wanted = (target + blocks - 1) / blocks;
  const int64_t byLength = maxKeys / kMinPositionsPerSplit;
  int64_t splits = wanted < byLength ? wanted : byLength;
  if (splits > kMaxSplits) splits = kMaxSplits;
  return splits < 1 ? 1 : int(splits);
}

int64_t attentionPartialBytes(const OpDesc& op, int splits) {
  if (splits <= 1) return 0;
  return op.rows * op.heads * splits * (op.headDim + 2) * int64_t(sizeof(float));
}

Status launchOpKernels(const OpArgs& a, void* stream) {
  const OpDesc& op = a.op;
  switch (op.kind) {
    case OpKind::Embedding:
      return launchKernel("embedding", elementwiseKernel<OpKind::Embedding>, dim3(strideBlocks(op.rows * ((op.cols + 7) / 8))),
                          dim3(kOpThreads), a, stream);
    case OpKind::Swiglu:
      return launchKernel("swiglu", elementwiseKernel<OpKind::Swiglu>, dim3(strideBlocks(op.rows * ((op.cols + 7) / 8))),
                          dim3(kOpThreads), a, stream);
    case OpKind::Add:
      return launchKernel("add", elementwiseKernel<OpKind::Add>, dim3(strideBlocks(op.rows * ((op.cols + 7) / 8))),
                          dim3(kOpThreads), a, stream);
    case OpKind::Activate:
      return launchKernel("activation", elementwiseKernel<OpKind::Activate>, dim3(strideBlocks(op.rows * ((op.cols + 7) / 8))),
                          dim3(kOpThreads), a, stream);
    case OpKind::Cast:
      return launchKernel("cast", elementwiseKernel<OpKind::Cast>, dim3(strideBlocks(op.rows * ((op.cols + 7) / 8))),
                          dim3(kOpThreads), a, stream);
    case OpKind::RmsNorm:
      return launchKernel("rmsNorm", rowKernel<OpKind::RmsNorm>, dim3(unsigned(op.rows)), dim3(kOpThreads), a, stream);
    case OpKind::LayerNorm:
      return launchKernel("layerNorm", rowKernel<OpKind::LayerNorm>,
                          dim3(unsigned(op.rows)), dim3(kOpThreads), a, stream);
    case OpKind::Softmax:
      return launchKernel("softmax", rowKernel<OpKind::Softmax>, dim3(unsigned(op.rows)),
                          dim3(kOpThreads), a, stream);
    case OpKind::Argmax:
      return launchKernel("argmax", rowKernel<OpKind::Argmax>, dim3(unsigned(op.rows)),
                          dim3(kOpThreads), a, stream);
    case OpKind::Rope:
      return launchKernel("rope", ropeKernel, dim3(strideBlocks(op.rows * op.heads * (op.headDim / 2))), dim3(kOpThreads), a, stream);
    case OpKind::KvStore:
      return launchKernel("kvStore", kvStoreKernel, dim3(strideBlocks(op.rows * op.kvHeads * ((op.headDim + 7) / 8))),
                          dim3(kOpThreads), a, stream);
    case OpKind::Attention:
      if (op.headDim <= 64) return launchAttention<64>(a, stream);
      if (op.headDim <= 128) return launchAttention<128>(a, stream);
      return launchAttention<256>(a, stream);
  }
  return unsupported(std::string("op kind ") + std::to_string(int(op.kind)) + " has no GPU kernel");
}

}  // namespace gemmkit
