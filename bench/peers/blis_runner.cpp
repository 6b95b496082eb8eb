// BLIS peer: times bli_sgemm (f32 only: BLIS 0.9's typed API has no bf16 GEMM) on row-major operands
// through BLIS's general strides, so x @ W^T reads W [N, K] in place like a serving stack would.
// --arch=skx sets BLIS_ARCH_TYPE to BLIS's skx sub-configuration (its AVX-512 kernels) before BLIS
// initialises; --arch=detected keeps what BLIS's cpuid picks (zen3, AVX2, on a Zen 4 with BLIS 0.9).
// Threads: BLIS_NUM_THREADS / OMP_NUM_THREADS from the environment (Debian's build uses OpenMP).
#include <blis.h>

#include <string>

#include "runner_common.h"

int main(int argc, char** argv) {
  peers::RunnerArgs args = peers::parseArgs(argc, argv);
  std::string arch = peers::option(args, "arch", "detected");
  if (arch == "skx") {
    // BLIS 0.9 reads BLIS_ARCH_TYPE as the numeric arch_t id, once, when it initialises.
    setenv("BLIS_ARCH_TYPE", std::to_string(int(BLIS_ARCH_SKX)).c_str(), 1);
  } else if (arch != "detected") {
    std::fprintf(stderr, "blis_runner: --arch must be skx or detected, got '%s'\n", arch.c_str());
    return 2;
  }
  bli_init();
  std::string used = bli_arch_string(bli_arch_query_id());
  int threads = int(bli_thread_get_num_threads());
  std::string detail = std::string("BLIS ") + bli_info_get_version_str() + " sub-config " + used +
                       (arch == "skx" ? " (forced with BLIS_ARCH_TYPE)" : " (detected)") + ", " +
                       (threads < 1 ? "1 thread (BLIS_NUM_THREADS unset)" : std::to_string(threads) + " threads");
  bool archTaken = arch != "skx" || used == "skx";
  peers::emitInfo(arch == "skx" ? "blis" : "blis-detected", detail, archTaken);
  if (!archTaken) {
    for (const auto& s : args.shapes) peers::emitSkip(s, "error", "BLIS did not take BLIS_ARCH_TYPE (runs " + used + ")");
    return 0;
  }
  if (args.infoOnly) return 0;

  for (const auto& s : args.shapes) {
    if (s.dtype != "f32" || s.outDtype != "f32") {
      peers::emitSkip(s, "skip", "BLIS 0.9 has no bf16 GEMM");
      continue;
    }
    size_t aElems = size_t(s.m * s.k), bElems = size_t(s.k * s.n), cElems = size_t(s.m * s.n);
    int sets = peers::rotatingSets((aElems + bElems + cElems) * sizeof(float), args.footprintBytes);
    std::vector<peers::FloatBuffer> a, b, c;
    for (int i = 0; i < sets; i++) {
      a.push_back(peers::alignedFloats(aElems));  // A: [M, K] row-major
      b.push_back(peers::alignedFloats(bElems));  // B: W [N, K] row-major when transB, else [K, N] row-major
      c.push_back(peers::alignedFloats(cElems));  // C: [M, N] row-major
      peers::fillF32(a[i].get(), aElems, 2 * i + 1);
      peers::fillF32(b[i].get(), bElems, 2 * i + 2);
    }
    float one = 1.0f, zero = 0.0f;
    // op(B) = W^T: hand BLIS the [N, K] matrix (row stride K) with BLIS_TRANSPOSE.
    inc_t rsB = s.transB ? s.k : s.n;
    trans_t transB = s.transB ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    auto call = [&](int i) {
      bli_sgemm(BLIS_NO_TRANSPOSE, transB, s.m, s.n, s.k, &one, a[i].get(), s.k, 1, b[i].get(), rsB, 1, &zero,
                c[i].get(), s.n, 1);
    };
    call(0);
    double err = peers::sampledError(
        s, [&](int64_t i, int64_t k) { return a[0][i * s.k + k]; },
        [&](int64_t k, int64_t j) { return s.transB ? b[0][j * s.k + k] : b[0][k * s.n + j]; },
        [&](int64_t i, int64_t j) { return c[0][i * s.n + j]; });
    if (!(err <= peers::errorLimit(s))) {
      peers::emitSkip(s, "error", peers::errorText(err));
      continue;
    }
    peers::Timing t = peers::timeCalls(sets, args.timeMs, call);
    peers::emitResult(s, t.medianMs, t.runs, sets, "bli_sgemm " + used);
  }
  return 0;
}
