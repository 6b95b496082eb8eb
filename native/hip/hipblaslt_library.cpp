// hipBLASLt as a source of tuner candidates (built only when CMake finds hipblaslt; written against
// the ROCm 6 API: hipDataType, HIPBLAS_COMPUTE_32F, hipblaslt_ext). Every algorithm the library has
// for the problem's types and transposes (hipblaslt_ext::getAllAlgos) that supports the problem is a
// candidate, named by the library version and its solution index, which together identify one
// compiled kernel:
//   hipblaslt.v<major>_<minor>_<patch>.sol<index>
// Problems hipBLASLt computes differently are not offered: mixed A/B dtypes, gelu (tanh form), silu,
// a bias whose dtype differs from C's. Column-major: its A is our B (vendor_library.h).
#include <hipblaslt/hipblaslt-ext.hpp>
#include <hipblaslt/hipblaslt.h>

#include <cstdio>
#include <memory>

#include "../gpu/vendor_library.h"
#include "../gpu/vendor_library_cache.h"
#include "hip_libraries.h"

namespace gemmkit {

namespace {

constexpr int64_t kWorkspaceBytes = int64_t(64) << 20;

hipDataType hipType(DType t) { return t == DType::F32 ? HIP_R_32F : t == DType::F16 ? HIP_R_16F : HIP_R_16BF; }

struct Descriptors {
  Descriptors() = default;
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;
  hipblasLtMatmulDesc_t op = nullptr;
  hipblasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  ~Descriptors() {
    if (c) hipblasLtMatrixLayoutDestroy(c);
    if (b) hipblasLtMatrixLayoutDestroy(b);
    if (a) hipblasLtMatrixLayoutDestroy(a);
    if (op) hipblasLtMatmulDescDestroy(op);
  }
};

Status ltError(const std::string& what, hipblasStatus_t s) {
  return Status(StatusCode::Internal, "hipBLASLt " + what + " failed: status " + std::to_string(int(s)));
}

class HipblasLtLibrary : public VendorLibrary {
 public:
  const char* prefix() const override { return "hipblaslt"; }

  std::string version() const override {
    int v = 0;
    hipblasLtHandle_t h;
    if (handleFor(currentDevice(), &h).isOk()) hipblasLtGetVersion(h, &v);  // major * 100000 + minor * 100 + patch
    return std::to_string(v / 100000) + "." + std::to_string(v / 100 % 1000) + "." + std::to_string(v % 100);
  }

  std::vector<std::string> candidates(const Problem& p, const GpuDevice& d) const override {
    std::vector<std::string> out;
    if (!blasLtTakes(p, "hipBLASLt").isOk() || p.m == 0 || p.n == 0 || p.k == 0 || p.batch == 0) return out;
    hipblasLtHandle_t handle;
    if (!handleFor(d.index, &handle).isOk()) return out;
    Descriptors desc;
    if (!describe(p, &desc).isOk()) return out;
    const ColumnMajorGemm g = columnMajorGemm(p);
    std::vector<hipblasLtMatmulHeuristicResult_t> all;
    hipblasStatus_t s = hipblaslt_ext::getAllAlgos(handle, hipblaslt_ext::GemmType::HIPBLASLT_GEMM,
                                                   g.transFirst ? HIPBLAS_OP_T : HIPBLAS_OP_N, g.transSecond ? HIPBLAS_OP_T : HIPBLAS_OP_N,
                                                   hipType(p.dtypeA), hipType(p.dtypeB), hipType(p.dtypeC), hipType(p.dtypeC),
                                                   HIPBLAS_COMPUTE_32F, all);
    if (s != HIPBLAS_STATUS_SUCCESS) return out;
    const float alpha = p.alpha, beta = p.beta;
    for (hipblasLtMatmulHeuristicResult_t& r : all) {
      size_t workspace = 0;
      if (hipblaslt_ext::matmulIsAlgoSupported(handle, desc.op, &alpha, desc.a, desc.b, &beta, desc.c, desc.c, r.algo, workspace) !=
              HIPBLAS_STATUS_SUCCESS ||
          workspace > size_t(kWorkspaceBytes)) {
        continue;
      }
      out.push_back(nameOf(hipblaslt_ext::getIndexFromAlgo(r.algo)));
    }
    return out;
  }

