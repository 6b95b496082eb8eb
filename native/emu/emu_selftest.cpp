// gemmkit-emu-<flavour>-selftest: the emulated instructions and checks, each against a plain reference.
// Instruction tests give every lane distinct values and build each lane's operands from the vendor's
// documented fragment layout (PTX ISA 9.7.14.5.8 and 9.7.14.5.15; AMD's MFMA operand layouts, see
// emu_instructions.cpp), so a wrong lane or register layout cannot pass; a combined test (ldmatrix
// feeding mma, as the kernels do) checks a whole product from shared memory. Check tests run small
// kernels with one defect each and expect the emulator to name it.
//   gemmkit-emu-cuda-selftest | gemmkit-emu-hip-selftest      exit 0: every test passed
#include <cstdio>
#include <cstring>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include "../gpu/device_common.cuh"
#if defined(GEMMKIT_EMU_CUDA)
#include "../gpu/nv_intrinsics.cuh"
#else
#include "../gpu/amd_intrinsics.cuh"
#endif

using namespace gemmkit;

namespace {

int failures = 0, tests = 0;

void report(bool ok, const std::string& name, const std::string& why = "") {
  tests++;
  if (!ok) failures++;
  std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name.c_str(), why.empty() ? "" : ": ", why.c_str());
}

// Device memory holding `n` elements of T, copied from / to host vectors.
template <class T>
struct DeviceArray {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) { emu::deviceMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)); }
  explicit DeviceArray(const std::vector<T>& v) : DeviceArray(v.size()) { emu::memcpyHostToDevice(p, v.data(), n * sizeof(T)); }
  ~DeviceArray() { emu::deviceFree(p); }
  std::vector<T> host() const {
    std::vector<T> v(n);
    emu::memcpyDeviceToHost(v.data(), p, n * sizeof(T));
    return v;
  }
};

// The error of the last launch ("" when it succeeded).
std::string launchError() {
  const emu::Error e = emu::getLastError();
  return e == emu::kSuccess ? "" : std::string(emu::errorName(e)) + ": " + emu::errorString(e);
}

// A launch expected to fail with a message matching `pattern`.
void expectFailure(const std::string& name, const std::function<void()>& launch, const char* pattern) {
  launch();
  const std::string error = launchError();
  if (error.empty()) return report(false, name, "the launch succeeded; expected an error matching /" + std::string(pattern) + "/");
  report(std::regex_search(error, std::regex(pattern)), name, std::regex_search(error, std::regex(pattern)) ? "" : "unexpected error: " + error);
  if (std::getenv("GEMMKIT_EMU_SELFTEST_VERBOSE")) std::printf("     %s\n", error.c_str());
}

void expectSuccess(const std::string& name, const std::function<void()>& launch, const std::function<std::string()>& verify) {
  launch();
  const std::string error = launchError();
  if (!error.empty()) return report(false, name, error);
  const std::string why = verify();
  report(why.empty(), name, why);
}

uint16_t toHalf(float v, bool bf16) { return bf16 ? f32ToBf16(v) : f32ToF16(v); }
uint32_t pack(uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); }

// ---- kernels of both flavours ----------------------------------------------------------------------------

