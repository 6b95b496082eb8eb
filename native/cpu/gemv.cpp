#include "gemv.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "epilogue.h"
#include "scratch_buffer.h"
#include "thread_pool.h"

namespace gemmkit {

namespace {

// The portable kernels: plain loops, one accumulator per output, k ascending.
void gemvDotPortable(const void* xPanel, int64_t m, const void* w, DType wt, int64_t ldw, int64_t n0, int64_t n1,
                     int64_t k0, int64_t k1, int64_t /*kc: one running sum per output*/, float* y, int64_t ldy) {
  const float* x = static_cast<const float*>(xPanel);  // lanes 1: element (i, l) at l*m + i
  for (int64_t j = n0; j < n1; j++) {
    for (int64_t i = 0; i < m; i++) {
      float acc = 0.0f;
      for (int64_t l = k0; l < k1; l++) acc += x[l * m + i] * loadAsF32(w, wt, j * ldw + l);
      y[i * ldy + j] = acc;
    }
  }
}

void gemvColumnsPortable(const float* x, int64_t ldx, int64_t m, const void* w, DType wt, int64_t ldw, int64_t n0,
                         int64_t n1, int64_t k0, int64_t k1, int64_t /*kc*/, float* y, int64_t ldy) {
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = n0; j < n1; j++) y[i * ldy + j] = 0.0f;
    for (int64_t l = k0; l < k1; l++) {
      const float xv = x[i * ldx + l];
      for (int64_t j = n0; j < n1; j++) y[i * ldy + j] += xv * loadAsF32(w, wt, l * ldw + j);
    }
  }
}

// One row of op(A) (element l at src[l*stride]) into the panel's lanes, converted to f32 (or bf16 bits
// copied unchanged for a bf16 panel). Specialised per dtype so the compiler vectorises the common case
// (stride 1).
template <typename Out, DType In>
void packXRow(const void* src, int64_t stride, int64_t k, int lanes, int64_t m, Out* row) {
  const int64_t steps = (k + lanes - 1) / lanes;
  // Same type, contiguous: the strips are plain copies.
  const bool copy = stride == 1 && (sizeof(Out) == 2 || In == DType::F32);
  for (int64_t s = 0; s < steps; s++) {
    Out* dst = row + s * m * lanes;
    const int64_t l0 = s * lanes;
    const int64_t n = k - l0 < lanes ? k - l0 : lanes;
    if (copy) {
      std::memcpy(dst, static_cast<const Out*>(src) + l0, size_t(n) * sizeof(Out));
      for (int64_t q = n; q < lanes; q++) dst[q] = Out(0);
      continue;
    }
    for (int64_t q = 0; q < n; q++) {
      if constexpr (sizeof(Out) == 2) {
        dst[q] = static_cast<const uint16_t*>(src)[(l0 + q) * stride];
      } else {
        dst[q] = loadAsF32(src, In, (l0 + q) * stride);
      }
    }
    for (int64_t q = n; q < lanes; q++) dst[q] = Out(0);
  }
}

inline int64_t ceilDiv(int64_t x, int64_t m) { return (x + m - 1) / m; }
inline int64_t roundUp(int64_t x, int64_t m) { return ceilDiv(x, m) * m; }

}  // namespace

const std::vector<GemvKernel>& gemvKernels() {
  static const std::vector<GemvKernel> kernels = [] {
    std::vector<GemvKernel> k;
    k.push_back({"gemv.scalar", Isa::Scalar, gemvDotPortable, 1, DType::F32, gemvColumnsPortable, 8});
    addGemvAvx2Kernels(k);
    addGemvAvx512Kernels(k);
    return k;
  }();
  return kernels;
}

const GemvKernel* findGemvKernel(const std::string& id) {
  for (const GemvKernel& k : gemvKernels()) {
    if (k.id == id) return &k;
  }
  return nullptr;
}