  Status supports(const Problem& p, const std::string& name, const GpuDevice& d) const override {
    Status s = blasLtTakes(p, "hipBLASLt");
    if (!s.isOk()) return s;
    int index;
    s = parseName(name, &index);
    if (!s.isOk() || p.m == 0 || p.n == 0 || p.k == 0 || p.batch == 0) return s;
    hipblasLtHandle_t handle;
    s = handleFor(d.index, &handle);
    if (!s.isOk()) return s;
    // The plan run() then finds: checking a name does not look its solution up on every call.
    std::shared_ptr<Prepared> prep;
    return prepared(handle, p, name, &prep);
  }

  Status run(const Problem& p, const std::string& name, const Buffers& buf, const GpuDevice& d, void* stream) const override {
    if (p.k == 0) return unsupported(name + ": hipBLASLt is not used for K = 0");
    hipblasLtHandle_t handle;
    Status s = handleFor(d.index, &handle);
    if (!s.isOk()) return s;
    void* workspace;
    s = handles_.workspace(d.index, kWorkspaceBytes, "allocating hipBLASLt's workspace", &workspace);
    if (!s.isOk()) return s;
    std::shared_ptr<Prepared> prep;
    s = prepared(handle, p, name, &prep);
    if (!s.isOk()) return s;
    if (p.hasBias) {
      const void* bias = buf.bias;
      hipblasStatus_t e = hipblasLtMatmulDescSetAttribute(prep->desc.op, HIPBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
      if (e != HIPBLAS_STATUS_SUCCESS) return ltError("setting the bias", e);
    }
    const float alpha = p.alpha, beta = p.beta;
    const Descriptors& desc = prep->desc;
    hipblasStatus_t e = hipblasLtMatmul(handle, desc.op, &alpha, buf.b, desc.a, buf.a, desc.b, &beta, buf.c, desc.c, buf.c, desc.c,
                                        &prep->algo, workspace, size_t(kWorkspaceBytes), static_cast<hipStream_t>(stream));
    if (e != HIPBLAS_STATUS_SUCCESS) return ltError("running " + name, e);
    return Status::ok();
  }

 private:
  static int currentDevice() {
    int d = 0;
    (void)hipGetDevice(&d);
    return d;
  }

  static Status describe(const Problem& p, Descriptors* d) {
    const ColumnMajorGemm g = columnMajorGemm(p);
    const hipDataType in = hipType(p.dtypeA), out = hipType(p.dtypeC);
    hipblasStatus_t s = hipblasLtMatmulDescCreate(&d->op, HIPBLAS_COMPUTE_32F, HIP_R_32F);
    if (s != HIPBLAS_STATUS_SUCCESS) return ltError("creating the operation", s);
    const hipblasOperation_t opA = g.transFirst ? HIPBLAS_OP_T : HIPBLAS_OP_N;
    const hipblasOperation_t opB = g.transSecond ? HIPBLAS_OP_T : HIPBLAS_OP_N;
    hipblasLtMatmulDescSetAttribute(d->op, HIPBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA));
    hipblasLtMatmulDescSetAttribute(d->op, HIPBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB));
    hipblasLtEpilogue_t epilogue = p.activation == Activation::Relu ? (p.hasBias ? HIPBLASLT_EPILOGUE_RELU_BIAS : HIPBLASLT_EPILOGUE_RELU)
                                                                     : (p.hasBias ? HIPBLASLT_EPILOGUE_BIAS : HIPBLASLT_EPILOGUE_DEFAULT);
    s = hipblasLtMatmulDescSetAttribute(d->op, HIPBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue));
    if (s == HIPBLAS_STATUS_SUCCESS && p.hasBias) {
      const hipDataType biasType = hipType(p.dtypeBias);
      s = hipblasLtMatmulDescSetAttribute(d->op, HIPBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &biasType, sizeof(biasType));
    }
    if (s != HIPBLAS_STATUS_SUCCESS) return ltError("setting the epilogue", s);
    s = hipblasLtMatrixLayoutCreate(&d->a, in, uint64_t(g.firstRows), uint64_t(g.firstCols), p.ldb);
    if (s == HIPBLAS_STATUS_SUCCESS) s = hipblasLtMatrixLayoutCreate(&d->b, in, uint64_t(g.secondRows), uint64_t(g.secondCols), p.lda);
    if (s == HIPBLAS_STATUS_SUCCESS) s = hipblasLtMatrixLayoutCreate(&d->c, out, uint64_t(g.m), uint64_t(g.n), p.ldc);
    if (s != HIPBLAS_STATUS_SUCCESS) return ltError("creating the layouts", s);
    if (p.batch > 1) {
      const int32_t batch = int32_t(p.batch);
      const int64_t strides[3] = {p.strideB, p.strideA, p.strideC};
      hipblasLtMatrixLayout_t layouts[3] = {d->a, d->b, d->c};
      for (int i = 0; i < 3; i++) {
        s = hipblasLtMatrixLayoutSetAttribute(layouts[i], HIPBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch));
        if (s == HIPBLAS_STATUS_SUCCESS) {
          s = hipblasLtMatrixLayoutSetAttribute(layouts[i], HIPBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i], sizeof(strides[i]));
        }
        if (s != HIPBLAS_STATUS_SUCCESS) return ltError("setting the batch", s);
      }
    }
    return Status::ok();
  }

  std::string nameOf(int index) const { return "hipblaslt." + versionField() + ".sol" + std::to_string(index); }

  Status parseName(const std::string& name, int* index) const {
    char version[32];
    int consumed = 0;
    if (std::sscanf(name.c_str(), "hipblaslt.%31[^.].sol%d%n", version, index, &consumed) != 2 || size_t(consumed) != name.size()) {
      return outOfRange("'" + name + "' is not a hipBLASLt algorithm name (hipblaslt.v<version>.sol<index>)");
    }
    if (versionField() != version) {
      return unsupported("'" + name + "' was recorded with hipBLASLt " + version + "; this process has " + versionField() +
                         ", whose solution indices differ: tune again");
    }
    return Status::ok();
  }

  static Status rebuild(hipblasLtHandle_t handle, const Problem& p, const Descriptors& desc, int index, const std::string& name,
                        hipblasLtMatmulAlgo_t* algo) {
    std::vector<int> indices{index};
    std::vector<hipblasLtMatmulHeuristicResult_t> found;
    if (hipblaslt_ext::getAlgosFromIndex(handle, indices, found) != HIPBLAS_STATUS_SUCCESS || found.empty()) {
      return unsupported(name + ": hipBLASLt has no solution " + std::to_string(index));
    }
    *algo = found[0].algo;
    const float alpha = p.alpha, beta = p.beta;
    size_t workspace = 0;
    if (hipblaslt_ext::matmulIsAlgoSupported(handle, desc.op, &alpha, desc.a, desc.b, &beta, desc.c, desc.c, *algo, workspace) !=
        HIPBLAS_STATUS_SUCCESS) {
      return unsupported(name + " does not run " + p.describe());
    }
    if (workspace > size_t(kWorkspaceBytes)) return unsupported(name + " needs more than 64 MiB of workspace");
    return Status::ok();
  }

  Status handleFor(int device, hipblasLtHandle_t* out) const {
    return handles_.handle(
        device,
        [](hipblasLtHandle_t* h) {
          hipblasStatus_t s = hipblasLtCreate(h);
          return s == HIPBLAS_STATUS_SUCCESS ? Status::ok() : ltError("creating a handle", s);
        },
        out);
  }

  // A problem's descriptors and algorithm.
  struct Prepared {
    Descriptors desc;
    hipblasLtMatmulAlgo_t algo;
  };

  Status prepared(hipblasLtHandle_t handle, const Problem& p, const std::string& name, std::shared_ptr<Prepared>* out) const {
    return plans_.get(
        p, name,
        [&](Prepared* prep) {
          int index;
          Status s = parseName(name, &index);
          if (s.isOk()) s = describe(p, &prep->desc);
          if (s.isOk()) s = rebuild(handle, p, prep->desc, index, name, &prep->algo);
          return s;
        },
        out);
  }

  mutable LibraryHandles<hipblasLtHandle_t> handles_;
  mutable PreparedPlans<Prepared> plans_;
};

}  // namespace

std::unique_ptr<VendorLibrary> makeHipblasLtLibrary() { return std::unique_ptr<VendorLibrary>(new HipblasLtLibrary()); }

}  // namespace gemmkit
