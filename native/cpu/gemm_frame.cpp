#include "gemm_frame.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>
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

// Row blocks of equal size (at most cfg.mc, a multiple of MR) for rows [m0, m1), so no block is a thin
// remainder that streams the whole B panel for a few rows. Blocking M does not change any element's
// arithmetic.
int64_t rowBlock(int64_t rows, const CpuConfig& cfg, int MR) {
  if (rows <= 0) return MR;
  return roundUp(ceilDiv(rows, ceilDiv(rows, cfg.mc)), MR);
}

// The beta the micro-kernel applies for the depth block starting at pc: beta once, on the first block (for
// f16/bf16 outputs finalizeRows adds beta*C, so the kernel starts from zero), then 1 to keep adding.
inline float kernelBeta(const Problem& p, int64_t pc) {
  return pc == 0 ? (p.dtypeC == DType::F32 ? p.beta : 0.0f) : 1.0f;
}

// Packs op(B)[p0:p0+kb, j0:j0+nb] into ceil(nb/R) F32 slivers of kPad*R elements (sliver s at element
// s*sliverStride of Bp), zero padded as packB pads, reading a weight prepacked for another kernel: a bf16
// panel for f32 or f16 inputs. Widening bf16 to f32 is exact, so the slivers hold what packB makes of the
// weight itself. Element (l, j) of the panel lives in sliver j/NR at its depth block's offset plus
// panelIndex(l within the block, j%NR), and panelIndex is a sum of a depth part and a lane part.
void packBFromPanel(const PackedWeight& w, int64_t p0, int64_t kb, int64_t kPad, int64_t j0, int64_t nb, int R,
                    float* Bp, int64_t sliverStride) {
  const int wNR = w.kernel->nr;
  const PanelFormat wf = w.kernel->bFormat;
  std::vector<int64_t> laneOffset(size_t(R), 0);  // per lane of an output sliver: where its column starts
  for (int64_t s = 0; s * R < nb; s++) {
    float* out = Bp + s * sliverStride;  // [kPad][R]
    const int lanes = int(std::min<int64_t>(R, nb - s * R));
    for (int r = 0; r < lanes; r++) {
      const int64_t j = j0 + s * R + r;
      laneOffset[size_t(r)] = (j / wNR) * w.sliverStride + panelIndex(wf, 0, j % wNR, wNR);
    }
    for (int64_t l = 0; l < kPad; l++) {
      float* row = out + l * R;
      if (l >= kb) {
        for (int r = 0; r < R; r++) row[r] = 0.0f;
        continue;
      }
      const int64_t depth = p0 + l, block = depth / w.kc * w.kc;
      const int64_t depthOffset = block * wNR + panelIndex(wf, depth - block, 0, wNR);
      if (wf == PanelFormat::F32) {
        const float* panel = static_cast<const float*>(w.data) + depthOffset;
        for (int r = 0; r < lanes; r++) row[r] = panel[laneOffset[size_t(r)]];
      } else {
        const uint16_t* panel = static_cast<const uint16_t*>(w.data) + depthOffset;
        for (int r = 0; r < lanes; r++) row[r] = bf16ToF32(panel[laneOffset[size_t(r)]]);
      }
      for (int r = lanes; r < R; r++) row[r] = 0.0f;
    }
  }
}

// Packs the B block [pc, pc+kb) x [j0, j0+nb) for kernel uk: from the stored B, or from `foreign`, a weight
// prepacked for another kernel (see packBFromPanel; the caller checked that uk reads F32 slivers).
void packBBlock(const Problem& p, const MicroKernel& uk, const void* b, const PackedWeight* foreign, int64_t pc,
                int64_t kb, int64_t kPad, int64_t j0, int64_t nb, void* Bp, int64_t sliverStride) {
  if (foreign) {
    packBFromPanel(*foreign, pc, kb, kPad, j0, nb, uk.nr, static_cast<float*>(Bp), sliverStride);
  } else {
    packB(p, b, pc, kb, kPad, j0, nb, uk.nr, uk.bFormat, Bp, sliverStride);
  }
}

