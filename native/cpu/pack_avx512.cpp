// AVX-512 packing: vector conversion of f16/bf16 to f32 and in-register 16x16 transposes, so packing a
// source that is contiguous along k (A [M, K], the weight of x @ W^T [N, K]) costs about as little as a
// copy. Handles F32 panels from any dtype and Bf16Pairs panels from bf16 (a k pair is one 32-bit unit,
// so the pair layout from a k-contiguous source is a 32-bit transpose). Bf16K32 (AMX) is left to the
// portable loops. Every result equals packSliversPortable's exactly (the check driver compares them).
#include "pack.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 warns about the deliberately undefined registers inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <cstring>

#include "avx512_common.h"

#define GEMMKIT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace gemmkit {

namespace {

// Transposes the 16x16 matrix whose rows are r[0..15] (bit patterns are preserved).
GEMMKIT_AVX512 inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // r[4q + j] now holds, in 128-bit lane L, elements (4L .. 4L+3 of column block) for rows 4q..4q+3.
  for (int j = 0; j < 4; j++) {
    t[j] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0x88);
    t[j + 4] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0xdd);
    t[j + 8] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0x88);
    t[j + 12] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0xdd);
  }
  for (int j = 0; j < 8; j++) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
  }
}

// F32 panels from a k-contiguous source (strideK == 1): blocks of 16 rows x 16 k, transposed in registers.
template <DType T>
GEMMKIT_AVX512 void packF32Transposing(const void* src, int64_t count, int64_t kb, int64_t kPad, int R,
                                       int64_t strideX, float* out, int64_t sliverStride) {
  constexpr int64_t esize = T == DType::F32 ? 4 : 2;
  const char* base = static_cast<const char*>(src);
  for (int64_t s = 0; s * R < count; s++) {
    const int64_t x0 = s * R;
    const int64_t rs = count - x0 < R ? count - x0 : R;
    float* dst = out + s * sliverStride;
    for (int xb = 0; xb < R; xb += 16) {
      const int64_t rows = rs - xb;  // valid source rows in this block (may be <= 0: all padding)
      const __mmask16 laneMask = firstLanes(R - xb);
      for (int64_t lb = 0; lb < kb; lb += 16) {
        const int64_t kl = kb - lb < 16 ? kb - lb : 16;
        const __mmask16 kMask = firstLanes(kl);
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
          r[i] = i < rows ? load16AsF32<T>(base + ((x0 + xb + i) * strideX + lb) * esize, 0, kMask) : _mm512_setzero_ps();
        }
        transpose16x16(r);
        for (int64_t j = 0; j < kl; j++) _mm512_mask_storeu_ps(dst + (lb + j) * R + xb, laneMask, r[j]);
      }
    }
    if (kPad > kb) std::memset(dst + kb * R, 0, size_t((kPad - kb) * R) * sizeof(float));
  }
}

// F32 panels from a source contiguous along the sliver (strideX == 1): vector copies with conversion.
// Source rows are read in order, each across every sliver (reading a sliver's strip of every row in turn
// would touch a new cache line per row, far apart).
template <DType T>
GEMMKIT_AVX512 void packF32Copying(const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideK,
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
      for (int xb = 0; xb < R; xb += 16) {
        __m512 v = load16AsF32<T>(row + (x0 + xb) * esize, 0, firstLanes(rs - xb));
        _mm512_mask_storeu_ps(dst + xb, firstLanes(R - xb), v);
      }
    }
  }
  if (kPad > kb) {
    for (int64_t s = 0; s < slivers; s++) std::memset(out + s * sliverStride + kb * R, 0, size_t((kPad - kb) * R) * sizeof(float));
  }
}

