// cuBLASLt as a source of tuner candidates (built only when CMake finds CUDA::cublasLt). For a problem
// the heuristic is asked for many algorithms; each becomes a stable name that rebuilds exactly that
// algorithm later: the library version and every algorithm-config attribute,
//   cublaslt.v<major>_<minor>_<patch>.algo<id>.tile<t>.stages<s>.splitk<k>.red<r>.swz<w>.cust<c>.inner<i>.cluster<g>
// Problems cuBLASLt computes differently are not offered: mixed A/B dtypes, gelu (its GELU is the tanh
// approximation, gemmkit's is erf), silu, and a bias whose dtype differs from C's.
// cuBLASLt is column-major: its A is our B and its B our A (columnMajorGemm in vendor_library.h).
#include <cublasLt.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "../gpu/vendor_library.h"
#include "../gpu/vendor_library_cache.h"
#include "cuda_libraries.h"

namespace gemmkit {

namespace {

constexpr int kRequestedAlgorithms = 64;
constexpr int64_t kWorkspaceBytes = int64_t(32) << 20;

cudaDataType_t cudaType(DType t) {
  return t == DType::F32 ? CUDA_R_32F : t == DType::F16 ? CUDA_R_16F : CUDA_R_16BF;
}

// The algorithm-config attributes a name records, in name order.
struct AlgorithmFields {
  int32_t algo = 0;
  uint32_t tile = 0, stages = 0, splitK = 0, reduction = 0, swizzle = 0, custom = 0;
  uint16_t inner = 0, cluster = 0;
};

// The operation and layouts of one problem (one batch item stride), freed on destruction.
struct Descriptors {
  Descriptors() = default;
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // cuBLASLt's A (our B), B (our A), C = D
  ~Descriptors() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

Status ltError(const char* what, cublasStatus_t s) {
  return Status(StatusCode::Internal, std::string("cuBLASLt ") + what + " failed: status " + std::to_string(int(s)));
}

class CublasLtLibrary : public VendorLibrary {
 public:
  const char* prefix() const override { return "cublaslt"; }

  std::string version() const override {
    const size_t v = cublasLtGetVersion();  // major * 10000 + minor * 100 + patch
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  }

  std::vector<std::string> candidates(const Problem& p, const GpuDevice& d) const override {
    std::vector<std::string> out;
    if (!blasLtTakes(p, "cuBLASLt").isOk() || p.m == 0 || p.n == 0 || p.k == 0) return out;
    cublasLtHandle_t handle;
    if (!handleFor(d.index, &handle).isOk()) return out;
    Descriptors desc;
    if (!describe(p, &desc).isOk()) return out;
    cublasLtMatmulPreference_t pref;
    if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return out;
    uint64_t workspace = uint64_t(kWorkspaceBytes);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace));
    cublasLtMatmulHeuristicResult_t results[kRequestedAlgorithms];
    int returned = 0;
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(handle, desc.op, desc.a, desc.b, desc.c, desc.c, pref, kRequestedAlgorithms,
                                                      results, &returned);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS) return out;
    for (int i = 0; i < returned; i++) {
      if (results[i].state != CUBLAS_STATUS_SUCCESS || results[i].workspaceSize > size_t(kWorkspaceBytes)) continue;
      const std::string n = nameOf(results[i].algo);
      bool seen = false;
      for (const std::string& o : out) seen = seen || o == n;
      if (!seen) out.push_back(n);
    }
    return out;
  }

  Status supports(const Problem& p, const std::string& name, const GpuDevice& d) const override {
    Status s = blasLtTakes(p, "cuBLASLt");
    if (!s.isOk()) return s;
    AlgorithmFields f;
    s = parseName(name, &f);
    if (!s.isOk()) return s;
    if (p.m == 0 || p.n == 0 || p.k == 0 || p.batch == 0) return Status::ok();
    cublasLtHandle_t handle;
    s = handleFor(d.index, &handle);
    if (!s.isOk()) return s;
    // The plan run() then finds: checking a name does not rebuild its algorithm on every call.
    std::shared_ptr<Prepared> prep;
    return prepared(handle, p, name, &prep);
  }

