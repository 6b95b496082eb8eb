// Packing of op(A) and op(B) into the sliver layouts the micro-kernels read (PanelFormat in
// micro_kernels.h). Packing converts f16/bf16 to f32 (F32 panels) and applies the transpose on the way,
// so every dtype and transpose combination reaches the same kernels. Slivers are zero padded past the
// matrix edge and from depth kb up to kPad, so kernels never need edge cases along k.
// With AVX-512 the common cases are vectorised: in-register 16x16 transposes for a source that is
// contiguous along k (A [M, K], B^T [N, K]), vector copies for a source contiguous along the sliver, and
// vector conversion of bf16 (shift) and f16 (VCVTPH2PS); with AVX2 the same for F32 panels, 8x8 at a time.
// Other CPUs and layouts use the portable loops.
#pragma once

#include <cstdint>

#include "../core/problem.h"
#include "micro_kernels.h"

namespace gemmkit {

// A: one batch item of stored A. Packs op(A)[i0:i0+mb, p0:p0+kb] as ceil(mb/R) slivers of kPad*R
// elements each, one after the other.
void packA(const Problem& p, const void* a, int64_t i0, int64_t mb, int64_t p0, int64_t kb, int64_t kPad, int R,
           PanelFormat format, void* Ap);

// B: one batch item of stored B. Packs op(B)[p0:p0+kb, j0:j0+nb] as ceil(nb/R) slivers of kPad*R elements,
// sliver s starting at element s*sliverStride of Bp (sliverStride >= kPad*R; larger for prepacked weights).
void packB(const Problem& p, const void* b, int64_t p0, int64_t kb, int64_t kPad, int64_t j0, int64_t nb, int R,
           PanelFormat format, void* Bp, int64_t sliverStride);

// The same operation on a plain source: element (x, l) of the source is src[x*strideX + l*strideK] (in
// elements of dtype t), x in [0, count), l in [0, kb). Exposed for the check driver's layout tests.
void packSlivers(DType t, const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                 int64_t strideK, PanelFormat format, void* out, int64_t sliverStride);

// The portable implementation of packSlivers, which the vectorised one must match exactly.
void packSliversPortable(DType t, const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                         int64_t strideK, PanelFormat format, void* out, int64_t sliverStride);

// Vectorised packSlivers for the cases above; returns false (doing nothing) when it has no fast path.
bool packSliversAvx512(DType t, const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                       int64_t strideK, PanelFormat format, void* out, int64_t sliverStride);

// The same for AVX2 + F16C CPUs, F32 panels only.
bool packSliversAvx2(DType t, const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                     int64_t strideK, PanelFormat format, void* out, int64_t sliverStride);

// Where element (l, r) of a sliver of R lanes lives in `format` (in elements of the panel).
inline int64_t panelIndex(PanelFormat f, int64_t l, int64_t r, int R) {
  switch (f) {
    case PanelFormat::F32: return l * R + r;
    case PanelFormat::Bf16Pairs: return (l / 2) * 2 * R + 2 * r + (l % 2);
    case PanelFormat::Bf16K32: return (l / 32) * 32 * R + 32 * r + (l % 32);
  }
  return 0;
}

}  // namespace gemmkit
