#include "gemv.h"

#include <cstdlib>
#include <new>

#include "epilogue.h"
#include "thread_pool.h"

namespace gemmkit {

namespace {

// The portable kernels: plain loops, one accumulator per output, k ascending.
void gemvRowsPortable(const float* x, int64_t ldx, int64_t m, const void* w, DType wt, int64_t ldw, int64_t n0,
                      int64_t n1, int64_t k0, int64_t k1, float* y, int64_t ldy) {
  for (int64_t j = n0; j < n1; j++) {
    for (int64_t i = 0; i < m; i++) {
      float acc = 0.0f;
      for (int64_t l = k0; l < k1; l++) acc += x[i * ldx + l] * loadAsF32(w, wt, j * ldw + l);
      y[i * ldy + j] = acc;
    }
  }
}

void gemvColumnsPortable(const float* x, int64_t ldx, int64_t m, const void* w, DType wt, int64_t ldw, int64_t n0,
                         int64_t n1, int64_t k0, int64_t k1, float* y, int64_t ldy) {
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = n0; j < n1; j++) y[i * ldy + j] = 0.0f;
    for (int64_t l = k0; l < k1; l++) {
      const float xv = x[i * ldx + l];
      for (int64_t j = n0; j < n1; j++) y[i * ldy + j] += xv * loadAsF32(w, wt, l * ldw + j);
    }
  }
}

inline int64_t ceilDiv(int64_t x, int64_t m) { return (x + m - 1) / m; }
inline int64_t roundUp(int64_t x, int64_t m) { return ceilDiv(x, m) * m; }

struct Aligned {
  void* p = nullptr;
  explicit Aligned(size_t bytes) {
    p = std::aligned_alloc(64, (bytes + 64) & ~size_t(63));
    if (!p) throw std::bad_alloc();
  }
  ~Aligned() { std::free(p); }
  float* f() const { return static_cast<float*>(p); }
};

}  // namespace

const std::vector<GemvKernel>& gemvKernels() {
  static const std::vector<GemvKernel> kernels = [] {
    std::vector<GemvKernel> k;
    k.push_back({"gemv.scalar", Isa::Scalar, gemvRowsPortable, gemvColumnsPortable});
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

Status runCpuGemv(const Problem& p, const CpuConfig& cfg, const GemvKernel& kernel, const Buffers& buf) {
  if (p.m == 0 || p.n == 0 || p.batch == 0) return Status::ok();
  if (!p.packedB.empty()) return unsupported("GEMV configs read plain weights, not prepacked ones: " + p.describe());
  const int64_t m = p.m, n = p.n, k = p.k;
  std::vector<float> bias;
  if (p.hasBias) {
    bias.resize(size_t(n));
    for (int64_t j = 0; j < n; j++) bias[size_t(j)] = loadAsF32(buf.bias, p.dtypeBias, j);
  }
  // K parts of a multiple of 32 (one vector of bf16), fixed by ks alone.
  const int64_t kPart = k == 0 ? 0 : roundUp(ceilDiv(k, cfg.ks), 32);
  const int64_t parts = kPart == 0 ? 1 : ceilDiv(k, kPart);
  // N chunks: enough for the threads to share evenly; each output is computed the same way in any chunk.
  const int64_t align = p.transB ? 4 : 64;
  const int64_t chunk = roundUp(ceilDiv(n, int64_t(cfg.threads) * 4), align);
  const int64_t chunks = ceilDiv(n, chunk);
  const GemvFn fn = p.transB ? kernel.rows : kernel.columns;
  const bool pairs = p.transB && kernel.rowsBf16 != nullptr;  // x stays bf16 for the VDPBF16PS kernel
  Aligned x(size_t(m * (k > 0 ? k : 1)) * sizeof(float));          // x: [m, k] f32 (or bf16), op(A)
  Aligned partial(size_t(parts * m * n) * sizeof(float));           // partial: [parts][m][n]
  const int sizeA = dtypeSize(p.dtypeA), sizeB = dtypeSize(p.dtypeB), sizeC = dtypeSize(p.dtypeC);
  for (int64_t item = 0; item < p.batch; item++) {
    const char* a = static_cast<const char*>(buf.a) + item * p.strideA * sizeA;
    const char* b = static_cast<const char*>(buf.b) + item * p.strideB * sizeB;
    char* c = static_cast<char*>(buf.c) + item * p.strideC * sizeC;
    uint16_t* x16 = static_cast<uint16_t*>(x.p);
    for (int64_t i = 0; i < m; i++) {
      for (int64_t l = 0; l < k; l++) {
        const int64_t at = p.transA ? l * p.lda + i : i * p.lda + l;
        if (pairs) {
          x16[i * k + l] = reinterpret_cast<const uint16_t*>(a)[at];
        } else {
          x.f()[i * k + l] = loadAsF32(a, p.dtypeA, at);
        }
      }
    }
    if (k > 0) {
      ThreadPool::instance().parallelFor(int(parts * chunks), cfg.threads, [&](int task) {
        const int64_t part = task / chunks, ch = task % chunks;
        const int64_t n0 = ch * chunk, n1 = n0 + chunk < n ? n0 + chunk : n;
        const int64_t k0 = part * kPart, k1 = k0 + kPart < k ? k0 + kPart : k;
        if (pairs) {
          kernel.rowsBf16(x16, k, m, reinterpret_cast<const uint16_t*>(b), p.ldb, n0, n1, k0, k1, partial.f() + part * m * n, n);
        } else {
          fn(x.f(), k, m, b, p.dtypeB, p.ldb, n0, n1, k0, k1, partial.f() + part * m * n, n);
        }
      });
    }
    // Sum the parts in order, scale, and write C (f32) or the f32 accumulator that finalize rounds.
    const bool outF32 = p.dtypeC == DType::F32;
    float* acc = outF32 ? nullptr : partial.f();  // part 0 is reused as the accumulator
    for (int64_t i = 0; i < m; i++) {
      for (int64_t j = 0; j < n; j++) {
        float s = k > 0 ? partial.f()[i * n + j] : 0.0f;
        for (int64_t q = 1; q < parts; q++) s += partial.f()[(q * m + i) * n + j];
        float v = p.alpha * s;
        if (outF32) {
          float* cij = reinterpret_cast<float*>(c) + i * p.ldc + j;
          *cij = p.beta != 0.0f ? v + p.beta * *cij : v;
        } else {
          acc[i * n + j] = v;
        }
      }
    }
    if (outF32) {
      finalizeRows(p, reinterpret_cast<float*>(c), p.ldc, c, p.hasBias ? bias.data() : nullptr, 0, m, 0, n);
    } else {
      finalizeRows(p, acc, n, c, p.hasBias ? bias.data() : nullptr, 0, m, 0, n);
    }
  }
  return Status::ok();
}

}  // namespace gemmkit
