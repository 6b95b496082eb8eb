// AVX-512 activations, shared by the GEMM finalize (epilogue_avx512.cpp) and the ops (ops_avx512.cpp):
// exp as Cephes' expf (range reduction by ln 2, degree-6 polynomial, about 1 ulp) and erfc as the
// Chebyshev fit of Numerical Recipes (relative error below 1.2e-7 everywhere), so gelu = 0.5 x erfc(-x/sqrt2)
// stays within a few f32 ulps of the erf form without a branch per element. Local to each including file,
// like avx512_common.h. x86-64 only.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include "../core/activation.h"

#define GEMMKIT_AVX512_ACTIVATION __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))) inline

namespace gemmkit {
namespace {

GEMMKIT_AVX512_ACTIVATION __m512 expApprox(__m512 x) {
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
GEMMKIT_AVX512_ACTIVATION __m512 erfcNonNegative(__m512 z) {
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

GEMMKIT_AVX512_ACTIVATION __m512 activate(Activation act, __m512 v) {
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
}  // namespace gemmkit

#endif
