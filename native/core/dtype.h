// Element types of the engine and exact scalar conversions between f32 and the 16-bit formats.
// Conversions round to nearest even and keep NaN (quietened) and +-Inf; they are the reference that
// every vectorised conversion in the kernels is checked against, and GPU kernels call them directly.
#pragma once

#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace gemmkit {

enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2 };

GEMMKIT_HD inline int dtypeSize(DType t) { return t == DType::F32 ? 4 : 2; }

inline const char* dtypeName(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
  }
  return "?";
}

inline bool parseDType(const char* s, DType* out) {
  if (std::strcmp(s, "f32") == 0) { *out = DType::F32; return true; }
  if (std::strcmp(s, "f16") == 0) { *out = DType::F16; return true; }
  if (std::strcmp(s, "bf16") == 0) { *out = DType::BF16; return true; }
  return false;
}

#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
// Device code has no std::memcpy before the vendor headers declare one; the builtin needs none.
__device__ inline uint32_t floatBits(float f) { return __builtin_bit_cast(uint32_t, f); }
__device__ inline float bitsFloat(uint32_t u) { return __builtin_bit_cast(float, u); }
#else
inline uint32_t floatBits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bitsFloat(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
#endif

GEMMKIT_HD inline float bf16ToF32(uint16_t h) { return bitsFloat(uint32_t(h) << 16); }

GEMMKIT_HD inline uint16_t f32ToBf16(float f) {
  uint32_t u = floatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN (quiet)
  // Adding 0x7fff plus the lowest kept bit rounds half to even; overflow carries into Inf correctly.
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

GEMMKIT_HD inline float f16ToF32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bitsFloat(sign | 0x7f800000u | (man << 13));  // Inf / NaN
  if (exp == 0) {
    if (man == 0) return bitsFloat(sign);
    // Subnormal: value is man * 2^-24, exact in f32.
    float v = float(man) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bitsFloat(sign | ((exp + 112u) << 23) | (man << 13));
}

GEMMKIT_HD inline uint16_t f32ToF16(float f) {
  uint32_t u = floatBits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN, quiet
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: Inf
  if (a < 0x38800000u) {
    // Result is subnormal (or zero): scale to units of 2^-24 and round half to even.
    if (a < 0x33000000u) return sign;  // below half the smallest subnormal
    uint32_t exp = a >> 23;
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp;  // 14 + (113 - exp) - 1 ... brings man to units of 2^-24
    uint32_t q = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return uint16_t(sign | q);
  }
  // Normal: rebias the exponent, round the 13 dropped bits half to even (carry may bump the exponent).
  uint32_t v = a - 0x38000000u;  // exponent bias 127 -> 15
  uint32_t q = v >> 13;
  uint32_t rem = v & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
  return uint16_t(sign | q);
}

GEMMKIT_HD inline float loadAsF32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F16: return f16ToF32(static_cast<const uint16_t*>(p)[i]);
    case DType::BF16: return bf16ToF32(static_cast<const uint16_t*>(p)[i]);
  }
  return 0.0f;
}

GEMMKIT_HD inline void storeFromF32(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::F32: static_cast<float*>(p)[i] = v; break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32ToF16(v); break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32ToBf16(v); break;
  }
}

}  // namespace gemmkit
