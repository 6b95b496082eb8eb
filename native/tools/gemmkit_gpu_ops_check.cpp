// gemmkit-gpu-ops-check: the ops beyond GEMM (core/ops.h) on a GPU (or an emulated one), without Node,
// against the float64 reference (core/reference_ops) with the comparison gemmkit-ops-check uses
// (tools/ops_check_support.h). Sizes aim at the kernels' edges: rows and cols 1, 7, 45, 77, 127 and
// around the 8-element chunks and the 2048 elements a row block walks per step; 16-byte vector paths
// (aligned rows), strided rows and operands starting off a 16-byte boundary (element paths); every
// dtype combination; outputs written in place; argmax ties, NaN and -inf across threads and warps;
// rope at even head dims; the KV store with ragged past; attention at head dims 1, 7, 45, 64, 80, 128,
// 256 (each register block and its padding), one position, positions crossing the key tiles and the
// query-row blocks, GQA ratios 1, 4 and 8, ragged past per sequence, decode steps split over blocks
// and combined, and a cache that is not 16-byte aligned; plus the rejections (indices, head dims).
//
//   gemmkit-gpu-ops-check [--device N] [--quick]
// Exit status: 0 all agree, 1 a failure, 2 no usable device (the reason is printed).
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/op_check.h"
#include "../core/reference_ops.h"
#include "../gpu/gpu_backend.h"
#include "../gpu/gpu_runtime.h"
#include "check_support.h"
#include "ops_check_support.h"

using namespace gemmkit;
using namespace gemmkit::opcheck;

