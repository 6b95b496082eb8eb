#include <mutex>

#include "backend.h"

namespace gemmkit {

namespace {
std::mutex registryMutex;
std::vector<std::unique_ptr<Backend>>& registry() {
  static std::vector<std::unique_ptr<Backend>> backends;
  return backends;
}
}  // namespace

void registerBackend(std::unique_ptr<Backend> backend) {
  std::lock_guard<std::mutex> lock(registryMutex);
  registry().push_back(std::move(backend));
}

const Backend* findBackend(const std::string& name) {
  std::lock_guard<std::mutex> lock(registryMutex);
  for (auto& b : registry()) {
    if (name == b->name()) return b.get();
  }
  return nullptr;
}

std::vector<const Backend*> allBackends() {
  std::lock_guard<std::mutex> lock(registryMutex);
  std::vector<const Backend*> out;
  for (auto& b : registry()) out.push_back(b.get());
  return out;
}

}  // namespace gemmkit
