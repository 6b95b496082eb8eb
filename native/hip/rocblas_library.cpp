// rocBLAS as a source of tuner candidates (built only when CMake finds rocblas). Its solution list for
// the problem (rocblas_gemm_ex_get_solutions / the strided-batched variant) gives the candidates,
// named by the library version (which fixes what an index means) and the solution index:
//   rocblas.v<version with '.' and '-' as '_'>.sol<index>   (negative indices written as soln<|index|>)
// rocBLAS has no bias or activation epilogue, so it is offered only for plain alpha/beta GEMMs with A
// and B of one dtype. Column-major: its A is our B (vendor_library.h).
#include <rocblas/rocblas.h>

#include <cstdio>
#include <cstdlib>

#include "../gpu/vendor_library.h"
#include "../gpu/vendor_library_cache.h"
#include "hip_libraries.h"

namespace gemmkit {

namespace {

rocblas_datatype rocType(DType t) {
  return t == DType::F32 ? rocblas_datatype_f32_r : t == DType::F16 ? rocblas_datatype_f16_r : rocblas_datatype_bf16_r;
}

Status rocError(const std::string& what, rocblas_status s) {
  return Status(StatusCode::Internal, "rocBLAS " + what + " failed: " + rocblas_status_to_string(s));
}

class RocblasLibrary : public VendorLibrary {
 public:
  const char* prefix() const override { return "rocblas"; }

  std::string version() const override {
    size_t size = 0;
    if (rocblas_get_version_string_size(&size) != rocblas_status_success || size == 0) return "unknown";
    std::string v(size, '\0');
    rocblas_get_version_string(&v[0], size);
    v.resize(v.find('\0') == std::string::npos ? v.size() : v.find('\0'));
    return v;
  }

  std::vector<std::string> candidates(const Problem& p, const GpuDevice& d) const override {
    std::vector<std::string> out;
    if (!takes(p).isOk() || p.m == 0 || p.n == 0 || p.k == 0 || p.batch == 0) return out;
    rocblas_handle handle;
    if (!handleFor(d.index, &handle).isOk()) return out;
    // Listing reads no matrix, but rocBLAS checks the pointers: a small device buffer stands in for all.
    void* standIn;
    if (!handles_.workspace(d.index, 256, "allocating rocBLAS's stand-in buffer", &standIn).isOk()) return out;
    rocblas_int count = 0;
    if (listSolutions(handle, p, standIn, nullptr, &count) != rocblas_status_success || count <= 0) return out;
    std::vector<rocblas_int> ids(static_cast<size_t>(count));  // ids(size_t(count)) would declare a function
    if (listSolutions(handle, p, standIn, ids.data(), &count) != rocblas_status_success) return out;
    for (rocblas_int i = 0; i < count; i++) out.push_back(nameOf(ids[size_t(i)]));
    return out;
  }

  Status supports(const Problem& p, const std::string& name, const GpuDevice& d) const override {
    Status s = takes(p);
    if (!s.isOk()) return s;
    int index;
    return parseName(name, &index);
  }

  Status run(const Problem& p, const std::string& name, const Buffers& buf, const GpuDevice& d, void* stream) const override {
    int index;
    Status s = parseName(name, &index);
    if (!s.isOk()) return s;
    rocblas_handle handle;
    s = handleFor(d.index, &handle);
    if (!s.isOk()) return s;
    rocblas_set_stream(handle, static_cast<hipStream_t>(stream));
    const ColumnMajorGemm g = columnMajorGemm(p);
    const float alpha = p.alpha, beta = p.beta;
    const rocblas_datatype in = rocType(p.dtypeA), out = rocType(p.dtypeC);
    const rocblas_operation opA = g.transFirst ? rocblas_operation_transpose : rocblas_operation_none;
    const rocblas_operation opB = g.transSecond ? rocblas_operation_transpose : rocblas_operation_none;
    rocblas_status e;
    if (p.batch == 1) {
      e = rocblas_gemm_ex(handle, opA, opB, rocblas_int(g.m), rocblas_int(g.n), rocblas_int(g.k), &alpha, buf.b, in, rocblas_int(p.ldb),
                          buf.a, in, rocblas_int(p.lda), &beta, buf.c, out, rocblas_int(p.ldc), buf.c, out, rocblas_int(p.ldc),
                          rocblas_datatype_f32_r, rocblas_gemm_algo_solution_index, index, rocblas_gemm_flags_none);
    } else {
      e = rocblas_gemm_strided_batched_ex(handle, opA, opB, rocblas_int(g.m), rocblas_int(g.n), rocblas_int(g.k), &alpha, buf.b, in,
                                          rocblas_int(p.ldb), p.strideB, buf.a, in, rocblas_int(p.lda), p.strideA, &beta, buf.c, out,
                                          rocblas_int(p.ldc), p.strideC, buf.c, out, rocblas_int(p.ldc), p.strideC,
                                          rocblas_int(p.batch), rocblas_datatype_f32_r, rocblas_gemm_algo_solution_index, index,
                                          rocblas_gemm_flags_none);
    }
    if (e != rocblas_status_success) return rocError("running " + name + " on " + p.describe(), e);
    return Status::ok();
  }

