#include "gemm_frame.h"

#include <cstdlib>
#include <vector>

#include "epilogue.h"
#include "pack.h"
#include "packed_weight.h"
#include "scratch_buffer.h"
#include "thread_pool.h"

namespace gemmkit {

namespace {

thread_local ScratchBuffer packedA, packedB, accumulator;

inline int64_t roundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceilDiv(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Computes rows [m0, m1) x columns [n0, n1) of one batch item's C. b is the stored B of this item, or the
// prepacked weight (pw) when the problem has one.
void gemmRectangle(const Problem& p, const CpuConfig& cfg, const MicroKernel& uk, const void* a, const void* b,
                   const PackedWeight* pw, void* c, const float* bias, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const bool outF32 = p.dtypeC == DType::F32;
  const int MR = uk.mr, NR = uk.nr;
  const int64_t kcMax = p.k < cfg.kc ? p.k : cfg.kc;
  const int64_t kPadMax = uk.paddedK(kcMax);
  // Row blocks of equal size (at most mc, a multiple of MR), so no block is a thin remainder that streams
  // the whole B panel for a few rows. Blocking M does not change any element's arithmetic.
  const int64_t mcBlocks = ceilDiv(m1 - m0, cfg.mc);
  const int64_t mc = roundUp(ceilDiv(m1 - m0, mcBlocks), MR);
  const int64_t mcMax = (m1 - m0) < mc ? (m1 - m0) : mc;
  const int64_t ncMax = (n1 - n0) < cfg.nc ? (n1 - n0) : cfg.nc;
  // Ap: ceil(mc/MR) slivers of [kPad][MR], Bp: ceil(nc/NR) slivers of [kPad][NR], in the kernel's formats.
  char* Ap = static_cast<char*>(packedA.get(size_t(roundUp(mcMax, MR) * kPadMax) * panelElementSize(uk.aFormat) + 64));
  char* Bp = pw ? nullptr
                : static_cast<char*>(packedB.get(size_t(roundUp(ncMax, NR) * kPadMax) * panelElementSize(uk.bFormat) + 64));
  const int aSize = panelElementSize(uk.aFormat), bSize = panelElementSize(uk.bFormat);
  for (int64_t jc = n0; jc < n1; jc += cfg.nc) {
    const int64_t nb = (n1 - jc) < cfg.nc ? (n1 - jc) : cfg.nc;
    // The f32 accumulator: C itself for f32 outputs, else scratch [m1-m0, nb] kept across all K blocks.
    float* acc;
    int64_t ldacc;
    if (outF32) {
      acc = static_cast<float*>(c) + m0 * p.ldc + jc;
      ldacc = p.ldc;
    } else {
      acc = static_cast<float*>(accumulator.get(size_t((m1 - m0) * nb) * sizeof(float)));
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
      const int64_t kPad = uk.paddedK(kb);
      // beta applies once, on the first K block; for f16/bf16 outputs finalizeRows applies it.
      const float betaK = pc == 0 ? (outF32 ? p.beta : 0.0f) : 1.0f;
      if (!pw) packB(p, b, pc, kb, kPad, jc, nb, NR, uk.bFormat, Bp, kPad * NR);
      for (int64_t ic = m0; ic < m1; ic += mc) {
        const int64_t mb = (m1 - ic) < mc ? (m1 - ic) : mc;
        packA(p, a, ic, mb, pc, kb, kPad, MR, uk.aFormat, Ap);
        for (int64_t jr = 0; jr < nb; jr += NR) {
          const int nr = int((nb - jr) < NR ? (nb - jr) : NR);
          const void* bSliver = pw ? pw->sliver((jc + jr) / NR, pc) : Bp + (jr / NR) * kPad * NR * bSize;
          for (int64_t ir = 0; ir < mb; ir += MR) {
            const int mr = int((mb - ir) < MR ? (mb - ir) : MR);
            uk.run(kb, Ap + (ir / MR) * kPad * MR * aSize, bSliver, acc + (ic - m0 + ir) * ldacc + jr, ldacc, mr, nr,
                   p.alpha, betaK);
          }
        }
      }
    }
    finalizeRows(p, acc, ldacc, c, bias, m0, m1, jc, nb);
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
  const PackedWeight* pw = p.packedB.empty() ? nullptr : static_cast<const PackedWeight*>(buf.b);
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
    const char* b = pw ? nullptr : static_cast<const char*>(buf.b) + item * p.strideB * sizeB;
    char* c = static_cast<char*>(buf.c) + item * p.strideC * sizeC;
    gemmRectangle(p, cfg, uk, a, b, pw, c, p.hasBias ? bias.data() : nullptr, m0, m1, n0, n1);
  });
  return Status::ok();
}

Status prepackWeight(const Problem& p, const void* b, const MicroKernel& kernel, int kc,
                     std::unique_ptr<PackedWeight>* out) {
  if (!panelAccepts(kernel.bFormat, p.dtypeB)) {
    return unsupported(std::string("kernel ") + kernel.id + " packs bf16 weights only, not " + dtypeName(p.dtypeB));
  }
  if (kc < 1 || kc % kernel.kAlign != 0) {
    return outOfRange("kc " + std::to_string(kc) + " is not a positive multiple of " + std::to_string(kernel.kAlign) +
                      " for kernel " + kernel.id);
  }
  std::unique_ptr<PackedWeight> w(new PackedWeight());
  w->kernel = &kernel;
  w->kc = kc;
  w->k = p.k;
  w->n = p.n;
  w->dtype = p.dtypeB;
  w->transB = p.transB;
  const int64_t lastBlock = p.k == 0 ? 0 : (p.k - 1) / kc * kc;
  const int64_t paddedDepth = p.k == 0 ? 0 : lastBlock + kernel.paddedK(p.k - lastBlock);
  w->sliverStride = paddedDepth * kernel.nr;
  const int64_t slivers = ceilDiv(p.n, kernel.nr);
  w->bytes = size_t(slivers * w->sliverStride) * panelElementSize(kernel.bFormat);
  w->data = std::aligned_alloc(64, (w->bytes + 64) & ~size_t(63));
  if (!w->data) return Status(StatusCode::OutOfMemory, "out of memory packing a weight of " + std::to_string(w->bytes) + " bytes");
  for (int64_t pc = 0; pc < p.k; pc += kc) {
    const int64_t kb = p.k - pc < kc ? p.k - pc : kc;
    void* dst = static_cast<char*>(w->data) + pc * kernel.nr * panelElementSize(kernel.bFormat);
    packB(p, b, pc, kb, kernel.paddedK(kb), 0, p.n, kernel.nr, kernel.bFormat, dst, w->sliverStride);
  }
  *out = std::move(w);
  return Status::ok();
}

}  // namespace gemmkit
