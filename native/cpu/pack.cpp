#include "pack.h"

#include <cstring>

#include "cpu_features.h"

namespace gemmkit {

void packSliversPortable(DType t, const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                         int64_t strideK, PanelFormat format, void* out, int64_t sliverStride) {
  const bool f32Panel = format == PanelFormat::F32;
  for (int64_t s = 0; s * R < count; s++) {
    const int64_t x0 = s * R;
    const int64_t rs = count - x0 < R ? count - x0 : R;
    if (f32Panel) {
      float* dst = static_cast<float*>(out) + s * sliverStride;
      for (int64_t l = 0; l < kPad; l++) {
        for (int r = 0; r < R; r++) {
          dst[l * R + r] = (r < rs && l < kb) ? loadAsF32(src, t, (x0 + r) * strideX + l * strideK) : 0.0f;
        }
      }
    } else {
      // bf16 panels copy bf16 bits unchanged (panelAccepts() admits only bf16 sources).
      const uint16_t* s16 = static_cast<const uint16_t*>(src);
      uint16_t* dst = static_cast<uint16_t*>(out) + s * sliverStride;
      for (int64_t l = 0; l < kPad; l++) {
        for (int r = 0; r < R; r++) {
          dst[panelIndex(format, l, r, R)] = (r < rs && l < kb) ? s16[(x0 + r) * strideX + l * strideK] : uint16_t(0);
        }
      }
    }
  }
}

void packSlivers(DType t, const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                 int64_t strideK, PanelFormat format, void* out, int64_t sliverStride) {
  if (count <= 0) return;  // no slivers: O(1) whatever kb is (some vector paths walk k in their outer loop)
#if defined(__x86_64__)
  static const bool avx512 = cpuFeatures().avx512;
  static const bool avx2 = cpuFeatures().avx2 && cpuFeatures().f16c;
  if (avx512 && packSliversAvx512(t, src, count, kb, kPad, R, strideX, strideK, format, out, sliverStride)) return;
  if (avx2 && packSliversAvx2(t, src, count, kb, kPad, R, strideX, strideK, format, out, sliverStride)) return;
#endif
  packSliversPortable(t, src, count, kb, kPad, R, strideX, strideK, format, out, sliverStride);
}

namespace {
const void* offsetBy(const void* base, DType t, int64_t elements) {
  return static_cast<const char*>(base) + elements * dtypeSize(t);
}
}  // namespace

void packA(const Problem& p, const void* a, int64_t i0, int64_t mb, int64_t p0, int64_t kb, int64_t kPad, int R,
           PanelFormat format, void* Ap) {
  // op(A)(i, l) = transA ? A[l][i] : A[i][l]
  const int64_t stride = kPad * R;
  if (p.transA) {
    packSlivers(p.dtypeA, offsetBy(a, p.dtypeA, p0 * p.lda + i0), mb, kb, kPad, R, 1, p.lda, format, Ap, stride);
  } else {
    packSlivers(p.dtypeA, offsetBy(a, p.dtypeA, i0 * p.lda + p0), mb, kb, kPad, R, p.lda, 1, format, Ap, stride);
  }
}

void packB(const Problem& p, const void* b, int64_t p0, int64_t kb, int64_t kPad, int64_t j0, int64_t nb, int R,
           PanelFormat format, void* Bp, int64_t sliverStride) {
  // op(B)(l, j) = transB ? B[j][l] : B[l][j]
  if (p.transB) {
    packSlivers(p.dtypeB, offsetBy(b, p.dtypeB, j0 * p.ldb + p0), nb, kb, kPad, R, p.ldb, 1, format, Bp, sliverStride);
  } else {
    packSlivers(p.dtypeB, offsetBy(b, p.dtypeB, p0 * p.ldb + j0), nb, kb, kPad, R, 1, p.ldb, format, Bp, sliverStride);
  }
}

}  // namespace gemmkit
