// oneDNN peer: times the dnnl matmul primitive the way a serving stack uses it: one primitive per
// shape, weights declared with format_tag::any and reordered once into the primitive's own layout
// outside the timed loop; src and dst plain row-major. f32, and bf16 inputs with a bf16 or f32 output
// (the shape token's outDtype; accumulation is f32 inside oneDNN either way).
// Threads: OMP_NUM_THREADS from the environment (Debian's oneDNN 2.6 uses the OpenMP runtime).
#include <dnnl.hpp>
#include <omp.h>

#include <string>
#include <unordered_map>
#include <utility>

#include "runner_common.h"

namespace {

using dnnl::memory;

std::string isaName(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::all: return "all";
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "isa " + std::to_string(int(isa));
  }
}

// The weights layout oneDNN chose, e.g. "BA16a64b2a" style: outer dims by stride, then inner blocks
// (dims a = K, b = N of the [K, N] weights).
std::string layoutName(const memory::desc& md) {
  const dnnl_memory_desc_t& d = md.data;
  if (d.format_kind != dnnl_blocked) return "non-blocked";
  const auto& blk = d.format_desc.blocking;
  bool blocked = blk.inner_nblks > 0;
  int outer[2] = {0, 1};
  if (blk.strides[1] > blk.strides[0]) std::swap(outer[0], outer[1]);
  std::string s;
  for (int i : outer) s += char((blocked ? 'A' : 'a') + i);
  for (int i = 0; i < blk.inner_nblks; i++) s += std::to_string(blk.inner_blks[i]) + char('a' + blk.inner_idxs[i]);
  return s;
}

memory::data_type dataType(const std::string& name) {
  return name == "bf16" ? memory::data_type::bf16 : memory::data_type::f32;
}

}  // namespace

int main(int argc, char** argv) {
  peers::RunnerArgs args = peers::parseArgs(argc, argv);
  const dnnl_version_t* v = dnnl_version();
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  std::string detail = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                       std::to_string(v->patch) + " isa " + isaName(dnnl::get_effective_cpu_isa()) + ", " +
                       std::to_string(omp_get_max_threads()) + " threads";
  peers::emitInfo("onednn", detail);
  if (args.infoOnly) return 0;

  for (const auto& s : args.shapes) {
    try {
      using tag = memory::format_tag;
      memory::data_type inType = dataType(s.dtype), outType = dataType(s.outDtype);
      size_t inSize = s.dtype == "bf16" ? 2 : 4, outSize = s.outDtype == "bf16" ? 2 : 4;
      // Logical weights are [K, N]; W [N, K] row-major is that matrix with tag ba.
      memory::desc srcMd({s.m, s.k}, inType, tag::ab);                          // A: [M, K] row-major
      memory::desc userWeightsMd({s.k, s.n}, inType, s.transB ? tag::ba : tag::ab);
      memory::desc anyWeightsMd({s.k, s.n}, inType, tag::any);
      memory::desc dstMd({s.m, s.n}, outType, tag::ab);                         // C: [M, N] row-major
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(srcMd, anyWeightsMd, dstMd), engine);
      dnnl::matmul matmul(pd);

      size_t aElems = size_t(s.m * s.k), bElems = size_t(s.k * s.n), cElems = size_t(s.m * s.n);
      int sets = peers::rotatingSets(aElems * inSize + pd.weights_desc().get_size() + cElems * outSize,
                                     args.footprintBytes);
      std::vector<memory> src, weights, dst;
      memory checkWeights;  // set 0's weights as the user holds them, for the result check
      for (int i = 0; i < sets; i++) {
        memory a(srcMd, engine), userWeights(userWeightsMd, engine);
        if (s.dtype == "bf16") {
          peers::fillBf16(static_cast<uint16_t*>(a.get_data_handle()), aElems, 2 * i + 1);
          peers::fillBf16(static_cast<uint16_t*>(userWeights.get_data_handle()), bElems, 2 * i + 2);
        } else {
          peers::fillF32(static_cast<float*>(a.get_data_handle()), aElems, 2 * i + 1);
          peers::fillF32(static_cast<float*>(userWeights.get_data_handle()), bElems, 2 * i + 2);
        }
        memory packed(pd.weights_desc(), engine);
        dnnl::reorder(userWeights, packed).execute(stream, userWeights, packed);
        stream.wait();
        if (i == 0) checkWeights = userWeights;
        src.push_back(a);
        weights.push_back(packed);
        dst.emplace_back(dstMd, engine);
      }
      std::vector<std::unordered_map<int, memory>> callArgs(sets);
      for (int i = 0; i < sets; i++)
        callArgs[i] = {{DNNL_ARG_SRC, src[i]}, {DNNL_ARG_WEIGHTS, weights[i]}, {DNNL_ARG_DST, dst[i]}};
      auto call = [&](int i) {
        matmul.execute(stream, callArgs[i]);
        stream.wait();
      };
      call(0);
      // Plain row-major A [M, K], user weights (W [N, K] or B [K, N]) and C [M, N], f32 or bf16.
      auto element = [](const memory& mem, bool bf16, int64_t index) -> double {
        const void* p = mem.get_data_handle();
        return bf16 ? gemmkit::bf16ToF32(static_cast<const uint16_t*>(p)[index]) : static_cast<const float*>(p)[index];
      };
      bool inBf16 = s.dtype == "bf16", outBf16 = s.outDtype == "bf16";
      double err = peers::sampledError(
          s, [&](int64_t i, int64_t k) { return element(src[0], inBf16, i * s.k + k); },
          [&](int64_t k, int64_t j) { return element(checkWeights, inBf16, s.transB ? j * s.k + k : k * s.n + j); },
          [&](int64_t i, int64_t j) { return element(dst[0], outBf16, i * s.n + j); });
      if (!(err <= peers::errorLimit(s))) {
        peers::emitSkip(s, "error", peers::errorText(err));
        continue;
      }
      peers::Timing t = peers::timeCalls(sets, args.timeMs, call);
      std::string impl = std::string(pd.impl_info_str()) + ", weights " + layoutName(pd.weights_desc()) + ", out " +
                         s.outDtype;
      peers::emitResult(s, t.medianMs, t.runs, sets, impl);
    } catch (const dnnl::error& e) {
      peers::emitSkip(s, "error", std::string("oneDNN: ") + e.what());
    }
  }
  return 0;
}