void packGemvX(const Problem& p, const void* a, int64_t m, int64_t k, int lanes, DType xt, void* panel) {
  for (int64_t i = 0; i < m; i++) {
    // op(A)(i, l) = transA ? A[l][i] : A[i][l]
    const int64_t start = p.transA ? i : i * p.lda, stride = p.transA ? p.lda : 1;
    const void* src = static_cast<const char*>(a) + start * dtypeSize(p.dtypeA);
    if (xt == DType::BF16) {
      packXRow<uint16_t, DType::BF16>(src, stride, k, lanes, m, static_cast<uint16_t*>(panel) + i * lanes);
      continue;
    }
    float* row = static_cast<float*>(panel) + i * lanes;
    switch (p.dtypeA) {
      case DType::F32: packXRow<float, DType::F32>(src, stride, k, lanes, m, row); break;
      case DType::BF16: packXRow<float, DType::BF16>(src, stride, k, lanes, m, row); break;
      case DType::F16: packXRow<float, DType::F16>(src, stride, k, lanes, m, row); break;
    }
  }
}

int gemvDepthBlock(const Problem& p, const GemvKernel& kernel) {
  if (!p.transB) return 256;  // columns kernel: a strip of 256 rows of W x 64 columns is reused from L1
  const int64_t m = p.m > 0 ? p.m : 1;
  const int64_t xBytes = dtypeSize(kernel.dotX), wBytes = dtypeSize(p.dtypeB);
  auto pow2Below = [](int64_t v) {
    int64_t r = 32;
    while (r * 2 <= v) r *= 2;
    return r;
  };
  // Up to 8 rows of x are one pass over W, which streams from memory: long runs of each W row, as long as
  // the x strip they meet stays near L1 (measured on Zen 4, f32 and bf16: 1 row best with all of K, 2-4
  // rows with 4096, 5-8 rows with 1024). More rows take several passes over each group of 4 W rows: that
  // group stays in L1 and the x block in L2.
  int64_t kc = m == 1 ? 16384
               : m <= 4 ? 4096
               : m <= 8 ? 1024
                        : std::min(pow2Below(512 * 1024 / (m * xBytes)), pow2Below(16 * 1024 / (4 * wBytes)));
  kc = std::max<int64_t>(256, std::min<int64_t>(kc, 16384));
  return int(kc);
}

namespace {

// Adds the parts of columns [n0, n1) in part order, applies alpha and beta, and finalizes (bias,
// activation, rounding) into C. partial: [parts][m][ldp] f32, column j of part q at q*partStride + j.
void finishColumns(const Problem& p, float* partial, int64_t partStride, int64_t ldp, int64_t parts, bool partialIsC,
                   void* c, const float* bias, int64_t n0, int64_t n1) {
  const bool outF32 = p.dtypeC == DType::F32;
  for (int64_t i = 0; i < p.m; i++) {
    float* row = partial + i * ldp;
    if (partialIsC) {  // f32 C with beta == 0 and one part: the kernel summed straight into C
      if (p.alpha != 1.0f) {
        for (int64_t j = n0; j < n1; j++) row[j] *= p.alpha;
      }
      continue;
    }
    float* crow = outF32 ? reinterpret_cast<float*>(c) + i * p.ldc : nullptr;
    for (int64_t j = n0; j < n1; j++) {
      float s = row[j];
      for (int64_t q = 1; q < parts; q++) s += row[q * partStride + j];
      const float v = p.alpha * s;
      if (outF32) {
        crow[j] = p.beta != 0.0f ? v + p.beta * crow[j] : v;
      } else {
        row[j] = v;  // finalize adds beta*C and rounds
      }
    }
  }
  if (outF32) {
    finalizeRows(p, reinterpret_cast<float*>(c) + n0, p.ldc, c, bias, 0, p.m, n0, n1 - n0);
  } else {
    finalizeRows(p, partial + n0, ldp, c, bias, 0, p.m, n0, n1 - n0);
  }
}

thread_local ScratchBuffer xScratch, partialScratch;

}  // namespace

