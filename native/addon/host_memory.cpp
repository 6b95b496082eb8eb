#include "host_memory.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "problem_args.h"

namespace gemmkit {

namespace {

// Every live block by the address of its memory. Leaked on purpose: blocks may outlive static
// destructors at exit.
struct Registry {
  std::mutex mutex;
  std::unordered_map<const void*, std::weak_ptr<HostBlock>> blocks;
};
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

std::atomic<int64_t> liveBlocks{0}, liveBytes{0}, lentBytes{0};

// Freed blocks kept for the next allocation of the same size. Node frees addon memory only when the
// event loop turns after a collection, and V8 collects about every 64 MiB of new external memory, so
// blocks come back in batches of that size; reusing them spares the allocations until the next batch
// fresh pages (a page fault each, taken on the GEMM's threads). Bounded by that batch size, and only for
// sizes worth it.
struct Recycler {
  static constexpr size_t kMinBytes = 64 << 10, kMaxBytes = 64 << 20, kMaxBlocks = 64;
  std::mutex mutex;
  std::vector<std::pair<size_t, void*>> blocks;  // oldest first
  size_t bytes = 0;

  void* take(size_t size) {
    if (size < kMinBytes) return nullptr;
    std::lock_guard<std::mutex> lock(mutex);
    for (size_t i = blocks.size(); i-- > 0;) {
      if (blocks[i].first == size) {
        void* p = blocks[i].second;
        blocks.erase(blocks.begin() + long(i));
        bytes -= size;
        return p;
      }
    }
    return nullptr;
  }

  // Keeps `p` (making room by freeing the oldest), or frees it when it is not worth keeping.
  void give(void* p, size_t size) {
    if (size < kMinBytes || size > kMaxBytes / 4) {
      std::free(p);
      return;
    }
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex);
      while (!blocks.empty() && (bytes + size > kMaxBytes || blocks.size() >= kMaxBlocks)) {
        evicted.push_back(blocks.front().second);
        bytes -= blocks.front().first;
        blocks.erase(blocks.begin());
      }
      blocks.emplace_back(size, p);
      bytes += size;
    }
    for (void* e : evicted) std::free(e);
  }
};
Recycler& recycler() {
  static Recycler* r = new Recycler();
  return *r;
}

// lend() asks Node for an external ArrayBuffer; when Node refuses one (too large) it runs the finaliser
// before it returns. The share being lent on this thread is then left for lend() to delete.
thread_local const void* shareBeingLent = nullptr;

size_t elementSize(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: return 1;
    case napi_int16_array:
    case napi_uint16_array: return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: return 4;
    default: return 8;
  }
}

[[noreturn]] void throwOutOfMemory(const Napi::Env& env, const std::string& what, size_t bytes) {
  Napi::Error e = Napi::Error::New(env, "gemmkit native: out of memory for " + what + " (" + std::to_string(bytes) + " bytes)");
  e.Set("code", Napi::String::New(env, "GEMMKIT_OUT_OF_MEMORY"));
  throw e;
}

}  // namespace

struct HostBlock::JsShare {
  std::shared_ptr<HostBlock> block;  // null once release() dropped it
};

std::shared_ptr<HostBlock> HostBlock::allocate(size_t bytes, bool zeroed) {
  if (bytes == 0) return nullptr;
  void* data = recycler().take(bytes);
  if (data && zeroed) std::memset(data, 0, bytes);
  if (!data) data = zeroed ? std::calloc(1, bytes) : std::malloc(bytes);
  if (!data) return nullptr;
  std::shared_ptr<HostBlock> block(new HostBlock(data, bytes));
  liveBlocks++;
  liveBytes += int64_t(bytes);
  return block;
}

std::shared_ptr<HostBlock> HostBlock::find(const void* data) {
  if (!data) return nullptr;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.blocks.find(data);
  return it == r.blocks.end() ? nullptr : it->second.lock();
}

HostBlock::~HostBlock() {
  // Unregistered before the memory goes, so a new block at the same address is never mistaken for this one.
  if (registered_) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.blocks.find(data_);
    if (it != r.blocks.end() && it->second.expired()) r.blocks.erase(it);
  }
  recycler().give(data_, bytes_);
  liveBlocks--;
  liveBytes -= int64_t(bytes_);
}

void HostBlock::finalizeShare(napi_env env, void* data, void* hint) {
  JsShare* share = static_cast<JsShare*>(hint);
  if (share == shareBeingLent) return;
  if (share->block) {
    share->block->jsShare_ = nullptr;
    lentBytes -= int64_t(share->block->bytes());
  }
  delete share;
}

Napi::Value HostBlock::lend(Napi::Env env, std::shared_ptr<HostBlock> block) {
  if (!block->registered_) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.blocks[block->data()] = block;
    block->registered_ = true;
  }
  JsShare* share = new JsShare{block};
  shareBeingLent = share;
  napi_value ab = nullptr;
  napi_status status = napi_create_external_arraybuffer(env, block->data(), block->bytes(), finalizeShare, share, &ab);
  shareBeingLent = nullptr;
  if (status != napi_ok) {
    // Refused (too large for an external buffer, or external buffers not allowed): no share was made.
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    delete share;
    return Napi::Value();
  }
  block->jsShare_ = share;
  lentBytes += int64_t(block->bytes());
  return Napi::Value(env, ab);
}

