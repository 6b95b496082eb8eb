// Grow-only, 64-byte aligned scratch memory owned by one thread and reused across calls, so the hot
// paths neither allocate nor fault in fresh pages on every GEMM. Declare instances thread_local.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace gemmkit {

class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { std::free(data_); }
  // At least `bytes` bytes (contents unspecified); throws std::bad_alloc when memory runs out.
  void* get(size_t bytes) {
    if (bytes > capacity_) {
      std::free(data_);
      size_t rounded = (bytes + 63) & ~size_t(63);
      data_ = std::aligned_alloc(64, rounded);
      if (!data_) {
        capacity_ = 0;
        throw std::bad_alloc();
      }
      capacity_ = rounded;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace gemmkit