Status runCpuGemv(const Problem& p, const CpuConfig& cfg, const GemvKernel& kernel, const Buffers& buf) {
  if (p.m == 0 || p.n == 0 || p.batch == 0) return Status::ok();
  if (!p.packedB.empty()) return unsupported("GEMV configs read plain weights, not prepacked ones: " + p.describe());
  const int64_t m = p.m, n = p.n, k = p.k;
  const std::vector<float> bias = biasAsF32(p, buf.bias);
  const float* biasF32 = p.hasBias ? bias.data() : nullptr;
  // K parts of a multiple of 32 (one vector of bf16), fixed by ks alone; depth blocks within each part.
  const int64_t kPart = k == 0 ? 0 : roundUp(ceilDiv(k, cfg.ks), 32);
  const int64_t parts = kPart == 0 ? 1 : ceilDiv(k, kPart);
  const int64_t kc = cfg.kc;
  // N chunks: enough for the threads to share evenly; each output is computed the same way in any chunk.
  const int64_t chunk = roundUp(ceilDiv(n, int64_t(cfg.threads) * 4), kGemvColumnAlign);
  const int64_t chunks = ceilDiv(n, chunk);
  const bool outF32 = p.dtypeC == DType::F32;
  // With one part, an f32 C not read (beta == 0) is where the sums go; else partial: [parts][m][n].
  const bool partialIsC = parts == 1 && outF32 && p.beta == 0.0f;
  const int sizeA = dtypeSize(p.dtypeA), sizeB = dtypeSize(p.dtypeB), sizeC = dtypeSize(p.dtypeC);
  // x: the dot kernel's panel of op(A), or for the columns kernel f32 rows [m, k] (read in place when A
  // already is that).
  const int lanes = kernel.dotLanes;
  const bool xInPlace = !p.transB && !p.transA && p.dtypeA == DType::F32;
  const size_t xBytes = p.transB ? size_t(roundUp(k, lanes) * m) * dtypeSize(kernel.dotX) : size_t(m * k) * 4;
  void* xBuf = xInPlace || k == 0 ? nullptr : xScratch.get(xBytes);
  float* partialBuf = partialIsC ? nullptr : static_cast<float*>(partialScratch.get(size_t(parts * m * n) * sizeof(float)));
  for (int64_t item = 0; item < p.batch; item++) {
    const char* a = static_cast<const char*>(buf.a) + item * p.strideA * sizeA;
    const char* b = static_cast<const char*>(buf.b) + item * p.strideB * sizeB;
    char* c = static_cast<char*>(buf.c) + item * p.strideC * sizeC;
    const void* x = xInPlace ? static_cast<const void*>(a) : xBuf;
    const int64_t ldx = xInPlace ? p.lda : k;
    if (k > 0 && p.transB) {
      packGemvX(p, a, m, k, lanes, kernel.dotX, xBuf);
    } else if (k > 0 && !xInPlace) {
      for (int64_t i = 0; i < m; i++) {
        for (int64_t l = 0; l < k; l++) {
          static_cast<float*>(xBuf)[i * k + l] = loadAsF32(a, p.dtypeA, p.transA ? l * p.lda + i : i * p.lda + l);
        }
      }
    }
    float* partial = partialIsC ? reinterpret_cast<float*>(c) : partialBuf;
    const int64_t ldp = partialIsC ? p.ldc : n;
    auto sumPart = [&](int64_t part, int64_t n0, int64_t n1) {
      float* y = partial + part * m * ldp;
      if (k == 0) {
        for (int64_t i = 0; i < m; i++) {
          for (int64_t j = n0; j < n1; j++) y[i * ldp + j] = 0.0f;
        }
        return;
      }
      const int64_t k0 = part * kPart, k1 = k0 + kPart < k ? k0 + kPart : k;
      if (p.transB) {
        kernel.dot(x, m, b, p.dtypeB, p.ldb, n0, n1, k0, k1, kc, y, ldp);
      } else {
        kernel.columns(static_cast<const float*>(x), ldx, m, b, p.dtypeB, p.ldb, n0, n1, k0, k1, kc, y, ldp);
      }
    };
    if (parts == 1) {
      // Each task sums its columns and finishes them while they are still in cache.
      ThreadPool::instance().parallelFor(int(chunks), cfg.threads, [&](int task) {
        const int64_t n0 = task * chunk, n1 = n0 + chunk < n ? n0 + chunk : n;
        sumPart(0, n0, n1);
        finishColumns(p, partial, 0, ldp, 1, partialIsC, c, biasF32, n0, n1);
      });
    } else {
      ThreadPool::instance().parallelFor(int(parts * chunks), cfg.threads, [&](int task) {
        const int64_t ch = task % chunks, n0 = ch * chunk, n1 = n0 + chunk < n ? n0 + chunk : n;
        sumPart(task / chunks, n0, n1);
      });
      ThreadPool::instance().parallelFor(int(chunks), cfg.threads, [&](int task) {
        const int64_t n0 = task * chunk, n1 = n0 + chunk < n ? n0 + chunk : n;
        finishColumns(p, partial, m * ldp, ldp, parts, false, c, biasF32, n0, n1);
      });
    }
  }
  return Status::ok();
}

}  // namespace gemmkit
