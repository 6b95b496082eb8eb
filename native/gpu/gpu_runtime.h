// The runtime side every GPU backend shares, written once against vendor_runtime.h and compiled once
// per vendor: the devices of this process (or why there are none), one stream and one split-K
// workspace per device, device memory with shared ownership, and copies.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/status.h"
#include "kernel_table.h"

namespace gemmkit {

struct GpuDevice {
  int index = 0;
  DeviceInfo info;                  // name, arch ("sm_90", "gfx942:sramecc+:xnack-"), SMs/CUs, memory
  int64_t sharedPerBlock = 0;       // the largest shared memory / LDS one block may use
  std::vector<GpuArch> tables;      // the config tables this device runs, best first
  std::vector<const KernelEntry*> kernels;  // their compiled rows
};

class GpuRuntime {
 public:
  // Enumerates the devices once. Never throws; without a driver or device, deviceCount() is 0 and
  // unavailableReason() says why.
  static GpuRuntime& instance();

  int deviceCount() const { return int(devices_.size()); }
  const GpuDevice& device(int i) const { return devices_[size_t(i)]; }
  const std::string& unavailableReason() const { return unavailable_; }
  const std::string& runtimeVersion() const { return runtimeVersion_; }  // "13.0", "5.2.21153"
  const std::string& driverVersion() const { return driverVersion_; }    // "" without a driver
  const std::string& builtArchs() const { return builtArchs_; }          // "80,90a", "gfx942,gfx90a"

  // Ok and the device when `index` names one; else an error naming the devices there are.
  Status checkDevice(int index, const GpuDevice** out) const;
  // As checkDevice, and the device runs some of this build's kernels.
  Status checkKernels(int index, const GpuDevice** out) const;

  // Everything queued on a device goes through its one stream, under its lock: operations from many
  // threads are ordered and the split-K workspace is never shared by two kernels at once.
  struct DeviceLane {
    std::mutex mutex;
    void* stream = nullptr;     // vendor::Stream, created on first use
    float* workspace = nullptr;
    int64_t workspaceBytes = 0;
  };
  // Locks the device's lane, makes it current and creates its stream if needed.
  Status acquire(int index, std::unique_lock<std::mutex>* lock, DeviceLane** lane);
  // Grows the lane's workspace to at least `bytes` (caller holds the lane).
  Status ensureWorkspace(int index, DeviceLane* lane, int64_t bytes);

 private:
  GpuRuntime();
  std::vector<GpuDevice> devices_;
  std::vector<std::unique_ptr<DeviceLane>> lanes_;
  std::string unavailable_, runtimeVersion_, driverVersion_, builtArchs_;
};

// The error of a failed runtime call, naming what was attempted: "cuda:0: cudaMalloc of 1024 bytes:
// cudaErrorMemoryAllocation: out of memory". Out-of-memory errors have StatusCode::OutOfMemory.
Status gpuError(int device, const std::string& what, int vendorError);

// Device memory shared by the JS handle that owns it and the operations in flight on it: freed when
// the last holder lets go, so disposing a tensor while a GEMM still reads it is safe.
class DeviceAllocation {
 public:
  static Status create(int device, int64_t bytes, std::shared_ptr<DeviceAllocation>* out);
  ~DeviceAllocation();
  DeviceAllocation(const DeviceAllocation&) = delete;
  DeviceAllocation& operator=(const DeviceAllocation&) = delete;
  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  int device() const { return device_; }

 private:
  DeviceAllocation(int device, void* data, int64_t bytes) : device_(device), data_(data), bytes_(bytes) {}
  int device_;
  void* data_;
  int64_t bytes_;
};

// Synchronous copies through the device's stream. Offsets and sizes in bytes, checked against the
// allocation.
Status copyHostToDevice(const DeviceAllocation& dst, int64_t dstOffset, const void* src, int64_t bytes);
Status copyDeviceToHost(void* dst, const DeviceAllocation& src, int64_t srcOffset, int64_t bytes);
Status copyDeviceToDevice(const DeviceAllocation& dst, int64_t dstOffset, const DeviceAllocation& src, int64_t srcOffset,
                          int64_t bytes);
// Waits for everything queued on the device.
Status synchronizeDevice(int device);

}  // namespace gemmkit
