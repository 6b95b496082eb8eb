// The JS object behind prepack(). The packed panel lives in an ArrayBuffer that only this object
// references (a read-only, hidden property), so V8 accounts its bytes and frees them in the same
// collection that frees the handle, without waiting for a finaliser to run on the event loop; nothing
// in JS can reach it to detach it. The kept source (keepSource), which configs reading B as stored
// use, is pinned the same way: a share of the addon memory it lies in, else a hidden copy. An async
// matmul holds the handle (and so both) until it settles. dispose() lets go of both at once, or when
// the last call in flight settles.
#pragma once

#include <napi.h>

#include <memory>

#include "../cpu/packed_weight.h"
#include "host_memory.h"

namespace gemmkit {

class PackedWeightHandle : public Napi::ObjectWrap<PackedWeightHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit PackedWeightHandle(const Napi::CallbackInfo& info);

  // The packed weight (its data points into the panel), or null after dispose().
  std::shared_ptr<const PackedWeight> weight() const { return weight_; }
  // The handle behind a JS value, or null when it is not one.
  static PackedWeightHandle* unwrapIfHandle(const Napi::Value& v);
  // Keeps this handle, its panel and its source for async work until the returned hold is destroyed
  // (on the JS thread), even if dispose() is called meanwhile.
  std::shared_ptr<void> holdForWork();

  // Whether prepack kept the source (keepSource); it is then as stored (ldb sourceLdb()) at sourceData(),
  // sourceBytes() long (null when empty, or once disposed).
  bool hasSource() const { return hasSource_; }
  const void* sourceData() const { return weight_ ? sourceData_ : nullptr; }
  size_t sourceBytes() const { return sourceBytes_; }
  int64_t sourceLdb() const { return sourceLdb_; }

  // prepack(desc) -> handle. desc: { config, k, n, transB, ldb, dtypeB, b, keepSource }.
  static Napi::Value prepack(const Napi::CallbackInfo& info);

 private:
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value layout(const Napi::CallbackInfo& info);
  Napi::Value bytes(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  void detachIfIdle();

  std::shared_ptr<const PackedWeight> weight_;
  bool hasSource_ = false;
  const void* sourceData_ = nullptr;
  size_t sourceBytes_ = 0;
  int64_t sourceLdb_ = 0;
  std::shared_ptr<HostBlock> sourceBlock_;  // the addon memory the source lies in (else it is a hidden copy)
  int inFlight_ = 0;                        // async calls holding the handle (JS thread only)
};

}  // namespace gemmkit
