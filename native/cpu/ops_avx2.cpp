// The ops (ops_kernels.h) on 8 f32 lanes of AVX2 + FMA + F16C, for x86-64 CPUs without AVX-512. Row ends
// use VMASKMOVPS; exp is Cephes' expf as in activation_avx512.h (range reduction by ln 2, degree-6
// polynomial, about 1 ulp) with 2^n built in the exponent field in two halves, so it overflows to Inf and
// underflows through the subnormals as expf does; gelu uses the same erfc fit. 16-bit rows are widened
// exactly (a 16-bit shift, VCVTPH2PS) and rounded to nearest even (integer rounding of the bits, VCVTPS2PH).
// x86-64 only; elsewhere runOpAvx2 reports that it did not run.
#include "ops.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define GEMMKIT_OPS_TARGET __attribute__((target("avx2,fma,f16c")))
#define GEMMKIT_LANES_FN GEMMKIT_OPS_TARGET static inline

namespace gemmkit {

namespace {

struct Avx2Lanes {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr int kQChunk = 4;  // 8 score accumulators take half the 16 registers: one query vector at a time

  // Lanes [0, n) of 8 as a VMASKMOVPS mask.
  GEMMKIT_LANES_FN __m256i laneMask(int64_t n) {
    const int32_t k = int32_t(n < 0 ? 0 : n > 8 ? 8 : n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  GEMMKIT_LANES_FN V zero() { return _mm256_setzero_ps(); }
  GEMMKIT_LANES_FN V set1(float v) { return _mm256_set1_ps(v); }
  GEMMKIT_LANES_FN V load(const float* p) { return _mm256_loadu_ps(p); }
  GEMMKIT_LANES_FN V loadN(const float* p, int64_t n) { return _mm256_maskload_ps(p, laneMask(n)); }
  GEMMKIT_LANES_FN void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  GEMMKIT_LANES_FN void storeN(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, laneMask(n), v); }
  GEMMKIT_LANES_FN V add(V a, V b) { return _mm256_add_ps(a, b); }
  GEMMKIT_LANES_FN V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  GEMMKIT_LANES_FN V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  GEMMKIT_LANES_FN V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // VMAXPS returns its second operand when either is NaN.
  GEMMKIT_LANES_FN V vmax(V a, V b) { return _mm256_max_ps(a, b); }
  GEMMKIT_LANES_FN float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  GEMMKIT_LANES_FN float hmax(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
  }
  GEMMKIT_LANES_FN V exp(V x) {
    // min/max with x second keep NaN; beyond the clamps the result is Inf or 0 as the scaling makes it.
    x = _mm256_min_ps(_mm256_set1_ps(88.7228f), _mm256_max_ps(_mm256_set1_ps(-103.9720f), x));
    const V n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    V y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // y * 2^n with n in [-150, 128]: two factors 2^(n/2) and 2^(n - n/2), each a normal float.
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const V f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    const V f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, f1), f2);
  }
  // erfc(z) for z >= 0, as erfcNonNegative in activation_avx512.h.
  GEMMKIT_LANES_FN V erfcNonNegative(V z) {
    const V one = _mm256_set1_ps(1.0f);
    const V t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, one));
    static const float c[] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                              -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
    V poly = _mm256_set1_ps(c[0]);
    for (int i = 1; i < 10; i++) poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(c[i]));
    const V zz = _mm256_mul_ps(z, z);
    const V zzErr = _mm256_fmsub_ps(z, z, zz);
    V e = exp(_mm256_sub_ps(poly, zz));
    e = _mm256_fnmadd_ps(e, zzErr, e);
    return _mm256_mul_ps(t, e);
  }
  GEMMKIT_LANES_FN V activate(Activation a, V v) {
    switch (a) {
      case Activation::None: return v;
      case Activation::Relu:
        // x > 0 ? x : (NaN ? x : 0)
        return _mm256_and_ps(v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NLE_UQ));
      case Activation::Gelu: {
        const V z = _mm256_mul_ps(v, _mm256_set1_ps(-0.70710678118654752f));
        const V az = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
        V ec = erfcNonNegative(az);
        const V neg = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ);
        ec = _mm256_blendv_ps(ec, _mm256_sub_ps(_mm256_set1_ps(2.0f), ec), neg);
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), ec);
      }
      case Activation::Silu:
        return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp(_mm256_sub_ps(_mm256_setzero_ps(), v))));
    }
    return v;
  }
  GEMMKIT_LANES_FN bool anyEqual(V a, V b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ)) != 0; }
  // Lane j: the sum of acc[j]'s 8 lanes (two levels of horizontal adds, then the 128-bit halves).
  GEMMKIT_LANES_FN V sumLanesOf(const V (&acc)[W]) {
    const V t0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
    const V t1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
  }
  GEMMKIT_LANES_FN void toF32(DType t, const uint16_t* src, int64_t n, float* dst) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      const V v = t == DType::BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
      _mm256_storeu_ps(dst + i, v);
    }
    for (; i < n; i++) dst[i] = t == DType::BF16 ? bf16ToF32(src[i]) : f16ToF32(src[i]);
  }
  GEMMKIT_LANES_FN void fromF32(DType t, const float* src, int64_t n, uint16_t* dst) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const V v = _mm256_loadu_ps(src + i);
      __m128i h;
      if (t == DType::F16) {
        h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      } else {
        // bf16: add 0x7fff plus the lowest kept bit (round half to even); NaN keeps its top bits, made quiet.
        const __m256i u = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
        r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40)), nan);
        // Pack the 8 low halves: packus per 128-bit lane, then the two lanes' low quads together.
        const __m256i packed = _mm256_packus_epi32(r, r);
        h = _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
      }
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
    }
    for (; i < n; i++) dst[i] = t == DType::BF16 ? f32ToBf16(src[i]) : f32ToF16(src[i]);
  }
};

}  // namespace

}  // namespace gemmkit

#include "ops_kernels.h"

namespace gemmkit {

bool runOpAvx2(const OpDesc& op, const OpBuffers& buf) {
  runOpWith<Avx2Lanes>(op, buf);
  return true;
}

}  // namespace gemmkit

#else

namespace gemmkit {
bool runOpAvx2(const OpDesc&, const OpBuffers&) { return false; }
}  // namespace gemmkit

#endif
