#include "gemm_frame.h"

#include <cstdlib>
#include <new>
#include <vector>

#include "pack.h"
#include "thread_pool.h"

namespace gemmkit {

namespace {

// Grow-only, 64-byte aligned scratch owned by one thread, reused across calls to avoid allocation.
class ScratchBuffer {
 public:
  ~ScratchBuffer() { std::free(data_); }
  float* get(size_t floats) {
    if (floats > capacity_) {
      std::free(data_);
      size_t bytes = (floats * sizeof(float) + 63) & ~size_t(63);
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data_) {
        capacity_ = 0;
        throw std::bad_alloc();
      }
      capacity_ = floats;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

thread_local ScratchBuffer packedA, packedB, accumulator;

inline int64_t roundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceilDiv(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Applies what the micro-kernels leave out: bias, activation and, for f16/bf16 outputs, beta and the
// rounding from the f32 accumulator. acc: [m1-m0, nb] tile of the f32 accumulator with row stride ldacc.
void finalizeTile(const Problem& p, const float* acc, int64_t ldacc, void* c, const float* bias, int64_t m0,
                  int64_t m1, int64_t jc, int64_t nb) {
  const bool outF32 = p.dtypeC == DType::F32;
  if (outF32 && !bias && p.activation == Activation::None) return;
  for (int64_t i = m0; i < m1; i++) {
    const float* arow = acc + (i - m0) * ldacc;
    const int64_t crow = i * p.ldc + jc;
    for (int64_t j = 0; j < nb; j++) {
      float v = arow[j];
      if (!outF32 && p.beta != 0.0f) v += p.beta * loadAsF32(c, p.dtypeC, crow + j);
      if (bias) v += bias[jc + j];
      storeFromF32(c, p.dtypeC, crow + j, applyActivation(p.activation, v));
    }
  }
}

// Computes rows [m0, m1) x columns [n0, n1) of one batch item's C.
void gemmRectangle(const Problem& p, const CpuConfig& cfg, const MicroKernel& uk, const void* a, const void* b,
                   void* c, const float* bias, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const bool outF32 = p.dtypeC == DType::F32;
  const int MR = uk.mr, NR = uk.nr;
  const int64_t kcMax = p.k < cfg.kc ? p.k : cfg.kc;
  const int64_t mcMax = (m1 - m0) < cfg.mc ? (m1 - m0) : cfg.mc;
  const int64_t ncMax = (n1 - n0) < cfg.nc ? (n1 - n0) : cfg.nc;
  float* Ap = packedA.get(size_t(roundUp(mcMax, MR) * kcMax) + 1);  // Ap: ceil(mc/MR) slivers of [kc][MR]
  float* Bp = packedB.get(size_t(roundUp(ncMax, NR) * kcMax) + 1);  // Bp: ceil(nc/NR) slivers of [kc][NR]
  for (int64_t jc = n0; jc < n1; jc += cfg.nc) {
    const int64_t nb = (n1 - jc) < cfg.nc ? (n1 - jc) : cfg.nc;
    // The f32 accumulator: C itself for f32 outputs, else scratch [m1-m0, nb] kept across all K blocks.
    float* acc;
    int64_t ldacc;
    if (outF32) {
      acc = static_cast<float*>(c) + m0 * p.ldc + jc;
      ldacc = p.ldc;
    } else {
      acc = accumulator.get(size_t((m1 - m0) * nb));
      ldacc = nb;
    }
    if (p.k == 0) {
      // No products: the accumulator is beta*C for f32 outputs (beta == 0 never reads C), else zero.
      for (int64_t i = 0; i < m1 - m0; i++) {
        for (int64_t j = 0; j < nb; j++) {
          float* x = acc + i * ldacc + j;
          *x = (outF32 && p.beta != 0.0f) ? p.beta * *x : 0.0f;
        }
      }
    }
    for (int64_t pc = 0; pc < p.k; pc += cfg.kc) {
      const int64_t kb = (p.k - pc) < cfg.kc ? (p.k - pc) : cfg.kc;
      // beta applies once, on the first K block; for f16/bf16 outputs finalizeTile applies it.
      const float betaK = pc == 0 ? (outF32 ? p.beta : 0.0f) : 1.0f;
      packB(p, b, pc, kb, jc, nb, NR, Bp);
      for (int64_t ic = m0; ic < m1; ic += cfg.mc) {
        const int64_t mb = (m1 - ic) < cfg.mc ? (m1 - ic) : cfg.mc;
        packA(p, a, ic, mb, pc, kb, MR, Ap);
        for (int64_t jr = 0; jr < nb; jr += NR) {
          const int nr = int((nb - jr) < NR ? (nb - jr) : NR);
          for (int64_t ir = 0; ir < mb; ir += MR) {
            const int mr = int((mb - ir) < MR ? (mb - ir) : MR);
            uk.run(kb, Ap + ir * kb, Bp + jr * kb, acc + (ic - m0 + ir) * ldacc + jr, ldacc, mr, nr, p.alpha, betaK);
          }
        }
      }
    }
    finalizeTile(p, acc, ldacc, c, bias, m0, m1, jc, nb);
  }
}

}  // namespace

TaskGrid chooseTaskGrid(int64_t m, int64_t n, int mr, int nr, int threads) {
  TaskGrid best;
  int64_t bestWork = -1;
  for (int tm = 1; tm <= threads; tm++) {
    int tn = threads / tm;
    if (tm > ceilDiv(m, mr) || tn > ceilDiv(n, nr)) continue;  // no piece thinner than a register block
    int64_t work = roundUp(ceilDiv(m, tm), mr) * roundUp(ceilDiv(n, tn), nr);
    // Equal work: split the longer side, so the operand packed twice is the smaller one.
    bool better = bestWork < 0 || work < bestWork || (work == bestWork && (m >= n ? tm > best.tm : tn > best.tn));
    if (better) {
      bestWork = work;
      best.tm = tm;
      best.tn = tn;
    }
  }
  return best;
}

Status runCpuGemm(const Problem& p, const CpuConfig& cfg, const MicroKernel& uk, const Buffers& buf) {
  if (p.m == 0 || p.n == 0 || p.batch == 0) return Status::ok();
  std::vector<float> bias;  // bias: [n] as f32, converted once per call
  if (p.hasBias) {
    bias.resize(size_t(p.n));
    for (int64_t j = 0; j < p.n; j++) bias[size_t(j)] = loadAsF32(buf.bias, p.dtypeBias, j);
  }
  // Several batch items per thread make a finer split of each item unnecessary.
  int perItemThreads = int(ceilDiv(cfg.threads, p.batch));
  TaskGrid grid = chooseTaskGrid(p.m, p.n, uk.mr, uk.nr, perItemThreads);
  const int64_t tileM = roundUp(ceilDiv(p.m, grid.tm), uk.mr);
  const int64_t tileN = roundUp(ceilDiv(p.n, grid.tn), uk.nr);
  const int64_t tilesPerItem = int64_t(grid.tm) * grid.tn;
  const int64_t tasks = p.batch * tilesPerItem;
  if (tasks > (int64_t(1) << 30)) return outOfRange("too many batch items: " + p.describe());
  const int sizeA = dtypeSize(p.dtypeA), sizeB = dtypeSize(p.dtypeB), sizeC = dtypeSize(p.dtypeC);
  ThreadPool::instance().parallelFor(int(tasks), cfg.threads, [&](int task) {
    const int64_t item = task / tilesPerItem;
    const int64_t tile = task % tilesPerItem;
    const int64_t m0 = (tile / grid.tn) * tileM, n0 = (tile % grid.tn) * tileN;
    if (m0 >= p.m || n0 >= p.n) return;
    const int64_t m1 = m0 + tileM < p.m ? m0 + tileM : p.m;
    const int64_t n1 = n0 + tileN < p.n ? n0 + tileN : p.n;
    const char* a = static_cast<const char*>(buf.a) + item * p.strideA * sizeA;
    const char* b = static_cast<const char*>(buf.b) + item * p.strideB * sizeB;
    char* c = static_cast<char*>(buf.c) + item * p.strideC * sizeC;
    gemmRectangle(p, cfg, uk, a, b, c, p.hasBias ? bias.data() : nullptr, m0, m1, n0, n1);
  });
  return Status::ok();
}

}  // namespace gemmkit