// The f32 accumulator of rows [m0, m1) and columns [jc, jc+nb): C itself for f32 outputs, else scratch
// [m1-m0, nb] kept across all K blocks (when K == 0 it is set to what beta*C contributes).
float* accumulatorFor(const Problem& p, void* c, int64_t m0, int64_t m1, int64_t jc, int64_t nb, int64_t* ldacc) {
  const bool outF32 = p.dtypeC == DType::F32;
  float* acc;
  if (outF32) {
    acc = static_cast<float*>(c) + m0 * p.ldc + jc;
    *ldacc = p.ldc;
  } else {
    acc = static_cast<float*>(accumulator.get(size_t((m1 - m0) * nb) * sizeof(float)));
    *ldacc = nb;
  }
  if (p.k == 0) {
    // No products: the accumulator is beta*C for f32 outputs (beta == 0 never reads C), else zero.
    for (int64_t i = 0; i < m1 - m0; i++) {
      for (int64_t j = 0; j < nb; j++) {
        float* x = acc + i * *ldacc + j;
        *x = (outF32 && p.beta != 0.0f) ? p.beta * *x : 0.0f;
      }
    }
  }
  return acc;
}

// Rows [m0, m1) of op(A) times the packed B panel of depth block [pc, pc+kb) and columns [jc, jc+nb),
// added into acc (row m0, column jc; beta applied on the first depth block): packs A block by block
// (mc rows) into Ap and sweeps the micro-kernel over the tiles. Bp: the panel, ceil(nb/NR) slivers of
// kPad*NR, or null to read the prepacked weight pw. On the last depth block each block of rows is
// finalized into C (bias, activation, rounding) as soon as it is complete, while it is still in cache.
void multiplyRows(const Problem& p, const MicroKernel& uk, const void* a, int64_t m0, int64_t m1, int64_t mc,
                  int64_t pc, int64_t kb, const char* Bp, const PackedWeight* pw, int64_t jc, int64_t nb, char* Ap,
                  float* acc, int64_t ldacc, void* c, const float* bias) {
  const int MR = uk.mr, NR = uk.nr;
  const int64_t kPad = uk.paddedK(kb);
  const int aSize = panelElementSize(uk.aFormat), bSize = panelElementSize(uk.bFormat);
  const float betaK = kernelBeta(p, pc);
  for (int64_t ic = m0; ic < m1; ic += mc) {
    const int64_t mb = (m1 - ic) < mc ? (m1 - ic) : mc;
    packA(p, a, ic, mb, pc, kb, kPad, MR, uk.aFormat, Ap);
    for (int64_t jr = 0; jr < nb; jr += NR) {
      const int nr = int((nb - jr) < NR ? (nb - jr) : NR);
      const void* bSliver = pw ? pw->sliver((jc + jr) / NR, pc) : Bp + (jr / NR) * kPad * NR * bSize;
      for (int64_t ir = 0; ir < mb; ir += MR) {
        const int mr = int((mb - ir) < MR ? (mb - ir) : MR);
        {
          // The next tile's C (the next rows, else the top of the next column sliver), a whole kernel call
          // ahead: its rows are far apart and come from L3 or memory (the kernel's own prefetch of its tile
          // comes too late to hide that on large C).
          const int64_t nir = ir + MR < mb ? ir + MR : 0, njr = ir + MR < mb ? jr : jr + NR;
          if (njr < nb) {
            const float* nc = acc + (ic - m0 + nir) * ldacc + njr;
            const int rows = int(mb - nir < MR ? mb - nir : MR);
            for (int r = 0; r < rows; r++) {
              for (int q = 0; q < NR; q += 16) __builtin_prefetch(nc + r * ldacc + q, 1, 3);
            }
          }
        }
        uk.run(kb, Ap + (ir / MR) * kPad * MR * aSize, bSliver, acc + (ic - m0 + ir) * ldacc + jr, ldacc, mr, nr,
               p.alpha, betaK);
      }
    }
    if (pc + kb >= p.k) finalizeRows(p, acc + (ic - m0) * ldacc, ldacc, c, bias, ic, ic + mb, jc, nb);
  }
}

