#include "gpu_runtime.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "config_tables.h"
#include "vendor_runtime.h"

#ifndef GEMMKIT_GPU_ARCHS
#error "the build defines GEMMKIT_GPU_ARCHS: the architectures the kernels were compiled for"
#endif

namespace gemmkit {

namespace {

// "80,90a" -> {"80", "90a"}
std::vector<std::string> splitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string versionString(int v) {
#if defined(GEMMKIT_EMU)
  return std::to_string(v) + ".0";  // the emulator's own version
#elif defined(GEMMKIT_HIP)
  // HIP: major * 10000000 + minor * 100000 + patch
  return std::to_string(v / 10000000) + "." + std::to_string(v / 100000 % 100) + "." + std::to_string(v % 100000);
#else
  // CUDA: major * 1000 + minor * 10
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
#endif
}

// Whether this build's code for table `arch` runs on a device of architecture `deviceArch`.
bool builtFor(GpuArch arch, const std::string& deviceArch, const std::vector<std::string>& built) {
#if defined(GEMMKIT_EMU)
  // The emulated device runs every table of its vendor: its own architecture's and the other one's.
  const GpuConfig c{arch};
  return c.isCuda() == (deviceArch.compare(0, 3, "sm_") == 0);
#endif
  if (!gpuArchRunsOn(arch, deviceArch)) return false;
#if defined(GEMMKIT_HIP)
  const std::string base = deviceArch.substr(0, deviceArch.find(':'));
  for (const std::string& b : built) {
    if (b.substr(0, b.find(':')) == base) return true;
  }
  return false;
#else
  // "80" is sm_80 code plus compute_80 PTX, which every later GPU can JIT; "90a" runs on 9.0 only.
  const int cc = std::atoi(deviceArch.c_str() + 3);
  for (const std::string& b : built) {
    const int a = std::atoi(b.c_str());
    const bool archSpecific = !b.empty() && (b.back() == 'a' || b.back() == 'f');
    const bool runs = archSpecific ? a == cc : a <= cc;
    if (runs && (arch == GpuArch::Sm80 || (a == 90 && cc == 90))) return true;
  }
  return false;
#endif
}

}  // namespace

Status gpuError(int device, const std::string& what, int vendorError) {
  const vendor::Error e = static_cast<vendor::Error>(vendorError);
  const std::string message = std::string(vendor::kBackendName) + ":" + std::to_string(device) + ": " + what + ": " +
                              vendor::describe(e);
  return Status(e == vendor::kErrorMemoryAllocation ? StatusCode::OutOfMemory : StatusCode::Internal, message);
}

GpuRuntime& GpuRuntime::instance() {
  // Never destroyed: device memory still held by other statics (timing arenas, vendor libraries) or by
  // JS handles finalised at exit is freed through it after ordinary statics are gone.
  static GpuRuntime* runtime = new GpuRuntime();
  return *runtime;
}

GpuRuntime::GpuRuntime() {
  builtArchs_ = GEMMKIT_GPU_ARCHS;
  int v = 0;
  if (vendor::runtimeVersion(&v) == vendor::kSuccess) runtimeVersion_ = versionString(v);
  if (vendor::driverVersion(&v) == vendor::kSuccess && v > 0) driverVersion_ = versionString(v);
  int count = 0;
  vendor::Error e = vendor::getDeviceCount(&count);
  if (e != vendor::kSuccess || count == 0) {
    vendor::clearLastError();
    unavailable_ = std::string("no ") + vendor::kRuntimeName + " device/driver (" +
                   (e != vendor::kSuccess ? vendor::describe(e) : std::string("the driver reports 0 devices")) + ")";
    return;
  }
  const std::vector<std::string> built = splitList(builtArchs_);
  std::string unusable;
  for (int i = 0; i < count; i++) {
    vendor::DeviceProperties props;
    if (vendor::getDeviceProperties(&props, i) != vendor::kSuccess) {
      vendor::clearLastError();
      continue;
    }
    GpuDevice d;
    d.index = i;
    d.info.name = props.name;
    d.info.arch = vendor::deviceArch(props);
    d.info.computeUnits = props.multiProcessorCount;
    d.info.memoryBytes = int64_t(props.totalGlobalMem);
    d.sharedPerBlock = vendor::sharedMemoryPerBlock(props);
    // A Hopper runs its own table first: the heuristic's ties go to its deeper pipelines.
    if (builtFor(GpuArch::Sm90a, d.info.arch, built)) d.tables.push_back(GpuArch::Sm90a);
    for (const GpuConfigTable& t : kGpuConfigTables) {
      if (t.arch != GpuArch::Sm90a && builtFor(t.arch, d.info.arch, built)) d.tables.push_back(t.arch);
    }
    // The device's own architecture's tables before those it only runs emulated (gfx942 before gfx90a
    // on the emulated AMD device; a real device runs only tables of its own architecture).
    std::stable_partition(d.tables.begin(), d.tables.end(), [&](GpuArch a) { return gpuArchRunsOn(a, d.info.arch); });
    for (GpuArch a : d.tables) {
      for (const KernelEntry& k : compiledKernels(a)) d.kernels.push_back(&k);
    }
    devices_.push_back(d);
    lanes_.emplace_back(new DeviceLane());
  }
  if (devices_.empty()) unavailable_ = std::string(vendor::kRuntimeName) + " devices exist but none could be queried";
}

Status GpuRuntime::checkDevice(int index, const GpuDevice** out) const {
  if (devices_.empty()) return unsupported(unavailable_);
  if (index < 0 || index >= deviceCount()) {
    return outOfRange(std::string(vendor::kBackendName) + ":" + std::to_string(index) + " does not exist; this machine has " +
                      std::to_string(deviceCount()) + " " + vendor::kRuntimeName + " device(s)");
  }
  *out = &devices_[size_t(index)];
  return Status::ok();
}

Status GpuRuntime::checkKernels(int index, const GpuDevice** out) const {
  Status s = checkDevice(index, out);
  if (!s.isOk() || !(*out)->kernels.empty()) return s;
  const GpuDevice& d = **out;
  return unsupported(std::string(vendor::kBackendName) + ":" + std::to_string(index) + " (" + d.info.name + ", " + d.info.arch +
                     ") runs none of this build's kernels, compiled for " + builtArchs_ +
                     "; rebuild with its architecture (see README: GPU builds)");
}

Status GpuRuntime::acquire(int index, std::unique_lock<std::mutex>* lock, DeviceLane** lane) {
  const GpuDevice* d;
  Status s = checkDevice(index, &d);
  if (!s.isOk()) return s;
  DeviceLane* l = lanes_[size_t(index)].get();
  *lock = std::unique_lock<std::mutex>(l->mutex);
  vendor::Error e = vendor::setDevice(index);
  if (e != vendor::kSuccess) return gpuError(index, "selecting the device", e);
  if (!l->stream) {
    vendor::Stream stream;
    e = vendor::streamCreate(&stream);
    if (e != vendor::kSuccess) return gpuError(index, "creating a stream", e);
    l->stream = stream;
  }
  *lane = l;
  return Status::ok();
}

Status GpuRuntime::ensureWorkspace(int index, DeviceLane* lane, int64_t bytes) {
  if (bytes <= lane->workspaceBytes) return Status::ok();
  if (lane->workspace) {
    (void)vendor::deviceFree(lane->workspace);  // synchronises: no kernel still uses it
    lane->workspace = nullptr;
    lane->workspaceBytes = 0;
  }
  void* p = nullptr;
  vendor::Error e = vendor::deviceMalloc(&p, size_t(bytes));
  if (e != vendor::kSuccess) {
    vendor::clearLastError();
    return gpuError(index, "allocating " + std::to_string(bytes) + " bytes of split-K workspace", e);
  }
  lane->workspace = static_cast<float*>(p);
  lane->workspaceBytes = bytes;
  return Status::ok();
}

Status DeviceAllocation::create(int device, int64_t bytes, std::shared_ptr<DeviceAllocation>* out) {
  GpuRuntime& rt = GpuRuntime::instance();
  const GpuDevice* d;
  Status s = rt.checkDevice(device, &d);
  if (!s.isOk()) return s;
  if (bytes < 0) return outOfRange("cannot allocate a negative number of bytes");
  void* p = nullptr;
  if (bytes > 0) {
    std::unique_lock<std::mutex> lock;
    GpuRuntime::DeviceLane* lane;
    s = rt.acquire(device, &lock, &lane);
    if (!s.isOk()) return s;
    vendor::Error e = vendor::deviceMalloc(&p, size_t(bytes));
    if (e != vendor::kSuccess) {
      vendor::clearLastError();  // allocation failures are not sticky: the device keeps working
      size_t freeBytes = 0, totalBytes = 0;
      (void)vendor::memGetInfo(&freeBytes, &totalBytes);
      vendor::clearLastError();
      return gpuError(device, "allocating " + std::to_string(bytes) + " bytes (" + std::to_string(freeBytes) + " of " +
                                  std::to_string(totalBytes) + " free)", e);
    }
  }
  out->reset(new DeviceAllocation(device, p, bytes));
  return Status::ok();
}

DeviceAllocation::~DeviceAllocation() {
  if (!data_) return;
  std::unique_lock<std::mutex> lock;
  GpuRuntime::DeviceLane* lane;
  if (GpuRuntime::instance().acquire(device_, &lock, &lane).isOk()) {
    (void)vendor::deviceFree(data_);  // waits for work queued on it
    vendor::clearLastError();
  }
}

namespace {

Status checkRange(const DeviceAllocation& a, int64_t offset, int64_t bytes, const char* what) {
  if (offset < 0 || bytes < 0 || offset > a.bytes() || bytes > a.bytes() - offset) {
    return outOfRange(std::string(what) + ": " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) +
                      " do not fit a device buffer of " + std::to_string(a.bytes()) + " bytes");
  }
  return Status::ok();
}

enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };

