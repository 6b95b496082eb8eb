// AVX-512 finalize: 16 columns at a time, masked at the row end. The arithmetic order is the scalar
// finalize's (beta*C added with a separate multiply and add, then bias, then the activation), and the
// rounding to bf16 (integer round-half-even on the bits, NaN kept quiet) and f16 (VCVTPS2PH with
// round-to-nearest-even) is bit for bit f32ToBf16 / f32ToF16. gelu and silu use the vector approximations
// of activation_avx512.h (a few f32 ulps from the exact forms).
#include "epilogue.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 warns about the deliberately undefined registers inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "activation_avx512.h"
#include "avx512_common.h"

#define GEMMKIT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))

namespace gemmkit {

namespace {

GEMMKIT_AVX512 inline __m512 loadAsF32x16(const void* base, DType t, int64_t i, __mmask16 m) {
  switch (t) {
    case DType::F32: return load16AsF32<DType::F32>(base, i, m);
    case DType::F16: return load16AsF32<DType::F16>(base, i, m);
    case DType::BF16: return load16AsF32<DType::BF16>(base, i, m);
  }
  return _mm512_setzero_ps();
}

GEMMKIT_AVX512 inline __m256i roundToBf16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(r);
}

GEMMKIT_AVX512 inline void storeFromF32x16(void* base, DType t, int64_t i, __m512 v, __mmask16 m) {
  switch (t) {
    case DType::F32: _mm512_mask_storeu_ps(static_cast<float*>(base) + i, m, v); break;
    case DType::F16:
      _mm256_mask_storeu_epi16(static_cast<uint16_t*>(base) + i, m,
                               _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      break;
    case DType::BF16: _mm256_mask_storeu_epi16(static_cast<uint16_t*>(base) + i, m, roundToBf16(v)); break;
  }
}

}  // namespace

GEMMKIT_AVX512 bool finalizeRowsAvx512(const Problem& p, const float* acc, int64_t ldacc, void* c, const float* bias,
                                       int64_t m0, int64_t m1, int64_t jc, int64_t nb) {
  const bool outF32 = p.dtypeC == DType::F32;
  const bool addBeta = !outF32 && p.beta != 0.0f;
  const __m512 beta = _mm512_set1_ps(p.beta);
  for (int64_t i = m0; i < m1; i++) {
    const float* arow = acc + (i - m0) * ldacc;
    const int64_t crow = i * p.ldc + jc;
    for (int64_t j = 0; j < nb; j += 16) {
      const __mmask16 m = firstLanes(nb - j);
      __m512 v = _mm512_maskz_loadu_ps(m, arow + j);
      if (addBeta) v = _mm512_add_ps(v, _mm512_mul_ps(beta, loadAsF32x16(c, p.dtypeC, crow + j, m)));
      if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + jc + j));
      v = activate(p.activation, v);
      storeFromF32x16(c, p.dtypeC, crow + j, v, m);
    }
  }
  return true;
}

GEMMKIT_AVX512 bool storeRowAvx512(DType t, const float* row, int64_t n, void* out) {
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = firstLanes(n - j);
    storeFromF32x16(out, t, j, _mm512_maskz_loadu_ps(m, row + j), m);
  }
  return true;
}

}  // namespace gemmkit

#endif
