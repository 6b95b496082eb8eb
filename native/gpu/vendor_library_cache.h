// What a vendor library (vendor_library.h) keeps between calls, written once for all of them and free
// of any vendor's API: the library says how to make its handle and its plans.
//   LibraryHandles<Handle>: one handle and one device workspace per device, made on first use and kept
//     for the life of the process.
//   PreparedPlans<Plan>: what a library builds before it can run an algorithm (descriptors, the rebuilt
//     algorithm), made once per (device, problem, algorithm name), so that supports(), timing and
//     tuned dispatch pay only for the GEMM call itself.
// Callers hold the device's lane (GpuRuntime::acquire); the locks here guard the maps only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "../core/problem.h"
#include "../core/status.h"
#include "gpu_runtime.h"
#include "vendor_runtime.h"

namespace gemmkit {

template <class Handle>
class LibraryHandles {
 public:
  // The device's handle; `create(Handle*)` makes it (returning a Status) when there is none yet.
  template <class Create>
  Status handle(int device, Create create, Handle* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = handles_.find(device);
    if (it == handles_.end()) {
      Handle h;
      Status s = create(&h);
      if (!s.isOk()) return s;
      it = handles_.emplace(device, h).first;
    }
    *out = it->second;
    return Status::ok();
  }

  // The device's workspace of `bytes` (the same size on every call); `what` names it in errors
  // ("allocating cuBLASLt's workspace").
  Status workspace(int device, int64_t bytes, const std::string& what, void** out) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = workspaces_.find(device);
    if (it == workspaces_.end()) {
      void* p = nullptr;
      vendor::Error e = vendor::deviceMalloc(&p, size_t(bytes));
      if (e != vendor::kSuccess) {
        vendor::clearLastError();
        return gpuError(device, what, e);
      }
      it = workspaces_.emplace(device, p).first;
    }
    *out = it->second;
    return Status::ok();
  }

 private:
  std::mutex mutex_;
  std::map<int, Handle> handles_;
  std::map<int, void*> workspaces_;
};

template <class Plan>
class PreparedPlans {
 public:
  // The plan of algorithm `name` for `p`; `make(Plan*)` fills a new one (returning a Status; a failed
  // plan is not kept) when this (device, problem, name) has none yet.
  template <class Make>
  Status get(const Problem& p, const std::string& name, Make make, std::shared_ptr<Plan>* out) {
    const std::string key = std::to_string(p.device) + "|" + p.describe() + "|" + std::to_string(p.lda) + "," + std::to_string(p.ldb) +
                            "," + std::to_string(p.ldc) + "|" + std::to_string(p.strideA) + "," + std::to_string(p.strideB) + "," +
                            std::to_string(p.strideC) + "|" + name;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = plans_.find(key);
      if (it != plans_.end()) {
        *out = it->second;
        return Status::ok();
      }
    }
    auto plan = std::make_shared<Plan>();
    Status s = make(plan.get());
    if (!s.isOk()) return s;
    std::lock_guard<std::mutex> lock(mutex_);
    if (plans_.size() >= 256) plans_.clear();  // a bound, not a cache policy: tuning visits many
    plans_[key] = plan;
    *out = plan;
    return Status::ok();
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Plan>> plans_;
};

}  // namespace gemmkit