  Status run(const Problem& p, const std::string& name, const Buffers& buf, const GpuDevice& d, void* stream) const override {
    if (p.k == 0) return unsupported(name + ": cuBLASLt is not used for K = 0");
    cublasLtHandle_t handle;
    Status s = handleFor(d.index, &handle);
    if (!s.isOk()) return s;
    void* workspace;
    s = handles_.workspace(d.index, kWorkspaceBytes, "allocating cuBLASLt's workspace", &workspace);
    if (!s.isOk()) return s;
    std::shared_ptr<Prepared> prep;
    s = prepared(handle, p, name, &prep);
    if (!s.isOk()) return s;
    if (p.hasBias) {
      const void* bias = buf.bias;
      cublasStatus_t e = cublasLtMatmulDescSetAttribute(prep->desc.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
      if (e != CUBLAS_STATUS_SUCCESS) return ltError("setting the bias", e);
    }
    const float alpha = p.alpha, beta = p.beta;
    const Descriptors& desc = prep->desc;
    cublasStatus_t e = cublasLtMatmul(handle, desc.op, &alpha, buf.b, desc.a, buf.a, desc.b, &beta, buf.c, desc.c, buf.c, desc.c,
                                      &prep->algo, workspace, size_t(kWorkspaceBytes), static_cast<cudaStream_t>(stream));
    if (e != CUBLAS_STATUS_SUCCESS) return ltError(("running " + name).c_str(), e);
    return Status::ok();
  }

 private:
  static Status describe(const Problem& p, Descriptors* d) {
    const cudaDataType_t in = cudaType(p.dtypeA), out = cudaType(p.dtypeC);
    const ColumnMajorGemm g = columnMajorGemm(p);
    cublasStatus_t s = cublasLtMatmulDescCreate(&d->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (s != CUBLAS_STATUS_SUCCESS) return ltError("creating the operation", s);
    const cublasOperation_t opA = g.transFirst ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opB = g.transSecond ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA));
    cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB));
    cublasLtEpilogue_t epilogue = p.activation == Activation::Relu ? (p.hasBias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU)
                                                                    : (p.hasBias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
    s = cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue));
    if (s != CUBLAS_STATUS_SUCCESS) return ltError("setting the epilogue", s);
    s = cublasLtMatrixLayoutCreate(&d->a, in, uint64_t(g.firstRows), uint64_t(g.firstCols), p.ldb);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&d->b, in, uint64_t(g.secondRows), uint64_t(g.secondCols), p.lda);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&d->c, out, uint64_t(g.m), uint64_t(g.n), p.ldc);
    if (s != CUBLAS_STATUS_SUCCESS) return ltError("creating the layouts", s);
    if (p.batch > 1) {
      const int32_t batch = int32_t(p.batch);
      const int64_t strides[3] = {p.strideB, p.strideA, p.strideC};
      cublasLtMatrixLayout_t layouts[3] = {d->a, d->b, d->c};
      for (int i = 0; i < 3; i++) {
        s = cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch));
        if (s == CUBLAS_STATUS_SUCCESS) {
          s = cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i], sizeof(strides[i]));
        }
        if (s != CUBLAS_STATUS_SUCCESS) return ltError("setting the batch", s);
      }
    }
    return Status::ok();
  }

  template <class T>
  static T configValue(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attribute) {
    T value = 0;
    size_t written = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attribute, &value, sizeof(value), &written) != CUBLAS_STATUS_SUCCESS) return 0;
    return value;
  }

  std::string nameOf(const cublasLtMatmulAlgo_t& algo) const {
    AlgorithmFields f;
    f.algo = configValue<int32_t>(algo, CUBLASLT_ALGO_CONFIG_ID);
    f.tile = configValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_TILE_ID);
    f.stages = configValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID);
    f.splitK = configValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM);
    f.reduction = configValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME);
    f.swizzle = configValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING);
    f.custom = configValue<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION);
#if CUBLAS_VER_MAJOR >= 12
    f.inner = configValue<uint16_t>(algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID);
    f.cluster = configValue<uint16_t>(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID);
