// AVX-512 finalize: 16 columns at a time, masked at the row end. The arithmetic order is the scalar
// finalize's (beta*C added with a separate multiply and add, then bias, then the activation), and the
// rounding to bf16 (integer round-half-even on the bits, NaN kept quiet) and f16 (VCVTPS2PH with
// round-to-nearest-even) is bit for bit f32ToBf16 / f32ToF16. gelu and silu use vector approximations:
// exp as Cephes' expf (range reduction by ln 2, degree-6 polynomial, about 1 ulp) and erfc as the
// Chebyshev fit of Numerical Recipes (relative error below 1.2e-7 everywhere), so gelu = 0.5 x erfc(-x/sqrt2)
// stays within a few f32 ulps of the erf form without a branch per element.
#include "epilogue.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 warns about the deliberately undefined registers inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

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

GEMMKIT_AVX512 inline __m512 expApprox(__m512 x) {
  // max/min with x second keep NaN (the second operand is returned when one is NaN).
  x = _mm512_min_ps(_mm512_set1_ps(88.7228f), _mm512_max_ps(_mm512_set1_ps(-103.9720f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(y, n);  // y * 2^n, with correct overflow to Inf and gradual underflow
}

// erfc(z) for z >= 0 (NaN passes through).
GEMMKIT_AVX512 inline __m512 erfcNonNegative(__m512 z) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, one));
  static const float c[] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                            -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
  __m512 poly = _mm512_set1_ps(c[0]);
  for (int i = 1; i < 10; i++) poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c[i]));
  // exp(-z*z + poly) with z*z split into its rounded value and the rounding error, so large z keep accuracy.
  __m512 zz = _mm512_mul_ps(z, z);
  __m512 zzErr = _mm512_fmsub_ps(z, z, zz);
  __m512 e = expApprox(_mm512_sub_ps(poly, zz));
  e = _mm512_fnmadd_ps(e, zzErr, e);  // * (1 - zzErr) ~ exp(-zzErr)
  return _mm512_mul_ps(t, e);
}

GEMMKIT_AVX512 inline __m512 activate(Activation act, __m512 v) {
  switch (act) {
    case Activation::None: return v;
    case Activation::Relu: {
      // x > 0 ? x : (NaN ? x : 0)
      __mmask16 keep = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ);
      return _mm512_maskz_mov_ps(keep, v);
    }
    case Activation::Gelu: {
      // 0.5 x (1 + erf(x/sqrt2)) = 0.5 x erfc(-x/sqrt2); erfc(-z) = 2 - erfc(z) for z >= 0.
      __m512 z = _mm512_mul_ps(v, _mm512_set1_ps(-0.70710678118654752f));
      __m512 az = _mm512_abs_ps(z);
      __m512 ec = erfcNonNegative(az);
      __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
      ec = _mm512_mask_sub_ps(ec, neg, _mm512_set1_ps(2.0f), ec);
      return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), ec);
    }
    case Activation::Silu: {
      __m512 e = expApprox(_mm512_sub_ps(_mm512_setzero_ps(), v));
      return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    }
  }
  return v;
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
