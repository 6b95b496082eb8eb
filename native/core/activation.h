// Epilogue activations, scalar and exact. The reference GEMM and every kernel's epilogue use these, so
// all paths agree on what gelu means (the erf form, as PyTorch's default nn.GELU).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace gemmkit {

enum class Activation : int32_t { None = 0, Relu = 1, Gelu = 2, Silu = 3 };

inline const char* activationName(Activation a) {
  switch (a) {
    case Activation::None: return "none";
    case Activation::Relu: return "relu";
    case Activation::Gelu: return "gelu";
    case Activation::Silu: return "silu";
  }
  return "?";
}

inline bool parseActivation(const char* s, Activation* out) {
  static const char* names[] = {"none", "relu", "gelu", "silu"};
  for (int i = 0; i < 4; i++) {
    if (std::strcmp(s, names[i]) == 0) { *out = Activation(i); return true; }
  }
  return false;
}

GEMMKIT_HD inline double applyActivation(Activation a, double x) {
  switch (a) {
    case Activation::None: return x;
    case Activation::Relu: return x > 0.0 ? x : (x == x ? 0.0 : x);  // NaN passes through
    case Activation::Gelu: return 0.5 * x * (1.0 + std::erf(x * 0.70710678118654752440));
    case Activation::Silu: return x / (1.0 + std::exp(-x));
  }
  return x;
}

GEMMKIT_HD inline float applyActivation(Activation a, float x) {
  switch (a) {
    case Activation::None: return x;
    case Activation::Relu: return x > 0.0f ? x : (x == x ? 0.0f : x);
    case Activation::Gelu: return 0.5f * x * (1.0f + std::erf(x * 0.70710678f));
    case Activation::Silu: return x / (1.0f + std::exp(-x));
  }
  return x;
}

}  // namespace gemmkit
