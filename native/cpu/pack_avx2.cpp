// AVX2 packing of F32 panels (the only panels the AVX2 kernels read) from f32, bf16 and f16 sources: 8x8
// transposes in ymm registers for a source contiguous along k (A [M, K], the weight of x @ W^T [N, K]),
// vector copies for a source contiguous along the sliver, bf16 widened by a shift and f16 by VCVTPH2PS.
// Without it a CPU that lacks AVX-512 packed element by element, a quarter of a 1024 square's time on one
// Zen 3 core. Every result equals packSliversPortable's exactly (the check driver compares them).
#include "pack.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#define GEMMKIT_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace gemmkit {

namespace {

// Lanes [0, n) set, for the 32-bit masked stores.
GEMMKIT_AVX2 inline __m256i firstLanes8(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Eight elements of type T at p, widened to f32.
template <DType T>
GEMMKIT_AVX2 inline __m256 load8AsF32(const char* p) {
  if constexpr (T == DType::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  } else if constexpr (T == DType::BF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

// The first n (0..8) elements at p, widened, the other lanes zero; never reads past element n.
template <DType T>
GEMMKIT_AVX2 inline __m256 loadFirstAsF32(const char* p, int64_t n) {
  constexpr int64_t esize = T == DType::F32 ? 4 : 2;
  if (n >= 8) return load8AsF32<T>(p);
  if (n <= 0) return _mm256_setzero_ps();
  alignas(32) char tmp[8 * esize] = {};
  std::memcpy(tmp, p, size_t(n * esize));
  return load8AsF32<T>(tmp);
}

// Stores the first n (1..8) lanes of v at dst.
GEMMKIT_AVX2 inline void storeFirst(float* dst, int64_t n, __m256 v) {
  if (n >= 8) {
    _mm256_storeu_ps(dst, v);
  } else {
    _mm256_maskstore_ps(dst, firstLanes8(n), v);
  }
}

// Transposes the 8x8 matrix whose rows are r[0..7] (bit patterns are preserved).
GEMMKIT_AVX2 inline void transpose8x8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // rows i, i+1 interleaved: columns 0,1 | 4,5
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // columns 2,3 | 6,7
  }
  for (int h = 0; h < 8; h += 4) {  // rows 0-3, then 4-7: u[h + c] holds column c | column c+4 of them
    u[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
    u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xee);
    u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
    u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xee);
  }
  for (int c = 0; c < 4; c++) {
    r[c] = _mm256_permute2f128_ps(u[c], u[c + 4], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(u[c], u[c + 4], 0x31);
  }
}

// F32 panels from a k-contiguous source (strideK == 1): blocks of 8 rows x 8 k, transposed in registers.
template <DType T>
GEMMKIT_AVX2 void packF32Transposing(const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                                     float* out, int64_t sliverStride) {
  constexpr int64_t esize = T == DType::F32 ? 4 : 2;
  const char* base = static_cast<const char*>(src);
  for (int64_t s = 0; s * R < count; s++) {
    const int64_t x0 = s * R;
    const int64_t rs = count - x0 < R ? count - x0 : R;
    float* dst = out + s * sliverStride;
    for (int xb = 0; xb < R; xb += 8) {
      const int64_t lanes = R - xb < 8 ? R - xb : 8;        // lanes of the sliver this block fills
      const int64_t rows = rs - xb < lanes ? rs - xb : lanes;  // of them, rows of the source (<= 0: padding)
      for (int64_t lb = 0; lb < kb; lb += 8) {
        const int64_t kl = kb - lb < 8 ? kb - lb : 8;
        __m256 r[8];
        for (int i = 0; i < 8; i++) {
          r[i] = i < rows ? loadFirstAsF32<T>(base + ((x0 + xb + i) * strideX + lb) * esize, kl) : _mm256_setzero_ps();
        }
        transpose8x8(r);
        for (int64_t j = 0; j < kl; j++) storeFirst(dst + (lb + j) * R + xb, lanes, r[j]);
      }
    }
    if (kPad > kb) std::memset(dst + kb * R, 0, size_t((kPad - kb) * R) * sizeof(float));
  }
}

// F32 panels from a source contiguous along the sliver (strideX == 1): vector copies with conversion, the
// source rows read in order, each across every sliver.
template <DType T>
GEMMKIT_AVX2 void packF32Copying(const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideK,
                                 float* out, int64_t sliverStride) {
  constexpr int64_t esize = T == DType::F32 ? 4 : 2;
  const char* base = static_cast<const char*>(src);
  const int64_t slivers = (count + R - 1) / R;
  for (int64_t l = 0; l < kb; l++) {
    const char* row = base + l * strideK * esize;
    for (int64_t s = 0; s < slivers; s++) {
      const int64_t x0 = s * R;
      const int64_t rs = count - x0 < R ? count - x0 : R;
      float* dst = out + s * sliverStride + l * R;
      for (int xb = 0; xb < R; xb += 8) {
        const int64_t lanes = R - xb < 8 ? R - xb : 8;
        const int64_t valid = rs - xb < lanes ? rs - xb : lanes;
        storeFirst(dst + xb, lanes, loadFirstAsF32<T>(row + (x0 + xb) * esize, valid));
      }
    }
  }
  if (kPad > kb) {
    for (int64_t s = 0; s < slivers; s++) std::memset(out + s * sliverStride + kb * R, 0, size_t((kPad - kb) * R) * sizeof(float));
  }
}

template <DType T>
GEMMKIT_AVX2 bool packF32(const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                          int64_t strideK, float* out, int64_t sliverStride) {
  if (strideK == 1) {
    packF32Transposing<T>(src, count, kb, kPad, R, strideX, out, sliverStride);
    return true;
  }
  if (strideX == 1) {
    packF32Copying<T>(src, count, kb, kPad, R, strideK, out, sliverStride);
    return true;
  }
  return false;
}

}  // namespace

bool packSliversAvx2(DType t, const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                     int64_t strideK, PanelFormat format, void* out, int64_t sliverStride) {
  if (format != PanelFormat::F32) return false;
  float* o = static_cast<float*>(out);
  switch (t) {
    case DType::F32: return packF32<DType::F32>(src, count, kb, kPad, R, strideX, strideK, o, sliverStride);
    case DType::BF16: return packF32<DType::BF16>(src, count, kb, kPad, R, strideX, strideK, o, sliverStride);
    case DType::F16: return packF32<DType::F16>(src, count, kb, kPad, R, strideX, strideK, o, sliverStride);
  }
  return false;
}

}  // namespace gemmkit

#else

namespace gemmkit {
bool packSliversAvx2(DType, const void*, int64_t, int64_t, int64_t, int, int64_t, int64_t, PanelFormat, void*, int64_t) {
  return false;
}
}  // namespace gemmkit

#endif
