// A weight packed once in a micro-kernel's B layout (DESIGN.md: inference weights are constant, so packing
// them once removes packing from every call). The whole op(B) [K, N] is stored as ceil(N/NR) slivers; a
// sliver holds all of K, block after block of depth kc, each block padded to the kernel's kAlign exactly as
// the frame pads it when packing per call. So the frame reads a prepacked block where it would otherwise
// have packed one, and results are bit-identical to the unpacked call with the same config.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "../core/problem.h"
#include "micro_kernels.h"

namespace gemmkit {

// The layout name of a weight packed for kernel `kernelId` with depth blocks of kc: "<kernel id>.kc<kc>",
// the value of Problem::packedB for problems that use it.
inline std::string packedLayoutName(const std::string& kernelId, int kc) {
  return kernelId + ".kc" + std::to_string(kc);
}

struct PackedWeight {
  const MicroKernel* kernel = nullptr;  // whose bFormat / NR / kAlign the slivers use
  int kc = 0;                           // depth of the blocks; configs using this weight must have this kc
  int64_t k = 0, n = 0;                 // op(B) is [k, n]
  DType dtype = DType::F32;             // dtype of the weight it was packed from (B's dtype in problems)
  bool transB = false;                  // how the source was stored ([n, k] when true)
  int64_t sliverStride = 0;             // elements from one sliver to the next
  void* data = nullptr;                 // ceil(n/NR) * sliverStride elements of the panel format, 64-byte aligned
  size_t bytes = 0;
  bool ownsData = true;                 // false: data is the caller's (prepackWeightInto), which outlives this

  PackedWeight() = default;
  PackedWeight(const PackedWeight&) = delete;
  PackedWeight& operator=(const PackedWeight&) = delete;
  ~PackedWeight() {
    if (ownsData) std::free(data);
  }

  std::string layout() const { return packedLayoutName(kernel->id, kc); }
  // Sliver `s` (columns s*NR ...) at the block starting at depth pc (a multiple of kc).
  const void* sliver(int64_t s, int64_t pc) const {
    return static_cast<const char*>(data) + (s * sliverStride + pc * kernel->nr) * panelElementSize(kernel->bFormat);
  }
};

// Packs op(B) of problem p (its k, n, dtypeB, transB, ldb) from b for `kernel` with depth blocks of kc,
// into memory the weight owns. Time and memory are O(1) when op(B) is empty, however large k or n is.
Status prepackWeight(const Problem& p, const void* b, const MicroKernel& kernel, int kc,
                     std::unique_ptr<PackedWeight>* out);

// The bytes of the panel prepackWeight() makes for p, kernel and kc (0 when op(B) is empty), or an
// OutOfRange status when they do not fit in memory.
Status packedWeightBytes(const Problem& p, const MicroKernel& kernel, int kc, size_t* bytes);

// prepackWeight() into `storage`: packedWeightBytes() bytes, 64-byte aligned, which the caller keeps
// alive (and unchanged) for as long as the weight is used.
Status prepackWeightInto(const Problem& p, const void* b, const MicroKernel& kernel, int kc, void* storage,
                         std::unique_ptr<PackedWeight>* out);

}  // namespace gemmkit
