// Host memory the addon owns, and the rule for memory it does not.
//
// A HostBlock is native memory shared by reference count: JavaScript sees it as an external ArrayBuffer
// (lend()) whose finaliser drops the JS share, and every call in flight holds a share of its own. So a
// collection, a detach (Tensor.dispose -> release()) or anything else JS does to the ArrayBuffer while
// work runs leaves the memory valid until the work lets go. Blocks are found again from the address an
// ArrayBuffer views (find()), which is how a call tells memory it owns from memory it must copy.
//
// Memory the addon does not own (plain, resizable or shared ArrayBuffers) can be detached, shrunk or
// freed by JS at any time once control returns to it, so work that outlives the call (async) runs on
// an owned snapshot of it (HostOperand), and a result meant for it is copied in on the JS thread once
// the work is done, after checking it is still there.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/status.h"

namespace gemmkit {

class HostBlock {
 public:
  // `bytes` (> 0) of memory, zero filled when `zeroed`; null when out of memory.
  static std::shared_ptr<HostBlock> allocate(size_t bytes, bool zeroed);
  // The live block lent to JS whose memory starts at `data`, or null when the addon does not own that
  // address. (Blocks never lent, such as snapshots, are not looked up.)
  static std::shared_ptr<HostBlock> find(const void* data);

  ~HostBlock();
  HostBlock(const HostBlock&) = delete;
  HostBlock& operator=(const HostBlock&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

  // An external ArrayBuffer over the whole block holding one JS share; an empty value when this Node
  // refuses external buffers (then the caller uses ordinary memory).
  static Napi::Value lend(Napi::Env env, std::shared_ptr<HostBlock> block);
  // Detaches `arrayBuffer` and drops its JS share now, when it is one lend() made and still holds its
  // share; returns whether it did. Work in flight keeps its own shares.
  static bool release(Napi::Env env, const Napi::Value& arrayBuffer);

  // Process-wide counts, for tests and the soak: live blocks and their bytes (JS shares, calls in flight
  // and snapshots), and the bytes JS shares hold.
  struct Counts {
    int64_t blocks = 0, bytes = 0, lentBytes = 0;
  };
  static Counts counts();

 private:
  HostBlock(void* data, size_t bytes) : data_(data), bytes_(bytes) {}
  struct JsShare;
  static void finalizeShare(napi_env env, void* data, void* hint);

  void* const data_;
  const size_t bytes_;
  JsShare* jsShare_ = nullptr;  // the share lend() gave JS, until it is finalised or released (JS thread)
  bool registered_ = false;     // in the registry find() searches (set once, by lend, on the JS thread)
};

// A typed array's memory as the native side sees it now.
struct TypedView {
  napi_typedarray_type type;
  void* data = nullptr;      // first element (null when empty or detached)
  size_t length = 0;         // elements now (0 once detached; the current length of a resizable view)
  size_t elementBytes = 0;
  Napi::Value arrayBuffer;   // the ArrayBuffer or SharedArrayBuffer it views
  size_t byteOffset = 0;
};
TypedView typedView(const Napi::Env& env, const Napi::TypedArray& ta);

// How the memory of a host operand stays valid while native code uses it.
enum class HostLifetime {
  Call,   // only during this synchronous call: JS cannot run meanwhile, so the caller's memory is used
  Work,   // until async work settles: addon memory is held by a share, other memory snapshotted
};

// One typed-array operand of a call: where native code reads (and for outputs writes) it, and what keeps
// that memory valid. Inputs the addon does not own are copied at unpack time under HostLifetime::Work;
// outputs it does not own are computed in an owned block and copied into the array by finish().
class HostOperand {
 public:
  HostOperand() = default;
  // `name` for messages; `bytes` the bytes the call touches from the view's first element (checked by
  // the caller against the view's length); `output` when the work writes it; `readBack` when an output
  // is also read (beta != 0, or gaps a partial write must keep).
  HostOperand(const Napi::Env& env, std::string name, const Napi::TypedArray& ta, const TypedView& view, size_t bytes,
              HostLifetime lifetime, bool output, bool readBack);

  void* data() const { return data_; }
  // On the JS thread once the work succeeded: copies a snapshot output into its typed array. Fails,
  // leaving the array alone, when the array was detached or shrunk while the work ran.
  Status finish();

 private:
  std::string name_;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  std::shared_ptr<HostBlock> held_;      // addon memory or the snapshot the work uses
  Napi::ObjectReference copyBackTo_;     // the typed array a snapshot output is copied into
};

// host memory the addon exports: hostAlloc(bytes, zeroed = true) -> ArrayBuffer | null, hostRelease(arrayBuffer) ->
// boolean, hostOwns(arrayBuffer) -> boolean, hostCounts() -> { blocks, bytes, lentBytes }.
void exportHostMemory(Napi::Env env, Napi::Object exports);

}  // namespace gemmkit