// Rows [m0, m1) (at most one register block, MR) x columns [n0, n1) against a prepacked weight, sliver by
// sliver: each sliver holds all of K contiguously, so taking its depth blocks one after the other streams
// the weight in long runs (the order above would jump to another sliver after every depth block). A is
// packed for every depth block first (one sliver each). Every element sees the same kernel calls in the
// same order as above, so the results are the same bits.
void gemmRowsAgainstPrepacked(const Problem& p, const CpuConfig& cfg, const MicroKernel& uk, const void* a,
                              const PackedWeight* pw, void* c, const float* bias, int64_t m0, int64_t m1, int64_t n0,
                              int64_t n1) {
  const int MR = uk.mr, NR = uk.nr;
  const int aSize = panelElementSize(uk.aFormat);
  const int mr = int(m1 - m0);
  // Ap: one sliver [kPad][MR] per depth block, at the depth's offset, as the weight's slivers store K
  // (sliverStride / NR: all of K, each block padded).
  char* Ap = static_cast<char*>(packedA.get(size_t(pw->sliverStride / NR * MR) * aSize + 64));
  for (int64_t pc = 0; pc < p.k; pc += cfg.kc) {
    const int64_t kb = (p.k - pc) < cfg.kc ? (p.k - pc) : cfg.kc;
    packA(p, a, m0, mr, pc, kb, uk.paddedK(kb), MR, uk.aFormat, Ap + pc * MR * aSize);
  }
  for (int64_t jc = n0; jc < n1; jc += cfg.nc) {
    const int64_t nb = (n1 - jc) < cfg.nc ? (n1 - jc) : cfg.nc;
    int64_t ldacc;
    float* acc = accumulatorFor(p, c, m0, m1, jc, nb, &ldacc);
    for (int64_t jr = 0; jr < nb; jr += NR) {
      const int nr = int((nb - jr) < NR ? (nb - jr) : NR);
      for (int64_t pc = 0; pc < p.k; pc += cfg.kc) {
        const int64_t kb = (p.k - pc) < cfg.kc ? (p.k - pc) : cfg.kc;
        uk.run(kb, Ap + pc * MR * aSize, pw->sliver((jc + jr) / NR, pc), acc + jr, ldacc, mr, nr, p.alpha,
               kernelBeta(p, pc));
      }
    }
    finalizeRows(p, acc, ldacc, c, bias, m0, m1, jc, nb);
  }
}

// Computes rows [m0, m1) x columns [n0, n1) of one batch item's C. b is the stored B of this item; or pw,
// a weight prepacked for this kernel and kc, read in place; or foreign, a weight prepacked for another
// kernel, packed block by block as b would be.
void gemmRectangle(const Problem& p, const CpuConfig& cfg, const MicroKernel& uk, const void* a, const void* b,
                   const PackedWeight* pw, const PackedWeight* foreign, void* c, const float* bias, int64_t m0,
                   int64_t m1, int64_t n0, int64_t n1) {
  const int MR = uk.mr, NR = uk.nr;
  if (pw && m1 - m0 <= MR && p.k > 0) {
    gemmRowsAgainstPrepacked(p, cfg, uk, a, pw, c, bias, m0, m1, n0, n1);
    return;
  }
  const int64_t kPadMax = uk.paddedK(p.k < cfg.kc ? p.k : cfg.kc);
  const int64_t mc = rowBlock(m1 - m0, cfg, MR);
  const int64_t mcMax = (m1 - m0) < mc ? (m1 - m0) : mc;
  const int64_t ncMax = (n1 - n0) < cfg.nc ? (n1 - n0) : cfg.nc;
  // Ap: ceil(mc/MR) slivers of [kPad][MR], Bp: ceil(nc/NR) slivers of [kPad][NR], in the kernel's formats.
  char* Ap = static_cast<char*>(packedA.get(size_t(roundUp(mcMax, MR) * kPadMax) * panelElementSize(uk.aFormat) + 64));
  char* Bp = pw ? nullptr
                : static_cast<char*>(packedB.get(size_t(roundUp(ncMax, NR) * kPadMax) * panelElementSize(uk.bFormat) + 64));
  for (int64_t jc = n0; jc < n1; jc += cfg.nc) {
    const int64_t nb = (n1 - jc) < cfg.nc ? (n1 - jc) : cfg.nc;
    int64_t ldacc;
    float* acc = accumulatorFor(p, c, m0, m1, jc, nb, &ldacc);
    for (int64_t pc = 0; pc < p.k; pc += cfg.kc) {
      const int64_t kb = (p.k - pc) < cfg.kc ? (p.k - pc) : cfg.kc;
      const int64_t kPad = uk.paddedK(kb);
      if (!pw) packBBlock(p, uk, b, foreign, pc, kb, kPad, jc, nb, Bp, kPad * NR);
      multiplyRows(p, uk, a, m0, m1, mc, pc, kb, Bp, pw, jc, nb, Ap, acc, ldacc, c, bias);
    }
    if (p.k == 0) finalizeRows(p, acc, ldacc, c, bias, m0, m1, jc, nb);
  }
}

