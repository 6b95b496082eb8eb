#include "pack.h"

#include <cstring>
#include <type_traits>

namespace gemmkit {

namespace {

struct Bf16Bits { uint16_t bits; };
struct F16Bits { uint16_t bits; };

template <typename T>
inline float loadElem(const void* base, int64_t i);
template <>
inline float loadElem<float>(const void* base, int64_t i) { return static_cast<const float*>(base)[i]; }
template <>
inline float loadElem<Bf16Bits>(const void* base, int64_t i) {
  return bf16ToF32(static_cast<const uint16_t*>(base)[i]);
}
template <>
inline float loadElem<F16Bits>(const void* base, int64_t i) {
  return f16ToF32(static_cast<const uint16_t*>(base)[i]);
}

// Element (x, l) of the source is src[x * strideX + l * strideK], for x in [0, count), l in [0, kb).
// Output: ceil(count / R) slivers, each [kb][R], rows past `count` zero.
template <typename T>
void packSlivers(const void* src, int64_t count, int64_t kb, int R, int64_t strideX, int64_t strideK, float* out) {
  for (int64_t s = 0; s * R < count; s++) {
    int64_t rs = count - s * R < R ? count - s * R : R;
    float* dst = out + s * kb * R;
    int64_t x0 = s * R;
    if (strideX == 1) {
      // The sliver's R values are contiguous in the source for each l: copy rows of the panel.
      for (int64_t l = 0; l < kb; l++) {
        int64_t base = x0 + l * strideK;
        float* d = dst + l * R;
        if (std::is_same<T, float>::value) {
          std::memcpy(d, static_cast<const float*>(src) + base, size_t(rs) * sizeof(float));
        } else {
          for (int64_t r = 0; r < rs; r++) d[r] = loadElem<T>(src, base + r);
        }
        for (int64_t r = rs; r < R; r++) d[r] = 0.0f;
      }
    } else {
      // Each source row x is contiguous along l: read it once, scatter with stride R.
      for (int64_t r = 0; r < rs; r++) {
        int64_t base = (x0 + r) * strideX;
        for (int64_t l = 0; l < kb; l++) dst[l * R + r] = loadElem<T>(src, base + l * strideK);
      }
      for (int64_t r = rs; r < R; r++) {
        for (int64_t l = 0; l < kb; l++) dst[l * R + r] = 0.0f;
      }
    }
  }
}

void packAny(DType t, const void* src, int64_t offset, int64_t count, int64_t kb, int R, int64_t strideX,
             int64_t strideK, float* out) {
  const char* base = static_cast<const char*>(src) + offset * dtypeSize(t);
  switch (t) {
    case DType::F32: packSlivers<float>(base, count, kb, R, strideX, strideK, out); break;
    case DType::F16: packSlivers<F16Bits>(base, count, kb, R, strideX, strideK, out); break;
    case DType::BF16: packSlivers<Bf16Bits>(base, count, kb, R, strideX, strideK, out); break;
  }
}

}  // namespace

void packA(const Problem& p, const void* a, int64_t i0, int64_t mb, int64_t p0, int64_t kb, int mr, float* Ap) {
  // op(A)(i, l) = transA ? A[l][i] : A[i][l]
  if (p.transA) {
    packAny(p.dtypeA, a, p0 * p.lda + i0, mb, kb, mr, 1, p.lda, Ap);
  } else {
    packAny(p.dtypeA, a, i0 * p.lda + p0, mb, kb, mr, p.lda, 1, Ap);
  }
}

void packB(const Problem& p, const void* b, int64_t p0, int64_t kb, int64_t j0, int64_t nb, int nr, float* Bp) {
  // op(B)(l, j) = transB ? B[j][l] : B[l][j]
  if (p.transB) {
    packAny(p.dtypeB, b, j0 * p.ldb + p0, nb, kb, nr, p.ldb, 1, Bp);
  } else {
    packAny(p.dtypeB, b, p0 * p.ldb + j0, nb, kb, nr, 1, p.ldb, Bp);
  }
}

}  // namespace gemmkit