#endif
    char buf[256];
    std::snprintf(buf, sizeof(buf), "cublaslt.%s.algo%d.tile%u.stages%u.splitk%u.red%u.swz%u.cust%u.inner%u.cluster%u",
                  versionField().c_str(), int(f.algo), unsigned(f.tile), unsigned(f.stages), unsigned(f.splitK),
                  unsigned(f.reduction), unsigned(f.swizzle), unsigned(f.custom), unsigned(f.inner), unsigned(f.cluster));
    return buf;
  }

  Status parseName(const std::string& name, AlgorithmFields* f) const {
    unsigned tile, stages, splitK, reduction, swizzle, custom, inner, cluster;
    int algo;
    char version[32];
    int consumed = 0;
    const int n = std::sscanf(name.c_str(), "cublaslt.%31[^.].algo%d.tile%u.stages%u.splitk%u.red%u.swz%u.cust%u.inner%u.cluster%u%n",
                              version, &algo, &tile, &stages, &splitK, &reduction, &swizzle, &custom, &inner, &cluster, &consumed);
    if (n != 10 || size_t(consumed) != name.size()) {
      return outOfRange("'" + name + "' is not a cuBLASLt algorithm name (cublaslt.v<version>.algo<id>.tile<t>.stages<s>."
                        "splitk<k>.red<r>.swz<w>.cust<c>.inner<i>.cluster<g>)");
    }
    if (versionField() != version) {
      return unsupported("'" + name + "' was recorded with cuBLASLt " + version + "; this process has " + versionField() +
                         ", whose algorithms may differ: tune again");
    }
    f->algo = algo;
    f->tile = tile;
    f->stages = stages;
    f->splitK = splitK;
    f->reduction = reduction;
    f->swizzle = swizzle;
    f->custom = custom;
    f->inner = uint16_t(inner);
    f->cluster = uint16_t(cluster);
    return Status::ok();
  }

  // The algorithm a name describes, checked against this problem.
  static Status rebuild(cublasLtHandle_t handle, const Problem& p, const Descriptors& desc, const AlgorithmFields& f,
                        const std::string& name, cublasLtMatmulAlgo_t* algo) {
    const cudaDataType_t in = cudaType(p.dtypeA), out = cudaType(p.dtypeC);
    cublasStatus_t s = cublasLtMatmulAlgoInit(handle, CUBLAS_COMPUTE_32F, CUDA_R_32F, in, in, out, out, f.algo, algo);
    if (s != CUBLAS_STATUS_SUCCESS) return unsupported(name + ": cuBLASLt has no algorithm " + std::to_string(f.algo) + " for " + p.describe());
    cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &f.tile, sizeof(f.tile));
    cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &f.stages, sizeof(f.stages));
    cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &f.splitK, sizeof(f.splitK));
    cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &f.reduction, sizeof(f.reduction));
    cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &f.swizzle, sizeof(f.swizzle));
    cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &f.custom, sizeof(f.custom));
#if CUBLAS_VER_MAJOR >= 12
    cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, &f.inner, sizeof(f.inner));
    cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &f.cluster, sizeof(f.cluster));
#endif
    cublasLtMatmulHeuristicResult_t check;
    std::memset(&check, 0, sizeof(check));
    s = cublasLtMatmulAlgoCheck(handle, desc.op, desc.a, desc.b, desc.c, desc.c, algo, &check);
    if (s != CUBLAS_STATUS_SUCCESS || check.state != CUBLAS_STATUS_SUCCESS) {
      return unsupported(name + " does not run " + p.describe() + " (cublasLtMatmulAlgoCheck status " + std::to_string(int(s)) + ")");
    }
    if (check.workspaceSize > size_t(kWorkspaceBytes)) return unsupported(name + " needs more than 32 MiB of workspace");
    return Status::ok();
  }

  // One handle per device, made on first use (callers hold the device's lane).
  Status handleFor(int device, cublasLtHandle_t* out) const {
    return handles_.handle(
        device,
        [](cublasLtHandle_t* h) {
          cublasStatus_t s = cublasLtCreate(h);
          return s == CUBLAS_STATUS_SUCCESS ? Status::ok() : ltError("creating a handle", s);
        },
        out);
  }

  // A problem's descriptors and rebuilt algorithm.
  struct Prepared {
    Descriptors desc;
    cublasLtMatmulAlgo_t algo;
  };

  Status prepared(cublasLtHandle_t handle, const Problem& p, const std::string& name, std::shared_ptr<Prepared>* out) const {
    return plans_.get(
        p, name,
        [&](Prepared* prep) {
          AlgorithmFields f;
          Status s = parseName(name, &f);
          if (s.isOk()) s = describe(p, &prep->desc);
          if (s.isOk()) s = rebuild(handle, p, prep->desc, f, name, &prep->algo);
          return s;
        },
        out);
  }

  mutable LibraryHandles<cublasLtHandle_t> handles_;
  mutable PreparedPlans<Prepared> plans_;
};

}  // namespace

std::unique_ptr<VendorLibrary> makeCublasLtLibrary() { return std::unique_ptr<VendorLibrary>(new CublasLtLibrary()); }

}  // namespace gemmkit