bool HostBlock::release(Napi::Env env, const Napi::Value& arrayBuffer) {
  if (!arrayBuffer.IsArrayBuffer()) return false;
  void* data = nullptr;
  size_t length = 0;
  if (napi_get_arraybuffer_info(env, arrayBuffer, &data, &length) != napi_ok) return false;
  std::shared_ptr<HostBlock> block = find(data);
  if (!block || !block->jsShare_) return false;
  if (napi_detach_arraybuffer(env, arrayBuffer) != napi_ok) return false;
  JsShare* share = block->jsShare_;
  block->jsShare_ = nullptr;
  lentBytes -= int64_t(block->bytes());
  share->block.reset();  // the finaliser Node runs later deletes the share itself
  return true;
}

HostBlock::Counts HostBlock::counts() {
  Counts c;
  c.blocks = liveBlocks.load();
  c.bytes = liveBytes.load();
  c.lentBytes = lentBytes.load();
  return c;
}

TypedView typedView(const Napi::Env& env, const Napi::TypedArray& ta) {
  TypedView v;
  napi_value ab = nullptr;
  void* data = nullptr;
  napi_status s = napi_get_typedarray_info(env, ta, &v.type, &v.length, &data, &ab, &v.byteOffset);
  if (s != napi_ok) throw Napi::Error::New(env, "gemmkit native: cannot read a typed array");
  v.elementBytes = elementSize(v.type);
  v.arrayBuffer = Napi::Value(env, ab);
  v.data = v.length == 0 ? nullptr : data;
  return v;
}

HostOperand::HostOperand(const Napi::Env& env, std::string name, const Napi::TypedArray& ta, const TypedView& view,
                         size_t bytes, HostLifetime lifetime, bool output, bool readBack)
    : name_(std::move(name)), bytes_(bytes) {
  if (bytes == 0) return;
  if (lifetime == HostLifetime::Call) {
    data_ = view.data;
    return;
  }
  // The block that starts where the view's buffer starts, when the addon owns it and the view lies inside.
  char* base = static_cast<char*>(view.data) - view.byteOffset;
  std::shared_ptr<HostBlock> block = view.arrayBuffer.IsArrayBuffer() ? HostBlock::find(base) : nullptr;
  if (block && view.byteOffset + bytes <= block->bytes()) {
    held_ = std::move(block);
    data_ = view.data;
    return;
  }
  held_ = HostBlock::allocate(bytes, false);
  if (!held_) throwOutOfMemory(env, "a copy of " + name_ + " for the call", bytes);
  if (!output || readBack) std::memcpy(held_->data(), view.data, bytes);
  if (output) copyBackTo_ = Napi::Persistent(ta.As<Napi::Object>());
  data_ = held_->data();
}

Status HostOperand::finish() {
  if (copyBackTo_.IsEmpty()) return Status::ok();
  Napi::Env env = copyBackTo_.Env();
  TypedView now = typedView(env, copyBackTo_.Value().As<Napi::TypedArray>());
  const size_t have = now.length * now.elementBytes;
  if (have < bytes_) {
    // c is matmul's `out`; the other outputs are the reference's Float64Arrays, named as given.
    const std::string what = "gemmkit: the output " + name_ + (name_ == "c" ? " (matmul's out)" : "");
    const std::string result = "the result (" + std::to_string(bytes_) + " bytes) was dropped";
    bool detached = false;
    if (now.arrayBuffer.IsArrayBuffer()) napi_is_detached_arraybuffer(env, now.arrayBuffer, &detached);
    if (detached) return invalidArgument(what + " was detached while the call ran; " + result);
    return outOfRange(what + " was shrunk to " + std::to_string(have) + " bytes while the call ran; " + result);
  }
  std::memcpy(now.data, held_->data(), bytes_);
  return Status::ok();
}

namespace {

Napi::Value hostAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t bytes = nonNegativeInteger(env, info[0], "bytes");
  if (bytes == 0) return env.Null();
  const bool zeroed = !(info[1].IsBoolean() && !info[1].As<Napi::Boolean>().Value());
  std::shared_ptr<HostBlock> block = HostBlock::allocate(size_t(bytes), zeroed);
  if (!block) throwOutOfMemory(env, "a tensor", size_t(bytes));
  Napi::Value ab = HostBlock::lend(env, std::move(block));
  return ab.IsEmpty() ? env.Null() : ab;
}

Napi::Value hostRelease(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), HostBlock::release(info.Env(), info[0]));
}

Napi::Value hostOwns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) return Napi::Boolean::New(env, false);
  void* data = nullptr;
  size_t length = 0;
  if (napi_get_arraybuffer_info(env, info[0], &data, &length) != napi_ok) return Napi::Boolean::New(env, false);
  std::shared_ptr<HostBlock> block = HostBlock::find(data);
  return Napi::Boolean::New(env, block != nullptr && block->bytes() == length);
}

Napi::Value hostCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HostBlock::Counts c = HostBlock::counts();
  Napi::Object o = Napi::Object::New(env);
  o.Set("blocks", double(c.blocks));
  o.Set("bytes", double(c.bytes));
  o.Set("lentBytes", double(c.lentBytes));
  return o;
}

}  // namespace

void exportHostMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("hostAlloc", Napi::Function::New(env, hostAlloc, "hostAlloc"));
  exports.Set("hostRelease", Napi::Function::New(env, hostRelease, "hostRelease"));
  exports.Set("hostOwns", Napi::Function::New(env, hostOwns, "hostOwns"));
  exports.Set("hostCounts", Napi::Function::New(env, hostCounts, "hostCounts"));
}

}  // namespace gemmkit