Status copy(int device, void* dst, const void* src, int64_t bytes, CopyKind kind) {
  if (bytes == 0) return Status::ok();
  std::unique_lock<std::mutex> lock;
  GpuRuntime::DeviceLane* lane;
  Status s = GpuRuntime::instance().acquire(device, &lock, &lane);
  if (!s.isOk()) return s;
  vendor::Stream stream = static_cast<vendor::Stream>(lane->stream);
  vendor::Error e = kind == CopyKind::HostToDevice   ? vendor::memcpyHostToDevice(dst, src, size_t(bytes), stream)
                    : kind == CopyKind::DeviceToHost ? vendor::memcpyDeviceToHost(dst, src, size_t(bytes), stream)
                                                     : vendor::memcpyDeviceToDevice(dst, src, size_t(bytes), stream);
  if (e == vendor::kSuccess) e = vendor::streamSynchronize(stream);
  if (e != vendor::kSuccess) {
    vendor::clearLastError();
    return gpuError(device, "copying " + std::to_string(bytes) + " bytes", e);
  }
  return Status::ok();
}

}  // namespace

Status copyHostToDevice(const DeviceAllocation& dst, int64_t dstOffset, const void* src, int64_t bytes) {
  Status s = checkRange(dst, dstOffset, bytes, "copy to device");
  if (!s.isOk()) return s;
  return copy(dst.device(), static_cast<char*>(dst.data()) + dstOffset, src, bytes, CopyKind::HostToDevice);
}