// What the members of a team share for one batch item: B panels, double buffered (step s, one (jc, pc)
// pair, uses panels[s % 2]), each holding ceil(nc/NR) slivers of [kPad][NR].
struct TeamShared {
  char* panels[2];
  TeamBarrier* barrier;
  std::atomic<bool>* failed;
};

// One member of a team computing a whole batch item: rows of C are split among the members (in multiples
// of MR), and each (jc, pc) panel of B is packed once, every member packing a share of its slivers. The
// panels are double buffered, so one barrier per step suffices: a member passes the barrier of step s only
// once every member has packed step s and finished computing step s-1, whose panel step s+1 reuses.
void gemmTeamMember(const Problem& p, const CpuConfig& cfg, const MicroKernel& uk, const void* a, const void* b,
                    const PackedWeight* foreign, void* c, const float* bias, int member, int team,
                    const TeamShared& shared) {
  const int MR = uk.mr, NR = uk.nr;
  const int bSize = panelElementSize(uk.bFormat);
  const int64_t rowsPer = roundUp(ceilDiv(p.m, team), MR);
  const int64_t m0 = std::min(p.m, member * rowsPer), m1 = std::min(p.m, m0 + rowsPer);
  const int64_t mc = rowBlock(m1 - m0, cfg, MR);
  const int64_t kPadMax = uk.paddedK(p.k < cfg.kc ? p.k : cfg.kc);
  const int64_t ncMax = p.n < cfg.nc ? p.n : cfg.nc;
  // Scratch first, and agree whether every member has it before anyone waits on anyone's work.
  char* Ap = nullptr;
  try {
    Ap = static_cast<char*>(packedA.get(size_t(roundUp(std::min(mc, std::max<int64_t>(m1 - m0, 1)), MR) * kPadMax) *
                                            panelElementSize(uk.aFormat) + 64));
    // accumulatorFor takes it from here on, without allocating again.
    if (p.dtypeC != DType::F32) accumulator.get(size_t(std::max<int64_t>(m1 - m0, 1) * ncMax) * sizeof(float));
  } catch (const std::bad_alloc&) {
    shared.failed->store(true);
  }
  shared.barrier->wait(team);
  if (shared.failed->load()) return;
  int64_t step = 0;
  for (int64_t jc = 0; jc < p.n; jc += cfg.nc) {
    const int64_t nb = (p.n - jc) < cfg.nc ? (p.n - jc) : cfg.nc;
    int64_t ldacc = 0;
    float* acc = m1 > m0 ? accumulatorFor(p, c, m0, m1, jc, nb, &ldacc) : nullptr;
    const int64_t slivers = ceilDiv(nb, NR);
    const int64_t s0 = slivers * member / team, s1 = slivers * (member + 1) / team;
    for (int64_t pc = 0; pc < p.k; pc += cfg.kc, step++) {
      const int64_t kb = (p.k - pc) < cfg.kc ? (p.k - pc) : cfg.kc;
      const int64_t kPad = uk.paddedK(kb);
      char* Bp = shared.panels[step % 2];
      if (s1 > s0) {
        const int64_t cols = std::min(nb, s1 * NR) - s0 * NR;
        packBBlock(p, uk, b, foreign, pc, kb, kPad, jc + s0 * NR, cols, Bp + s0 * kPad * NR * bSize, kPad * NR);
      }
      shared.barrier->wait(team);
      if (m1 > m0) multiplyRows(p, uk, a, m0, m1, mc, pc, kb, Bp, nullptr, jc, nb, Ap, acc, ldacc, c, bias);
    }
    if (m1 > m0 && p.k == 0) finalizeRows(p, acc, ldacc, c, bias, m0, m1, jc, nb);
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
  const PackedWeight* packed = p.packedB.empty() ? nullptr : static_cast<const PackedWeight*>(buf.b);
  // A weight packed for this kernel and kc is read in place; one packed for another kernel (a bf16 panel
  // multiplied with f32 inputs) is packed block by block like a stored B.
  const PackedWeight* pw = packed && packed->kernel == &uk && packed->kc == cfg.kc ? packed : nullptr;
  const PackedWeight* foreign = packed && !pw ? packed : nullptr;
  const std::vector<float> bias = biasAsF32(p, buf.bias);
  // Several batch items per thread make a finer split of each item unnecessary.
  int perItemThreads = int(ceilDiv(cfg.threads, p.batch));
  TaskGrid grid = chooseTaskGrid(p.m, p.n, uk.mr, uk.nr, perItemThreads);
  const int sizeA = dtypeSize(p.dtypeA), sizeB = dtypeSize(p.dtypeB), sizeC = dtypeSize(p.dtypeC);
  const float* biasF32 = p.hasBias ? bias.data() : nullptr;
  if (p.batch == 1 && !pw && grid.tm > 1 && grid.tn == 1) {
    // The threads split M, so they would all pack the same panels of B: a team packs each one once.
    const int64_t kPadMax = uk.paddedK(p.k < cfg.kc ? p.k : cfg.kc);
    const size_t panelBytes = size_t(roundUp(p.n < cfg.nc ? p.n : cfg.nc, uk.nr) * kPadMax) * panelElementSize(uk.bFormat);
    char* panels = static_cast<char*>(packedB.get(2 * panelBytes + 128));
    TeamBarrier barrier;
    std::atomic<bool> failed{false};
    const TeamShared shared{{panels, panels + (panelBytes + 63) / 64 * 64}, &barrier, &failed};
    ThreadPool::instance().runTeam(cfg.threads, [&](int member, int team) {
      gemmTeamMember(p, cfg, uk, buf.a, foreign ? nullptr : buf.b, foreign, buf.c, biasF32, member, team, shared);
    });
    if (failed.load()) throw std::bad_alloc();
    return Status::ok();
  }
  const int64_t tileM = roundUp(ceilDiv(p.m, grid.tm), uk.mr);
  const int64_t tileN = roundUp(ceilDiv(p.n, grid.tn), uk.nr);
  const int64_t tilesPerItem = int64_t(grid.tm) * grid.tn;
  const int64_t tasks = p.batch * tilesPerItem;
  if (tasks > (int64_t(1) << 30)) return outOfRange("too many batch items: " + p.describe());
  ThreadPool::instance().parallelFor(int(tasks), cfg.threads, [&](int task) {
    const int64_t item = task / tilesPerItem;
    const int64_t tile = task % tilesPerItem;
    const int64_t m0 = (tile / grid.tn) * tileM, n0 = (tile % grid.tn) * tileN;
    if (m0 >= p.m || n0 >= p.n) return;
    const int64_t m1 = m0 + tileM < p.m ? m0 + tileM : p.m;
    const int64_t n1 = n0 + tileN < p.n ? n0 + tileN : p.n;
    const char* a = static_cast<const char*>(buf.a) + item * p.strideA * sizeA;
    const char* b = packed ? nullptr : static_cast<const char*>(buf.b) + item * p.strideB * sizeB;
    char* c = static_cast<char*>(buf.c) + item * p.strideC * sizeC;
    gemmRectangle(p, cfg, uk, a, b, pw, foreign, c, biasF32, m0, m1, n0, n1);
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
