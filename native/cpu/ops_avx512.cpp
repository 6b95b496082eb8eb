// The ops (ops_kernels.h) on 16 f32 lanes of AVX-512 F/BW/VL/DQ: masked loads and stores at row ends, exp
// and the activations of activation_avx512.h, 16-bit rows widened exactly (avx512_common.h) and rounded as
// the GEMM finalize rounds them. x86-64 only; elsewhere runOpAvx512 reports that it did not run.
#include "ops.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 warns about the deliberately undefined registers inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "activation_avx512.h"
#include "avx512_common.h"

#define GEMMKIT_OPS_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define GEMMKIT_LANES_FN GEMMKIT_OPS_TARGET static inline

namespace gemmkit {

bool storeRowAvx512(DType t, const float* row, int64_t n, void* out);  // epilogue_avx512.cpp

namespace {

struct Avx512Lanes {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr int kQChunk = 8;
  GEMMKIT_LANES_FN V zero() { return _mm512_setzero_ps(); }
  GEMMKIT_LANES_FN V set1(float v) { return _mm512_set1_ps(v); }
  GEMMKIT_LANES_FN V load(const float* p) { return _mm512_loadu_ps(p); }
  GEMMKIT_LANES_FN V loadN(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(firstLanes(n), p); }
  GEMMKIT_LANES_FN void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  GEMMKIT_LANES_FN void storeN(float* p, V v, int64_t n) { _mm512_mask_storeu_ps(p, firstLanes(n), v); }
  GEMMKIT_LANES_FN V add(V a, V b) { return _mm512_add_ps(a, b); }
  GEMMKIT_LANES_FN V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  GEMMKIT_LANES_FN V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  GEMMKIT_LANES_FN V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // VMAXPS returns its second operand when either is NaN.
  GEMMKIT_LANES_FN V vmax(V a, V b) { return _mm512_max_ps(a, b); }
  GEMMKIT_LANES_FN float hsum(V v) { return _mm512_reduce_add_ps(v); }
  GEMMKIT_LANES_FN float hmax(V v) { return _mm512_reduce_max_ps(v); }
  GEMMKIT_LANES_FN V exp(V v) { return expApprox(v); }
  GEMMKIT_LANES_FN V activate(Activation a, V v) { return gemmkit::activate(a, v); }
  GEMMKIT_LANES_FN bool anyEqual(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ) != 0; }
  // Lane j: the sum of acc[j]'s 16 lanes. Pairs are interleaved and added level by level (16 vectors to 8
  // within 128-bit lanes, to 4, then across the 128-bit lanes), 45 instructions for 16 sums.
  GEMMKIT_LANES_FN V sumLanesOf(const V (&acc)[W]) {
    V b[8], c[4], e[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) b[i] = _mm512_add_ps(_mm512_unpacklo_ps(acc[2 * i], acc[2 * i + 1]), _mm512_unpackhi_ps(acc[2 * i], acc[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
      const __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
      c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    // c[i]: keys 4i..4i+3 in each 128-bit lane, still summed per lane.
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
      e[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x88), _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xdd));
    }
    return _mm512_add_ps(_mm512_shuffle_f32x4(e[0], e[1], 0x88), _mm512_shuffle_f32x4(e[0], e[1], 0xdd));
  }
  GEMMKIT_LANES_FN void toF32(DType t, const uint16_t* src, int64_t n, float* dst) {
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = firstLanes(n - i);
      const V v = t == DType::BF16 ? load16AsF32<DType::BF16>(src, i, m) : load16AsF32<DType::F16>(src, i, m);
      _mm512_mask_storeu_ps(dst + i, m, v);
    }
  }
  static void fromF32(DType t, const float* src, int64_t n, uint16_t* dst) { storeRowAvx512(t, src, n, dst); }
};

}  // namespace

}  // namespace gemmkit

#include "ops_kernels.h"

namespace gemmkit {

bool runOpAvx512(const OpDesc& op, const OpBuffers& buf) {
  runOpWith<Avx512Lanes>(op, buf);
  return true;
}

}  // namespace gemmkit

#else

namespace gemmkit {
bool runOpAvx512(const OpDesc&, const OpBuffers&) { return false; }
}  // namespace gemmkit

#endif