// Bf16Pairs panels from a k-contiguous bf16 source: each k pair is one 32-bit unit, transposed as f32 bits.
GEMMKIT_AVX512 void packPairsTransposing(const uint16_t* src, int64_t count, int64_t kb, int64_t kPad, int R,
                                         int64_t strideX, uint16_t* out, int64_t sliverStride) {
  const int64_t fullPairs = kb / 2;
  for (int64_t s = 0; s * R < count; s++) {
    const int64_t x0 = s * R;
    const int64_t rs = count - x0 < R ? count - x0 : R;
    uint32_t* dst = reinterpret_cast<uint32_t*>(out + s * sliverStride);  // [kPad/2][R] pairs
    for (int xb = 0; xb < R; xb += 16) {
      const int64_t rows = rs - xb;
      const __mmask16 laneMask = firstLanes(R - xb);
      for (int64_t pb = 0; pb < fullPairs; pb += 16) {
        const int64_t pl = fullPairs - pb < 16 ? fullPairs - pb : 16;
        const __mmask16 pMask = firstLanes(pl);
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
          r[i] = i < rows ? _mm512_maskz_loadu_ps(pMask, src + (x0 + xb + i) * strideX + 2 * pb) : _mm512_setzero_ps();
        }
        transpose16x16(r);
        for (int64_t j = 0; j < pl; j++) _mm512_mask_storeu_ps(dst + (pb + j) * R + xb, laneMask, r[j]);
      }
    }
    int64_t pairsDone = fullPairs;
    if (kb % 2) {  // last pair: its first element only
      for (int r = 0; r < R; r++) dst[fullPairs * R + r] = r < rs ? src[(x0 + r) * strideX + kb - 1] : 0u;
      pairsDone++;
    }
    if (kPad / 2 > pairsDone) std::memset(dst + pairsDone * R, 0, size_t((kPad / 2 - pairsDone) * R) * 4);
  }
}

// Bf16Pairs panels from a bf16 source contiguous along the sliver: rows l and l+1 interleaved, the pair
// of rows read in order across every sliver (as packF32Copying).
GEMMKIT_AVX512 void packPairsInterleaving(const uint16_t* src, int64_t count, int64_t kb, int64_t kPad, int R,
                                          int64_t strideK, uint16_t* out, int64_t sliverStride) {
  const int64_t slivers = (count + R - 1) / R;
  for (int64_t l = 0; l < kb; l += 2) {
    const uint16_t* even = src + l * strideK;
    const uint16_t* odd = even + strideK;
    const bool hasOdd = l + 1 < kb;
    for (int64_t s = 0; s < slivers; s++) {
      const int64_t x0 = s * R;
      const int64_t rs = count - x0 < R ? count - x0 : R;
      uint32_t* dst = reinterpret_cast<uint32_t*>(out + s * sliverStride) + (l / 2) * R;
      for (int xb = 0; xb < R; xb += 16) {
        const __mmask16 m = firstLanes(rs - xb);
        __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, even + x0 + xb));
        __m512i hi = hasOdd ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, odd + x0 + xb)) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(dst + xb, firstLanes(R - xb), _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
    }
  }
  const int64_t pairsDone = (kb + 1) / 2;
  if (kPad / 2 > pairsDone) {
    for (int64_t s = 0; s < slivers; s++) {
      uint32_t* dst = reinterpret_cast<uint32_t*>(out + s * sliverStride);
      std::memset(dst + pairsDone * R, 0, size_t((kPad / 2 - pairsDone) * R) * 4);
    }
  }
}

template <DType T>
GEMMKIT_AVX512 bool packF32(const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
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

bool packSliversAvx512(DType t, const void* src, int64_t count, int64_t kb, int64_t kPad, int R, int64_t strideX,
                       int64_t strideK, PanelFormat format, void* out, int64_t sliverStride) {
  if (format == PanelFormat::F32) {
    float* o = static_cast<float*>(out);
    switch (t) {
      case DType::F32: return packF32<DType::F32>(src, count, kb, kPad, R, strideX, strideK, o, sliverStride);
      case DType::BF16: return packF32<DType::BF16>(src, count, kb, kPad, R, strideX, strideK, o, sliverStride);
      case DType::F16: return packF32<DType::F16>(src, count, kb, kPad, R, strideX, strideK, o, sliverStride);
    }
    return false;
  }
  if (format == PanelFormat::Bf16Pairs && t == DType::BF16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    uint16_t* o = static_cast<uint16_t*>(out);
    if (strideK == 1) {
      packPairsTransposing(s, count, kb, kPad, R, strideX, o, sliverStride);
      return true;
    }
    if (strideX == 1) {
      packPairsInterleaving(s, count, kb, kPad, R, strideK, o, sliverStride);
      return true;
    }
  }
  return false;
}

}  // namespace gemmkit

#else

namespace gemmkit {
bool packSliversAvx512(DType, const void*, int64_t, int64_t, int64_t, int, int64_t, int64_t, PanelFormat, void*, int64_t) {
  return false;
}
}  // namespace gemmkit

#endif