namespace {

const Backend* backend = nullptr;
int device = 0;
bool quick = false;

// One operand in its own device allocation, `offset` elements past the allocation's start (an odd
// offset puts 16-bit and f32 operands off a 16-byte boundary).
struct DeviceOperand {
  std::shared_ptr<DeviceAllocation> allocation;
  int64_t byteOffset = 0;
  void* data() const { return allocation ? static_cast<char*>(allocation->data()) + byteOffset : nullptr; }
};

Status upload(const Buffer& host, int64_t offset, DeviceOperand* out) {
  if (host.elements == 0) return Status::ok();
  const int64_t size = dtypeSize(host.dtype);
  out->byteOffset = offset * size;
  Status s = DeviceAllocation::create(device, out->byteOffset + host.elements * size, &out->allocation);
  if (s.isOk()) s = copyHostToDevice(*out->allocation, out->byteOffset, host.words.data(), host.elements * size);
  return s;
}

Status download(const DeviceOperand& d, Buffer* host) {
  if (host->elements == 0) return Status::ok();
  return copyDeviceToHost(host->words.data(), *d.allocation, d.byteOffset, host->elements * dtypeSize(host->dtype));
}

// Runs `op` on device copies of `got`'s operands and brings x and out back into `got`. inPlace: out is x.
Status runOnDevice(const OpDesc& op, Operands& got, int64_t offset, bool inPlace) {
  DeviceOperand x, y, out, weight, bias, kCache, vCache;
  Status s = upload(got.x, offset, &x);
  if (s.isOk()) s = upload(got.y, offset, &y);
  if (s.isOk() && !inPlace) s = upload(got.out, offset, &out);
  if (s.isOk()) s = upload(got.weight, offset, &weight);
  if (s.isOk()) s = upload(got.bias, offset, &bias);
  if (s.isOk()) s = upload(got.kCache, offset, &kCache);
  if (s.isOk()) s = upload(got.vCache, offset, &vCache);
  if (!s.isOk()) return s;
  OpBuffers b = got.buffers();  // the host int arrays
  b.x = x.data();
  b.y = y.data();
  b.out = inPlace ? x.data() : out.data();
  b.weight = weight.data();
  b.bias = bias.data();
  b.kCache = static_cast<float*>(kCache.data());
  b.vCache = static_cast<float*>(vCache.data());
  s = backend->runOp(op, b);
  if (s.isOk()) s = download(x, &got.x);
  if (s.isOk() && !inPlace) s = download(out, &got.out);
  if (s.isOk()) s = synchronizeDevice(device);
  return s;
}

// Runs `op` on the device from `in` and compares with the reference; `offset` elements of every
// operand's allocation come before it.
void checkOnDevice(const OpDesc& op, const Operands& in, int64_t offset = 0) {
  Operands ref = in;
  std::vector<double> out64;
  const std::string label = describe(op) + (offset ? " offset " + std::to_string(offset) : "");
  Status s = referenceOp(op, ref.buffers(), &out64);
  if (!s.isOk()) {
    checks++;
    fail(label + ": the reference rejected it: " + s.message());
    return;
  }
  Operands got = in;
  s = runOnDevice(op, got, offset, false);
  if (!s.isOk()) {
    checks++;
    fail(label + ": " + s.message());
    return;
  }
  Operands original = in;
  compare(op, original, got, ref, out64, label);
}

// The layouts every row op runs in: aligned rows (16-byte vectors), padded rows, an unaligned start.
struct Layout {
  int64_t pad, offset;
};
const Layout kLayouts[] = {{0, 0}, {3, 0}, {0, 1}};

void checkRowOps(std::mt19937& rng) {
  // Chunks of 8 per thread, 2048 elements per block step: sizes on both sides of each.
  std::vector<std::vector<int64_t>> sizes = {{1, 1}, {7, 7}, {45, 45}, {3, 77}, {2, 127}, {127, 3}, {5, 300},
                                             {4, 1024}, {3, 2047}, {2, 2049}, {1, 4100}, {0, 5}, {4, 0}};
  if (quick) sizes = {{1, 1}, {7, 45}, {3, 77}, {2, 2049}, {0, 5}};
  for (const auto& sz : sizes) {
    for (const Layout& layout : kLayouts) {
      for (DType dx : kDTypes) {
        for (DType dout : kDTypes) {
          if (quick && dout != kDTypes[(int(dx) + 1) % 3]) continue;
          const DType dy = kDTypes[(int(dx) + int(dout)) % 3];
          for (OpKind kind : {OpKind::RmsNorm, OpKind::LayerNorm, OpKind::Softmax, OpKind::Swiglu, OpKind::Add, OpKind::Cast}) {
            OpDesc op = rowOp(kind, sz[0], sz[1], layout.pad, dx, dy, dout);
            op.eps = 1e-5f;
            op.dtypeWeight = kDTypes[(int(dx) + 1) % 3];
            Operands in = rowOperands(op, rng);
            checkOnDevice(op, in, layout.offset);
            if (kind == OpKind::LayerNorm) {  // without a bias
              in.bias = Buffer();
              checkOnDevice(op, in, layout.offset);
            }
          }
          for (Activation a : {Activation::None, Activation::Relu, Activation::Gelu, Activation::Silu}) {
            OpDesc op = rowOp(OpKind::Activate, sz[0], sz[1], layout.pad, dx, dx, dout);
            op.activation = a;
            checkOnDevice(op, rowOperands(op, rng, 40.0), layout.offset);  // the activations' tails too
          }
        }
        OpDesc am = rowOp(OpKind::Argmax, sz[0], sz[1], layout.pad, dx, dx, dx);
        if (sz[1] > 0) checkOnDevice(am, rowOperands(am, rng), layout.offset);
        OpDesc emb = rowOp(OpKind::Embedding, sz[0], sz[1], layout.pad, dx, dx, kDTypes[(int(dx) + 2) % 3]);
        emb.vocab = 50;
        Operands in = rowOperands(emb, rng);
        in.ids.resize(size_t(std::max<int64_t>(sz[0], 1)));
        for (int64_t r = 0; r < sz[0]; r++) in.ids[size_t(r)] = int32_t((r * 37 + 11) % 50);
        checkOnDevice(emb, in, layout.offset);
      }
    }
  }
}

// Out is x, as the residual stream and in-place norms use them.
void checkInPlace(std::mt19937& rng) {
  for (OpKind kind : {OpKind::RmsNorm, OpKind::LayerNorm, OpKind::Softmax, OpKind::Add, OpKind::Swiglu, OpKind::Activate}) {
    for (DType dx : {DType::F32, DType::BF16}) {
      OpDesc op = rowOp(kind, 9, 77, 0, dx, DType::F32, dx);
      op.ldout = op.ldx;
      op.eps = 1e-5f;
      op.activation = Activation::Gelu;
      Operands in = rowOperands(op, rng);
      Operands ref = in;
      std::vector<double> out64;
      OpBuffers rb = ref.buffers();
      rb.out = const_cast<void*>(rb.x);
      Status s = referenceOp(op, rb, &out64);
      Operands got = in;
      if (s.isOk()) s = runOnDevice(op, got, 0, true);
      checks++;
      bool ok = s.isOk();
      const double eps = dx == DType::F32 ? 0x1p-24 : 0x1p-8;
      for (int64_t i = 0; ok && i < op.rows * op.cols; i++) {
        const double want = out64[size_t(i)], have = got.x.at((i / op.cols) * op.ldx + i % op.cols);
        ok = std::fabs(have - want) <= (64 * 0x1p-24 + eps) * (std::fabs(want) + 1);
      }
      if (!ok) fail("in place " + describe(op) + (s.isOk() ? "" : ": " + s.message()));
    }
  }
}

// Ties go to the lowest index, NaN never wins, all NaN gives 0, -inf is a value: within a thread's
// chunk, across the threads of a warp and across warps (a row of 3000 spans 12 warps of 8-element chunks).
void checkArgmaxSpecials(std::mt19937& rng) {
  const float nan = NAN, inf = INFINITY;
  const std::vector<std::vector<float>> rows = {
      {1, 3, 3, 2}, {nan, 1, nan, 1}, {nan, nan, nan, nan}, {-inf, -inf, -inf, -inf}, {nan, -inf, 5, nan}, {2, 2, 2, 2}};
  for (size_t r = 0; r < rows.size(); r++) {
    for (int64_t width : {4, 37, 3000}) {
      for (DType t : kDTypes) {
        std::vector<float> row(size_t(width), -inf);
        if (width == 4) {
          row = rows[r];
        } else {
          // The pattern twice: near the start and far away (another thread or warp), so the first copy wins.
          for (size_t i = 0; i < rows[r].size(); i++) row[20 + i] = row[size_t(width) - 6 + i] = rows[r][i];
        }
        OpDesc op = rowOp(OpKind::Argmax, 1, width, 0, t, t, t);
        Operands in = rowOperands(op, rng);
        for (int64_t i = 0; i < width; i++) storeFromF32(in.x.data(), t, i, row[size_t(i)]);
        checkOnDevice(op, in);
      }
    }
  }
}

void checkRope(std::mt19937& rng) {
  for (int heads : {1, 3, 16}) {
    for (int d : {2, 6, 46, 64, 128}) {
      for (int64_t rows : {1, 7, 45}) {
        for (DType dx : kDTypes) {
          if (quick && (rows == 45 || d == 6)) continue;
          OpDesc op = rowOp(OpKind::Rope, rows, int64_t(heads) * d, heads == 3 ? 5 : 0, dx, dx, dx);
          op.heads = heads;
          op.headDim = d;
          op.ropePositions = 300;
          Operands in = rowOperands(op, rng);
          for (int64_t p = 0; p < op.ropePositions; p++) {
            for (int i = 0; i < d / 2; i++) {
              const double a = double(p) / std::pow(10000.0, 2.0 * i / d);
              storeFromF32(in.weight.data(), DType::F32, p * (d / 2) + i, float(std::cos(a)));
              storeFromF32(in.bias.data(), DType::F32, p * (d / 2) + i, float(std::sin(a)));
            }
          }
          in.positions.resize(size_t(rows));
          for (int64_t r = 0; r < rows; r++) in.positions[size_t(r)] = int32_t((r * 41 + 7) % 300);
          checkOnDevice(op, in, rows == 7 ? 1 : 0);
        }
      }
    }
  }
}

void checkKvStore(std::mt19937& rng) {
  for (DType dx : kDTypes) {
    for (int tokens : {1, 5, 40}) {
      for (int d : {45, 64, 128}) {
        OpDesc op;
        op.kind = OpKind::KvStore;
        op.batch = 3;
        op.tokens = tokens;
        op.rows = 3 * tokens;
        op.kvHeads = 2;
        op.headDim = d;
        op.cols = 2 * d;
        op.ldx = d == 64 ? 2 * d : 2 * d + 7;
        op.capacity = 60;
        op.slots = 4;
        op.dtypeX = dx;
        Operands in = rowOperands(op, rng);
        in.past = {0, 7, 60 - tokens};
        in.slotIndex = {2, 0, 3};
        checkOnDevice(op, in, d == 45 ? 1 : 0);
      }
    }
  }
}

void checkAttention(std::mt19937& rng) {
  struct Shape {
    int batch, tokens, heads, kvHeads, d;
    std::vector<int32_t> past;
  };
  std::vector<Shape> shapes = {
      {1, 1, 1, 1, 64, {0}},                // one position
      {1, 1, 32, 8, 128, {4095}},           // decode after 4095: GQA 4, split over blocks
      {2, 1, 8, 1, 128, {300, 1000}},       // GQA 8 decode, ragged past, split over blocks
      {3, 1, 4, 4, 7, {0, 77, 700}},        // odd head dim (element loads), decode, ragged
      {1, 1, 4, 2, 256, {513}},             // head dim 256, decode
      {1, 1, 2, 1, 80, {200}},              // head dim 80, padded in the 128 block
      {1, 130, 4, 1, 64, {0}},              // prefill crossing key tiles and row blocks, GQA 4
      {2, 45, 8, 8, 45, {5, 0}},            // GQA 1, odd head dim, ragged past prefill
      {2, 17, 16, 2, 128, {200, 63}},       // GQA 8 prefill after a past
      {1, 33, 4, 1, 128, {0}},              // 132 rows: row blocks of 32 and 8 and one more
      {1, 70, 2, 2, 256, {33}},             // head dim 256 prefill
      {1, 7, 2, 1, 1, {127}},               // head dim 1
      {4, 2, 4, 2, 16, {1, 64, 65, 300}},   // chunks of two tokens, ragged
      {1, 3, 32, 32, 64, {1500}},           // a few tokens after a long past (split over blocks on a large GPU)
      {1, 2, 4, 1, 64, {1500}},             // the same in one block: split over blocks on any device
  };
  if (quick) shapes = {shapes[0], shapes[2], shapes[3], shapes[6], shapes[8], shapes[14]};
  for (size_t i = 0; i < shapes.size(); i++) {
    const Shape& sh = shapes[i];
    for (DType dx : kDTypes) {
      const DType dout = kDTypes[(int(dx) + 1) % 3];
      const int maxPast = *std::max_element(sh.past.begin(), sh.past.end());
      const int capacity = maxPast + sh.tokens + 3, slots = sh.batch + 2;
      OpDesc op = attentionOp(sh.batch, sh.tokens, sh.heads, sh.kvHeads, sh.d, capacity, slots, dx, dout, dx == DType::F16 ? 3 : 0);
      Operands in = rowOperands(op, rng, 1.0);
      in.past = sh.past;
      in.slotIndex.resize(size_t(sh.batch));
      for (int b = 0; b < sh.batch; b++) in.slotIndex[size_t(b)] = (b * 3 + 1) % slots;  // not in order
      // One dtype per shape also with every operand one element off (an unaligned cache: element loads).
      checkOnDevice(op, in, dx == DType::BF16 && i % 2 == 0 ? 1 : 0);
    }
  }
}

// Malformed descriptions and out-of-range indices are Status errors before anything is queued.
void checkRejections() {
  auto rejected = [](const std::string& what, const OpDesc& op, const OpBuffers& b, StatusCode code) {
    Status s = backend->runOp(op, b);
    expect(s.code() == code, "rejection of " + what + ": got '" + s.message() + "'");
  };
  std::shared_ptr<DeviceAllocation> memory;
  Status s = DeviceAllocation::create(device, 1 << 16, &memory);
  expect(s.isOk(), "allocating 64 KiB: " + s.message());
  if (!s.isOk()) return;
  float* p = static_cast<float*>(memory->data());
  int32_t ids[4] = {0, 1, 9, 2}, slots[1] = {0}, past[1] = {0};
  OpDesc op = rowOp(OpKind::Embedding, 4, 4, 0, DType::F32, DType::F32, DType::F32);
  op.vocab = 8;
  OpBuffers b;
  b.x = p;
  b.out = p + 64;
  b.ids = ids;
  rejected("an id past the vocabulary", op, b, StatusCode::OutOfRange);
  op = attentionOp(1, 1, 2, 1, 300, 4, 1, DType::F32, DType::F32, 0);
  b.kCache = b.vCache = p;
  b.slotIndex = slots;
  b.past = past;
  rejected("attention at head dim 300", op, b, StatusCode::Unsupported);
  op = rowOp(OpKind::Softmax, 2, 8, 0, DType::F32, DType::F32, DType::F32);
  op.device = 1000;
  rejected("a device that does not exist", op, b, StatusCode::OutOfRange);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else {
      std::fprintf(stderr, "usage: gemmkit-gpu-ops-check [--device N] [--quick]\n");
      return 2;
    }
  }
  registerVendorBackend();
  backend = findBackend(gpuBackendName());
  GpuRuntime& rt = GpuRuntime::instance();
  const GpuDevice* d;
  Status s = rt.checkDevice(device, &d);
  std::printf("gemmkit-gpu-ops-check: %s runtime %s, driver %s\n", gpuBackendName(), rt.runtimeVersion().c_str(),
              rt.driverVersion().empty() ? "none" : rt.driverVersion().c_str());
  if (!s.isOk()) {
    std::printf("no usable device: %s\n", s.message().c_str());
    return 2;
  }
  std::printf("device %d: %s (%s, %d compute units)\n", device, d->info.name.c_str(), d->info.arch.c_str(), d->info.computeUnits);
  std::mt19937 rng(20240611);
  const struct {
    const char* name;
    void (*run)(std::mt19937&);
  } groups[] = {
      {"row ops", checkRowOps},
      {"in place", checkInPlace},
      {"argmax ties and NaN", checkArgmaxSpecials},
      {"rope", checkRope},
      {"kv store", checkKvStore},
      {"attention", checkAttention},
      {"rejections", [](std::mt19937&) { checkRejections(); }},
  };
  for (const auto& g : groups) {
    const int before = failures, checksBefore = checks;
    g.run(rng);
    std::printf("%s %s: %d checks\n", failures == before ? "ok  " : "FAIL", g.name, checks - checksBefore);
  }
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