// Every index variable, from every thread of every block.
__global__ void indexKernel(int* out) {
  const int block = int(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
  const int thread = int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
  const int threads = int(blockDim.x * blockDim.y * blockDim.z);
  out[block * threads + thread] = block * 1000 + thread;
}

__global__ void shuffleKernel(float* out, int laneMask) {
  const int tid = int(threadIdx.x);
  out[tid] = shuffleXor(float(tid * 3 + 1), laneMask);
}

// A tree reduction through shared memory with a barrier between every step: correct, so no check may fire.
__global__ void reduceKernel(const float* in, float* out) {
  GEMMKIT_SHARED_ARRAY(16, float, partial, [256]);
  GEMMKIT_SHARED_ARRAY(4, int, flag, [1]);
  const int tid = int(threadIdx.x);
  partial[tid] = in[blockIdx.x * 256 + tid];
  if (tid == 0) flag[0] = 1;
  __syncthreads();
  for (int s = 128; s > 0; s /= 2) {
    if (tid < s) partial[tid] += partial[tid + s];
    __syncthreads();
  }
  if (tid == 0) out[blockIdx.x] = partial[0] * float(flag[0]);
}

__global__ void readPastEndKernel(const float* in, float* out, int n) {
  const int tid = int(threadIdx.x);
  if (tid < n) out[tid] = in[tid + 1];  // the last thread reads one past the end
}

__global__ void writeBeforeStartKernel(float* out) { out[int(threadIdx.x) - 1] = 1.0f; }

// A 16-byte vector load from an address that is only 8-byte aligned (inside the buffer).
__global__ void misalignedVectorKernel(const float* in, float* out) {
  const uint4 v = load16Bytes(in + 2);
  reinterpret_cast<uint4*>(out)[threadIdx.x] = v;
}

__global__ void sharedOverrunKernel(float* out) {
  GEMMKIT_SHARED_ARRAY(16, float, tile, [64]);
  const int tid = int(threadIdx.x);
  tile[tid + 1] = float(tid);  // thread 63 writes one float past the array
  __syncthreads();
  out[tid] = tile[tid];
}

__global__ void overBudgetKernel(float* out) {
  GEMMKIT_SHARED_ARRAY(16, float, tile, [1024]);  // 4096 bytes
  tile[threadIdx.x] = 1.0f;
  out[threadIdx.x] = tile[threadIdx.x];
}

// Every thread but the last writes its element; all read their neighbour's after the barrier.
__global__ void unwrittenSharedKernel(float* out) {
  GEMMKIT_SHARED_ARRAY(16, float, tile, [64]);
  const int tid = int(threadIdx.x);
  if (tid != 63) tile[tid] = float(tid);
  __syncthreads();
  out[tid] = tile[(tid + 1) % 64];
}

__global__ void raceKernel(float* out, bool barrier) {
  GEMMKIT_SHARED_ARRAY(16, float, tile, [64]);
  const int tid = int(threadIdx.x);
  tile[tid] = float(tid);
  if (barrier) __syncthreads();
  out[tid] = tile[tid == 0 ? 0 : tid - 1];  // the previous thread's element
}

// Threads that read a value, then one that overwrites it without a barrier in between.
__global__ void writeAfterReadKernel(float* out) {
  GEMMKIT_SHARED_ARRAY(16, float, tile, [64]);
  const int tid = int(threadIdx.x);
  tile[tid] = 1.0f;
  __syncthreads();
  out[tid] = tile[0];
  if (tid == 5) tile[0] = 2.0f;
}

__global__ void partialBarrierKernel(float* out) {
  const int tid = int(threadIdx.x);
  if (tid >= 32) return;  // these threads never reach the barrier
  __syncthreads();
  out[tid] = 1.0f;
}

__global__ void splitBarrierKernel(float* out) {
  const int tid = int(threadIdx.x);
  if (tid % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[tid] = 1.0f;
}

__global__ void partialCollectiveKernel(float* out) {
  const int tid = int(threadIdx.x);
  if (tid % kWarpSize == 3) return;  // one lane of every warp leaves before the shuffle
  out[tid] = shuffleXor(1.0f, 1);
}

// ---- NVIDIA: mma, ldmatrix, cp.async ----------------------------------------------------------------------

#if defined(GEMMKIT_EMU_CUDA)
// PTX ISA 9.7.14.5.8: the position of fragment element i of lane l, for A (16x16), B (16x8), C/D (16x8).
void aElement(int lane, int i, int* row, int* col) {
  const int groupID = lane >> 2, threadInGroup = lane % 4;
  *row = (i < 2 || (i >= 4 && i < 6)) ? groupID : groupID + 8;
  *col = threadInGroup * 2 + (i & 1) + (i >= 4 ? 8 : 0);
}
void bElement(int lane, int i, int* row, int* col) {
  const int groupID = lane >> 2, threadInGroup = lane % 4;
  *row = threadInGroup * 2 + (i & 1) + (i >= 2 ? 8 : 0);
  *col = groupID;
}
void cElement(int lane, int i, int* row, int* col) {
  const int groupID = lane >> 2, threadInGroup = lane % 4;
  *row = i < 2 ? groupID : groupID + 8;
  *col = threadInGroup * 2 + (i & 1);
}

// One warp: lane operands gathered from A [16][16], B [16][8], C [16][8] (16-bit, 16-bit, f32) by the
// documented layout; D [16][8] scattered back the same way.
template <DType T>
__global__ void mmaKernel(const uint16_t* a, const uint16_t* b, const float* c, float* d) {
  const int lane = int(threadIdx.x);
  uint32_t fa[4], fb[2];
  float acc[4];
  for (int r = 0; r < 4; r++) {
    int row0, col0, row1, col1;
    aElement(lane, 2 * r, &row0, &col0);
    aElement(lane, 2 * r + 1, &row1, &col1);
    fa[r] = pack(a[row0 * 16 + col0], a[row1 * 16 + col1]);
  }
  for (int r = 0; r < 2; r++) {
    int row0, col0, row1, col1;
    bElement(lane, 2 * r, &row0, &col0);
    bElement(lane, 2 * r + 1, &row1, &col1);
    fb[r] = pack(b[row0 * 8 + col0], b[row1 * 8 + col1]);
  }
  for (int i = 0; i < 4; i++) {
    int row, col;
    cElement(lane, i, &row, &col);
    acc[i] = c[row * 8 + col];
  }
  mmaM16N8K16<T>(acc, fa, fb);
  for (int i = 0; i < 4; i++) {
    int row, col;
    cElement(lane, i, &row, &col);
    d[row * 8 + col] = acc[i];
  }
}

// Four 8x8 matrices whose rows lie scattered in shared memory; lane l gives the address of row l % 8
// of matrix l / 8 and writes what it received to out[l][j].
__global__ void ldmatrixKernel(const uint16_t* matrices, uint32_t* out, bool trans) {
  GEMMKIT_SHARED_ARRAY(16, uint16_t, rows, [32 * 8]);
  const int lane = int(threadIdx.x);
  const int slot = (lane * 13 + 5) % 32;  // where row lane % 8 of matrix lane / 8 is stored
  for (int e = 0; e < 8; e++) rows[slot * 8 + e] = matrices[lane * 8 + e];
  __syncthreads();
  uint32_t r[4];
  if (trans) ldmatrixX4Trans(r, rows + slot * 8);
  else ldmatrixX4(r, rows + slot * 8);
  for (int j = 0; j < 4; j++) out[lane * 4 + j] = r[j];
}

// D = A (16x16, row-major) x B (16x8, stored [k][n]) from shared memory, loaded as mma_gemm.cuh does:
// A with ldmatrix.x4, B with ldmatrix.x4.trans (whose second pair of matrices is n 8-15, unused here).
template <DType T>
__global__ void ldmatrixMmaKernel(const uint16_t* a, const uint16_t* b, float* d) {
  GEMMKIT_SHARED_ARRAY(16, uint16_t, sa, [16 * 16]);
  GEMMKIT_SHARED_ARRAY(16, uint16_t, sb, [16 * 16]);
  const int lane = int(threadIdx.x);
  for (int e = lane; e < 256; e += 32) {
    sa[e] = a[e];
    sb[e] = e % 16 < 8 ? b[(e / 16) * 8 + e % 16] : uint16_t(0);  // [k][16]: n 0-7 real, 8-15 zero
  }
  __syncthreads();
  uint32_t fa[4], r[4];
  ldmatrixX4(fa, sa + (lane % 16) * 16 + (lane / 16) * 8);  // lanes 0-15 rows at k 0-7, 16-31 at k 8-15
  const int matrix = lane / 8, matrixRow = lane % 8;          // (k 0-7, n 0-7), (k 8-15, n 0-7), n 8-15 ...
  ldmatrixX4Trans(r, sb + ((matrix % 2) * 8 + matrixRow) * 16 + (matrix / 2) * 8);
  const uint32_t fb[2] = {r[0], r[1]};
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  mmaM16N8K16<T>(acc, fa, fb);
  for (int i = 0; i < 4; i++) {
    int row, col;
    cElement(lane, i, &row, &col);
    d[row * 8 + col] = acc[i];
  }
}

// Thread t copies 16 bytes of src (t-th chunk) to shared memory reading srcBytes = t % 17, waits, and
// writes what arrived to out.
__global__ void cpAsyncKernel(const uint8_t* src, uint8_t* out) {
  GEMMKIT_SHARED_ARRAY(16, uint8_t, tile, [32 * 16]);
  const int tid = int(threadIdx.x);
  cpAsync16(tile + tid * 16, src + tid * 16, tid % 17);
  cpAsyncCommit();
  cpAsyncWait<0>();
  __syncthreads();
  for (int e = 0; e < 16; e++) out[tid * 16 + e] = tile[((tid + 1) % 32) * 16 + e];
}

// Two groups in flight, the wait releases the older; reading the newer one is the defect.
__global__ void cpAsyncEarlyReadKernel(const uint8_t* src, uint8_t* out) {
  GEMMKIT_SHARED_ARRAY(16, uint8_t, tile, [2 * 32 * 16]);
  const int tid = int(threadIdx.x);
  cpAsync16(tile + tid * 16, src + tid * 16, 16);
  cpAsyncCommit();
  cpAsync16(tile + 512 + tid * 16, src + tid * 16, 16);
  cpAsyncCommit();
  cpAsyncWait<1>();
  out[tid] = tile[tid * 16];        // the first group: delivered
  out[32 + tid] = tile[512 + tid * 16];  // the second: still in flight
}

__global__ void cpAsyncNoWaitKernel(const uint8_t* src) {
  GEMMKIT_SHARED_ARRAY(16, uint8_t, tile, [32 * 16]);
  const int tid = int(threadIdx.x);
  cpAsync16(tile + tid * 16, src + tid * 16, 16);
  cpAsyncCommit();
}

__global__ void cpAsyncOutOfBoundsKernel(const uint8_t* src) {
  GEMMKIT_SHARED_ARRAY(16, uint8_t, tile, [32 * 16]);
  const int tid = int(threadIdx.x);
  cpAsync16(tile + tid * 16, src + (tid + 1) * 16, 16);  // the last thread reads past the buffer
  cpAsyncCommit();
  cpAsyncWait<0>();
}

__global__ void divergentCollectiveKernel(const uint16_t* a, float* out) {
  GEMMKIT_SHARED_ARRAY(16, uint16_t, rows, [32 * 8]);
  const int lane = int(threadIdx.x);
  for (int e = 0; e < 8; e++) rows[lane * 8 + e] = a[e];
  __syncthreads();
  if (lane < 16) {
    out[lane] = shuffleXor(1.0f, 1);
  } else {
    uint32_t r[4];
    ldmatrixX4(r, rows + lane * 8);
    out[lane] = float(r[0]);
  }
}

__global__ void bigDynamicSharedKernel(float* out) {
  GEMMKIT_DYNAMIC_SHARED(16, float, dyn);
  dyn[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = dyn[threadIdx.x];
}
#endif

// ---- AMD: MFMA ----------------------------------------------------------------------------------------------

#if defined(GEMMKIT_EMU_HIP)
// One wave: A [32][8], B [8][32] (16-bit) and C [32][32] (f32) spread over the lanes by AMD's layout
// for v_mfma_f32_32x32x8 (bf16 / f16), D gathered back the same way.
template <DType T>
__global__ void mfmaKernel(const uint16_t* a, const uint16_t* b, const float* c, float* d) {
  const int lane = int(threadIdx.x);
  const int i = lane % 32, k0 = 4 * (lane / 32);
  const uint2 fa = make_uint2(pack(a[i * 8 + k0], a[i * 8 + k0 + 1]), pack(a[i * 8 + k0 + 2], a[i * 8 + k0 + 3]));
  const uint2 fb = make_uint2(pack(b[k0 * 32 + i], b[(k0 + 1) * 32 + i]), pack(b[(k0 + 2) * 32 + i], b[(k0 + 3) * 32 + i]));
  MfmaAccumulator acc;
  for (int r = 0; r < 16; r++) acc[r] = c[(8 * (r / 4) + 4 * (lane / 32) + r % 4) * 32 + i];
  mfma32x32x8<T>(acc, fa, fb);
  for (int r = 0; r < 16; r++) d[(8 * (r / 4) + 4 * (lane / 32) + r % 4) * 32 + i] = acc[r];
}

__global__ void divergentCollectiveKernel(float* out) {
  const int lane = int(threadIdx.x);
  if (lane < 32) {
    out[lane] = shuffleXor(1.0f, 1);
  } else {
    MfmaAccumulator acc;
    for (int r = 0; r < 16; r++) acc[r] = 0.0f;
    mfma32x32x8<DType::BF16>(acc, make_uint2(0, 0), make_uint2(0, 0));
    out[lane] = acc[0];
  }
}
#endif

template <class K, class... A>
void run(K kernel, dim3 grid, dim3 block, size_t dynamicShared, long long budget, const char* label, A... args) {
  emu::launch(kernel, grid, block, dynamicShared, nullptr, std::string("selftest ") + label, budget, args...);
}

std::string compare(const std::vector<float>& got, const std::vector<double>& want, int cols) {
  for (size_t i = 0; i < want.size(); i++) {
    if (double(got[i]) != want[i]) {
      char s[160];
      std::snprintf(s, sizeof s, "element (%zu, %zu): got %g, want %g", i / size_t(cols), i % size_t(cols), double(got[i]), want[i]);
      return s;
    }
  }
  return "";
}

void testCommon() {
  {
    DeviceArray<int> out(size_t(3 * 2 * 2) * 64);
    expectSuccess("index variables (grid 3x2x2, block 16x2x2)", [&] { run(indexKernel, dim3(3, 2, 2), dim3(16, 2, 2), 0, -1, "index", out.p); }, [&] {
      const std::vector<int> v = out.host();
      for (size_t i = 0; i < v.size(); i++) {
        if (v[i] != int(i / 64) * 1000 + int(i % 64)) return "out[" + std::to_string(i) + "] = " + std::to_string(v[i]);
      }
      return std::string();
    });
  }
  for (int mask = 1; mask < kWarpSize; mask *= 2) {
    DeviceArray<float> out(size_t(2 * kWarpSize));
    expectSuccess("shfl.xor lane mask " + std::to_string(mask) + " (2 warps)", [&] { run(shuffleKernel, dim3(1), dim3(2 * kWarpSize), 0, -1, "shfl", out.p, mask); },
                  [&] {
                    const std::vector<float> v = out.host();
                    for (int t = 0; t < 2 * kWarpSize; t++) {
                      const int src = (t / kWarpSize) * kWarpSize + ((t % kWarpSize) ^ mask);
                      if (v[size_t(t)] != float(src * 3 + 1)) return "lane " + std::to_string(t) + " got " + std::to_string(v[size_t(t)]);
                    }
                    return std::string();
                  });
  }
  {
    std::vector<float> in(256 * 5);
    for (size_t i = 0; i < in.size(); i++) in[i] = float(int(i % 29) - 14);
    DeviceArray<float> din(in), out(5);
    expectSuccess("shared-memory reduction with barriers, 5 blocks (no false alarms)", [&] { run(reduceKernel, dim3(5), dim3(256), 0, 1028, "reduce", din.p, out.p); },
                  [&] {
                    const std::vector<float> v = out.host();
                    for (int bi = 0; bi < 5; bi++) {
                      double s = 0;
                      for (int t = 0; t < 256; t++) s += in[size_t(bi * 256 + t)];
                      if (double(v[size_t(bi)]) != s) return "block " + std::to_string(bi) + " sum " + std::to_string(v[size_t(bi)]);
                    }
                    return std::string();
                  });
  }
  DeviceArray<float> in(64), out(64);
  expectFailure("bounds: a read one past the end of a buffer", [&] { run(readPastEndKernel, dim3(1), dim3(64), 0, -1, "bounds", in.p, out.p, 64); },
                R"(selftest bounds, block \(0,0,0\), thread \(63,0,0\): global read of 4 bytes at 0x[0-9a-f]+ is outside every device buffer of the launch: 0 bytes past the end of device buffer #[0-9]+ \(256 bytes)");
  expectFailure("bounds: a write before the start of a buffer", [&] { run(writeBeforeStartKernel, dim3(1), dim3(8), 0, -1, "bounds", out.p); },
                R"(thread \(0,0,0\): global write of 4 bytes .* 4 bytes before the start of device buffer #[0-9]+ \(256 bytes)");
  expectFailure("alignment: a 16-byte vector load from an 8-byte aligned address", [&] { run(misalignedVectorKernel, dim3(1), dim3(4), 0, -1, "align", in.p, out.p); },
                R"(thread \(0,0,0\): misaligned 16-byte vector load at 0x[0-9a-f]*8 \(a GPU faults on an access that is not aligned to its size\))");
  expectFailure("shared memory: a write past the declared array", [&] { run(sharedOverrunKernel, dim3(1), dim3(64), 0, -1, "smem", out.p); },
                R"(thread \(63,0,0\): shared-memory write of 4 bytes at offset 256 is beyond the block's declared shared memory \(256 bytes)");
  expectFailure("shared memory: more than the config's budget", [&] { run(overBudgetKernel, dim3(1), dim3(64), 0, 2048, "budget", out.p); },
                R"(shared array 'tile' \(4096 bytes at offset 0\) takes the block's shared memory to 4096 bytes, beyond the config's declared budget of 2048 bytes)");
  expectFailure("shared memory: a read of bytes no thread of the block wrote", [&] { run(unwrittenSharedKernel, dim3(2), dim3(64), 0, -1, "unwritten", out.p); },
                R"(selftest unwritten, block \(0,0,0\), thread \(62,0,0\): shared-memory read of 4 bytes at offset 252 reads byte 252 before any thread of the block wrote it, and none did before the next barrier or the block's end)");
  expectSuccess("race check: the same exchange with a barrier passes", [&] { run(raceKernel, dim3(1), dim3(64), 0, -1, "race", out.p, true); }, [&] {
    const std::vector<float> v = out.host();
    for (int t = 0; t < 64; t++) {
      if (v[size_t(t)] != float(t == 0 ? 0 : t - 1)) return "thread " + std::to_string(t) + " got " + std::to_string(v[size_t(t)]);
    }
    return std::string();
  });
  expectFailure("race: read of another thread's write without a barrier", [&] { run(raceKernel, dim3(1), dim3(64), 0, -1, "race", out.p, false); },
                R"(thread \(1,0,0\): shared-memory race at offset 0: this thread reads a byte that thread \(0,0,0\) wrote since the last __syncthreads\(\))");
  expectFailure("race: a write over bytes other threads read", [&] { run(writeAfterReadKernel, dim3(1), dim3(64), 0, -1, "race", out.p); },
                R"(thread \(5,0,0\): shared-memory race at offset 0: this thread writes a byte that thread \([0-9]+,0,0\) read since the last __syncthreads\(\))");
  expectFailure("barrier reached by part of the block", [&] { run(partialBarrierKernel, dim3(1), dim3(128), 0, -1, "barrier", out.p); },
                R"(selftest barrier, block \(0,0,0\): deadlock: barrier reached by only part of the block: threads 0-31 wait at __syncthreads\(\) \(emu_selftest.cpp:[0-9]+\); threads 32-127 have exited)");
  expectFailure("threads at different barriers", [&] { run(splitBarrierKernel, dim3(1), dim3(64), 0, -1, "barrier", out.p); },
                R"(thread \(1,0,0\): deadlock: threads reach different __syncthreads\(\) call sites: this thread at emu_selftest.cpp:[0-9]+, 1 thread\(s\) wait at emu_selftest.cpp:[0-9]+)");
  expectFailure("a collective that a lane never reaches", [&] { run(partialCollectiveKernel, dim3(1), dim3(2 * kWarpSize), 0, -1, "collective", out.p); },
                R"(deadlock: warp collective reached by only part of a warp: warp 0: lanes 0-2, 4-[0-9]+ wait at shfl.xor; lanes 3 have exited; warp 1:)");
  expectFailure("launch: a block of 2048 threads", [&] { run(indexKernel, dim3(1), dim3(2048), 0, -1, "launch", reinterpret_cast<int*>(out.p)); },
                R"(emuErrorLaunch: launch of selftest launch over grid \(1,1,1\), block \(2048,1,1\): a block has 1 to 1024 threads)");
}

#if defined(GEMMKIT_EMU_CUDA)
template <DType T>
void testMma() {
  const bool bf16 = T == DType::BF16;
  const char* name = bf16 ? "bf16" : "f16";
  std::vector<uint16_t> a(16 * 16), b(16 * 8);
  std::vector<float> c(16 * 8);
  for (int i = 0; i < 16; i++)
    for (int k = 0; k < 16; k++) a[size_t(i * 16 + k)] = toHalf(float(i * 16 + k - 128), bf16);  // 256 distinct values
  for (int k = 0; k < 16; k++)
    for (int j = 0; j < 8; j++) b[size_t(k * 8 + j)] = toHalf(float(k * 8 + j - 64), bf16);
  for (int i = 0; i < 128; i++) c[size_t(i)] = float(i * 7 - 300);
  std::vector<double> want(16 * 8), product(16 * 8);
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 8; j++) {
      double s = 0;
      for (int k = 0; k < 16; k++) s += double(i * 16 + k - 128) * double(k * 8 + j - 64);
      product[size_t(i * 8 + j)] = s;
      want[size_t(i * 8 + j)] = s + c[size_t(i * 8 + j)];
    }
  DeviceArray<uint16_t> da(a), db(b);
  DeviceArray<float> dc(c), dd(16 * 8);
  expectSuccess(std::string("mma.m16n8k16 ") + name + " (PTX fragment layout) vs a plain product",
                [&] { run(mmaKernel<T>, dim3(1), dim3(32), 0, -1, "mma", da.p, db.p, dc.p, dd.p); }, [&] { return compare(dd.host(), want, 8); });
  DeviceArray<float> dd2(16 * 8);
  expectSuccess(std::string("ldmatrix.x4 + ldmatrix.x4.trans feeding mma.m16n8k16 ") + name + " vs a plain product",
                [&] { run(ldmatrixMmaKernel<T>, dim3(1), dim3(32), 0, -1, "ldmatrix+mma", da.p, db.p, dd2.p); },
                [&] { return compare(dd2.host(), product, 8); });
}

void testLdmatrix(bool trans) {
  std::vector<uint16_t> m(4 * 8 * 8);  // matrix j, row r, column c at j * 64 + r * 8 + c: value j * 64 + r * 8 + c + 1
  for (size_t i = 0; i < m.size(); i++) m[i] = uint16_t(i + 1);
  DeviceArray<uint16_t> dm(m);
  DeviceArray<uint32_t> out(32 * 4);
  expectSuccess(trans ? "ldmatrix.x4.trans (PTX layout) with scattered rows" : "ldmatrix.x4 (PTX layout) with scattered rows",
                [&] { run(ldmatrixKernel, dim3(1), dim3(32), 0, -1, "ldmatrix", dm.p, out.p, trans); }, [&] {
                  const std::vector<uint32_t> v = out.host();
                  for (int l = 0; l < 32; l++) {
                    for (int j = 0; j < 4; j++) {
                      // Lane l holds (l / 4, 2 (l % 4) + {0, 1}) of matrix j, or its transpose's.
                      const int r0 = trans ? 2 * (l % 4) : l / 4, c0 = trans ? l / 4 : 2 * (l % 4);
                      const int r1 = trans ? r0 + 1 : r0, c1 = trans ? c0 : c0 + 1;
                      const uint32_t want = pack(m[size_t(j * 64 + r0 * 8 + c0)], m[size_t(j * 64 + r1 * 8 + c1)]);
                      if (v[size_t(l * 4 + j)] != want) return "lane " + std::to_string(l) + " r[" + std::to_string(j) + "]";
                    }
                  }
                  return std::string();
                });
}

void testCpAsync() {
  std::vector<uint8_t> src(32 * 16 + 16);
  for (size_t i = 0; i < src.size(); i++) src[i] = uint8_t(i * 7 + 1);
  DeviceArray<uint8_t> dsrc(src), out(32 * 16);
  expectSuccess("cp.async 16 bytes with src-size 0..16 (zero fill), commit, wait_group 0", [&] { run(cpAsyncKernel, dim3(1), dim3(32), 0, -1, "cp.async", dsrc.p, out.p); },
                [&] {
                  const std::vector<uint8_t> v = out.host();
                  for (int t = 0; t < 32; t++) {
                    const int from = (t + 1) % 32;
                    for (int e = 0; e < 16; e++) {
                      const uint8_t want = e < from % 17 ? src[size_t(from * 16 + e)] : 0;
                      if (v[size_t(t * 16 + e)] != want) return "thread " + std::to_string(t) + " byte " + std::to_string(e);
                    }
                  }
                  return std::string();
                });
  DeviceArray<uint8_t> small(32 * 16);
  expectFailure("cp.async: a read before the wait that delivers it", [&] { run(cpAsyncEarlyReadKernel, dim3(1), dim3(32), 0, -1, "cp.async", dsrc.p, out.p); },
                R"(thread \(0,0,0\): shared-memory read of 1 byte at offset 512 touches bytes that this thread is still copying with cp.async: they arrive only at the cp.async.wait_group)");
  expectFailure("cp.async: a thread that exits without waiting", [&] { run(cpAsyncNoWaitKernel, dim3(1), dim3(32), 0, -1, "cp.async", dsrc.p); },
                R"(thread \(0,0,0\): exited with 1 cp.async copies that no cp.async.wait_group delivered)");
  expectFailure("cp.async: a source past the end of its buffer", [&] { run(cpAsyncOutOfBoundsKernel, dim3(1), dim3(32), 0, -1, "cp.async", small.p); },
                R"(thread \(31,0,0\): global read of 16 bytes .* 0 bytes past the end of device buffer)");
  std::vector<uint16_t> a(8, 1);
  DeviceArray<uint16_t> da(a);
  DeviceArray<float> fout(32);
  expectFailure("lanes of a warp at different collectives", [&] { run(divergentCollectiveKernel, dim3(1), dim3(32), 0, -1, "divergent", da.p, fout.p); },
                R"(lanes of warp 0 reach different warp collectives: this lane \(0\) is at shfl.xor, lanes 31 wait at ldmatrix.x4)");
  DeviceArray<float> big(64);
  expectFailure("dynamic shared memory above 48 KiB without the opt-in", [&] { run(bigDynamicSharedKernel, dim3(1), dim3(64), 64 * 1024, -1, "opt-in", big.p); },
                R"(65536 bytes of dynamic shared memory need cudaFuncSetAttribute\(MaxDynamicSharedMemorySize\) first)");
  cudaFuncSetAttribute(reinterpret_cast<const void*>(&bigDynamicSharedKernel), cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
  expectSuccess("dynamic shared memory above 48 KiB after the opt-in", [&] { run(bigDynamicSharedKernel, dim3(1), dim3(64), 64 * 1024, -1, "opt-in", big.p); },
                [&] { return big.host()[63] == 1.0f ? std::string() : std::string("wrong value"); });
}
#endif

#if defined(GEMMKIT_EMU_HIP)
template <DType T>
void testMfma() {
  const bool bf16 = T == DType::BF16;
  std::vector<uint16_t> a(32 * 8), b(8 * 32);
  std::vector<float> c(32 * 32);
  for (int i = 0; i < 32; i++)
    for (int k = 0; k < 8; k++) a[size_t(i * 8 + k)] = toHalf(float(i * 8 + k - 128), bf16);
  for (int k = 0; k < 8; k++)
    for (int j = 0; j < 32; j++) b[size_t(k * 32 + j)] = toHalf(float(k * 32 + j - 128), bf16);
  for (int i = 0; i < 32 * 32; i++) c[size_t(i)] = float(i - 500);
  std::vector<double> want(32 * 32);
  for (int i = 0; i < 32; i++)
    for (int j = 0; j < 32; j++) {
      double s = c[size_t(i * 32 + j)];
      for (int k = 0; k < 8; k++) s += double(i * 8 + k - 128) * double(k * 32 + j - 128);
      want[size_t(i * 32 + j)] = s;
    }
  DeviceArray<uint16_t> da(a), db(b);
  DeviceArray<float> dc(c), dd(32 * 32);
  expectSuccess(std::string("v_mfma_f32_32x32x8 ") + (bf16 ? "bf16" : "f16") + " (AMD operand layout) vs a plain product",
                [&] { run(mfmaKernel<T>, dim3(1), dim3(64), 0, -1, "mfma", da.p, db.p, dc.p, dd.p); }, [&] { return compare(dd.host(), want, 32); });
}
#endif

}  // namespace

int main() {
  std::printf("gemmkit emulator self-test (%s, warps of %d)\n",
#if defined(GEMMKIT_EMU_CUDA)
              "emu-cuda",
#else
              "emu-hip",
#endif
              kWarpSize);
  testCommon();
#if defined(GEMMKIT_EMU_CUDA)
  testMma<DType::BF16>();
  testMma<DType::F16>();
  testLdmatrix(false);
  testLdmatrix(true);
  testCpAsync();
#else
  testMfma<DType::BF16>();
  testMfma<DType::F16>();
  {
    DeviceArray<float> out(64);
    expectFailure("lanes of a wave at different collectives", [&] { run(divergentCollectiveKernel, dim3(1), dim3(64), 0, -1, "divergent", out.p); },
                  R"(lanes of warp 0 reach different warp collectives: this lane \(32\) is at v_mfma_f32_32x32x8, lanes 0-31 wait at shfl.xor)");
  }
#endif
  const emu::Stats s = emu::stats();
  std::printf("%d tests, %d failures (%llu launches, %llu blocks, %llu threads, %llu collectives, %llu barriers, %llu checked accesses)\n", tests,
              failures, s.launches, s.blocks, s.threads, s.collectives, s.barriers, s.checkedAccesses);
  return failures == 0 ? 0 : 1;
}
