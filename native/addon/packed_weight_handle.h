// The JS object behind prepack(): owns a PackedWeight through a shared_ptr, so a matmul in flight keeps
// the packed data alive even if the handle is disposed or collected meanwhile. V8 is told about the
// packed bytes, so large weights count towards its collection heuristics.
#pragma once

#include <napi.h>

#include <memory>

#include "../cpu/packed_weight.h"

namespace gemmkit {

class PackedWeightHandle : public Napi::ObjectWrap<PackedWeightHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit PackedWeightHandle(const Napi::CallbackInfo& info);
  ~PackedWeightHandle() override;

  // The packed weight, or null after dispose().
  std::shared_ptr<const PackedWeight> weight() const { return weight_; }
  // The handle behind a JS value, or null when it is not one.
  static PackedWeightHandle* unwrapIfHandle(const Napi::Value& v);

  // prepack(desc) -> handle. desc: { config, k, n, transB, ldb, dtypeB, b }.
  static Napi::Value prepack(const Napi::CallbackInfo& info);

 private:
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value layout(const Napi::CallbackInfo& info);
  Napi::Value bytes(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  void release();

  std::shared_ptr<const PackedWeight> weight_;
  int64_t reportedBytes_ = 0;
  Napi::Env env_;
};

}  // namespace gemmkit