 private:
  static Status takes(const Problem& p) {
    if (p.dtypeA != p.dtypeB) return unsupported("rocBLAS candidates need A and B of one dtype; the problem is " + p.describe());
    if (p.hasBias || p.activation != Activation::None) return unsupported("rocBLAS has no bias or activation epilogue");
    if (p.dtypeC != DType::F32 && p.dtypeC != p.dtypeA) {
      return unsupported("rocBLAS candidates write C in f32 or the inputs' dtype; the problem is " + p.describe());
    }
    const int64_t limit = 2147483647;
    if (p.m > limit || p.n > limit || p.k > limit || p.batch > limit || p.lda > limit || p.ldb > limit || p.ldc > limit) {
      return unsupported("problem too large for rocBLAS's 32-bit sizes");
    }
    return Status::ok();
  }

  // Solution indices for the problem, with `stand` as every matrix pointer.
  static rocblas_status listSolutions(rocblas_handle handle, const Problem& p, void* stand, rocblas_int* ids, rocblas_int* count) {
    const ColumnMajorGemm g = columnMajorGemm(p);
    const float alpha = p.alpha, beta = p.beta;
    const rocblas_datatype in = rocType(p.dtypeA), out = rocType(p.dtypeC);
    const rocblas_operation opA = g.transFirst ? rocblas_operation_transpose : rocblas_operation_none;
    const rocblas_operation opB = g.transSecond ? rocblas_operation_transpose : rocblas_operation_none;
    if (p.batch == 1) {
      return rocblas_gemm_ex_get_solutions(handle, opA, opB, rocblas_int(g.m), rocblas_int(g.n), rocblas_int(g.k), &alpha, stand, in,
                                           rocblas_int(p.ldb), stand, in, rocblas_int(p.lda), &beta, stand, out, rocblas_int(p.ldc),
                                           stand, out, rocblas_int(p.ldc), rocblas_datatype_f32_r, rocblas_gemm_algo_solution_index,
                                           rocblas_gemm_flags_none, ids, count);
    }
    return rocblas_gemm_strided_batched_ex_get_solutions(
        handle, opA, opB, rocblas_int(g.m), rocblas_int(g.n), rocblas_int(g.k), &alpha, stand, in, rocblas_int(p.ldb), p.strideB,
        stand, in, rocblas_int(p.lda), p.strideA, &beta, stand, out, rocblas_int(p.ldc), p.strideC, stand, out,
        rocblas_int(p.ldc), p.strideC, rocblas_int(p.batch), rocblas_datatype_f32_r, rocblas_gemm_algo_solution_index,
        rocblas_gemm_flags_none, ids, count);
  }

  std::string nameOf(int index) const {
    return "rocblas." + versionField() + (index < 0 ? ".soln" + std::to_string(-int64_t(index)) : ".sol" + std::to_string(index));
  }

  Status parseName(const std::string& name, int* index) const {
    const std::string head = "rocblas." + versionField() + ".sol";
    const std::string form = "(rocblas.v<version>.sol<index>)";
    if (name.compare(0, 8, "rocblas.") != 0) return outOfRange("'" + name + "' is not a rocBLAS solution name " + form);
    if (name.compare(0, head.size(), head) != 0) {
      return unsupported("'" + name + "' was recorded with another rocBLAS version than this process's " + versionField() +
                         ", whose solution indices differ: tune again");
    }
    const char* digits = name.c_str() + head.size();
    const bool negative = *digits == 'n';
    if (negative) digits++;
    char* end = nullptr;
    const long v = std::strtol(digits, &end, 10);
    if (*digits < '0' || *digits > '9' || *end != 0 || v > 2147483647) return outOfRange("'" + name + "' is not a rocBLAS solution name " + form);
    *index = negative ? -int(v) : int(v);
    return Status::ok();
  }

  Status handleFor(int device, rocblas_handle* out) const {
    return handles_.handle(
        device,
        [](rocblas_handle* h) {
          rocblas_status s = rocblas_create_handle(h);
          return s == rocblas_status_success ? Status::ok() : rocError("creating a handle", s);
        },
        out);
  }

  // One handle per device, and as the device's workspace the stand-in buffer of listSolutions.
  mutable LibraryHandles<rocblas_handle> handles_;
};

}  // namespace

std::unique_ptr<VendorLibrary> makeRocblasLibrary() { return std::unique_ptr<VendorLibrary>(new RocblasLibrary()); }

}  // namespace gemmkit
