// Errors are values: every engine entry point returns a Status that the addon turns into a JS error.
#pragma once

#include <string>
#include <utility>

namespace gemmkit {

enum class StatusCode { Ok = 0, InvalidArgument, OutOfRange, Unsupported, OutOfMemory, Internal };

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return Status(); }
  bool isOk() const { return code_ == StatusCode::Ok; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::Ok;
  std::string message_;
};

inline Status invalidArgument(std::string m) { return Status(StatusCode::InvalidArgument, std::move(m)); }
inline Status outOfRange(std::string m) { return Status(StatusCode::OutOfRange, std::move(m)); }
inline Status unsupported(std::string m) { return Status(StatusCode::Unsupported, std::move(m)); }

}  // namespace gemmkit
