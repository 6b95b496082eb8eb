// Wall-clock helpers shared by every backend's time() and the bench drivers.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace gemmkit {

inline double nowMicroseconds() {
  using namespace std::chrono;
  return duration<double, std::micro>(steady_clock::now().time_since_epoch()).count();
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

}  // namespace gemmkit