Status copyDeviceToHost(void* dst, const DeviceAllocation& src, int64_t srcOffset, int64_t bytes) {
  Status s = checkRange(src, srcOffset, bytes, "copy from device");
  if (!s.isOk()) return s;
  return copy(src.device(), dst, static_cast<const char*>(src.data()) + srcOffset, bytes, CopyKind::DeviceToHost);
}

Status copyDeviceToDevice(const DeviceAllocation& dst, int64_t dstOffset, const DeviceAllocation& src, int64_t srcOffset,
                          int64_t bytes) {
  if (dst.device() != src.device()) {
    return invalidArgument("copy between devices " + std::to_string(src.device()) + " and " + std::to_string(dst.device()) +
                           ": go through the host");
  }
  Status s = checkRange(dst, dstOffset, bytes, "device copy destination");
  if (s.isOk()) s = checkRange(src, srcOffset, bytes, "device copy source");
  if (!s.isOk()) return s;
  return copy(dst.device(), static_cast<char*>(dst.data()) + dstOffset, static_cast<const char*>(src.data()) + srcOffset, bytes,
              CopyKind::DeviceToDevice);
}

Status synchronizeDevice(int device) {
  std::unique_lock<std::mutex> lock;
  GpuRuntime::DeviceLane* lane;
  Status s = GpuRuntime::instance().acquire(device, &lock, &lane);
  if (!s.isOk()) return s;
  vendor::Error e = vendor::streamSynchronize(static_cast<vendor::Stream>(lane->stream));
  if (e != vendor::kSuccess) return gpuError(device, "synchronising", e);
  return Status::ok();
}

}  // namespace gemmkit
