#include "cpu_config.h"

#include <cstdlib>
#include <vector>

#include "gemv.h"
#include "micro_kernels.h"

namespace gemmkit {

std::string CpuConfig::name() const {
  if (isGemv()) {
    return "cpu." + kernel + ".kc" + std::to_string(kc) + ".ks" + std::to_string(ks) + ".t" + std::to_string(threads);
  }
  return "cpu." + kernel + ".mc" + std::to_string(mc) + ".kc" + std::to_string(kc) + ".nc" + std::to_string(nc) +
         ".t" + std::to_string(threads);
}

Status CpuConfig::valid() const {
  if (isGemv()) {
    if (!findGemvKernel(kernel)) return outOfRange("unknown GEMV kernel '" + kernel + "' in config " + name());
    if (kc < 32 || kc > 65536 || kc % 32 != 0) return outOfRange("config " + name() + ": kc must be a multiple of 32 in [32, 65536]");
    if (ks < 1 || ks > 64) return outOfRange("config " + name() + ": ks must be in [1, 64]");
    if (threads < 1 || threads > 1024) return outOfRange("config " + name() + ": threads must be in [1, 1024]");
    return Status::ok();
  }
  const MicroKernel* k = findMicroKernel(kernel);
  if (!k) return outOfRange("unknown micro-kernel '" + kernel + "' in config " + name());
  if (mc < k->mr || mc > 8192 || mc % k->mr != 0) {
    return outOfRange("config " + name() + ": mc must be a multiple of MR=" + std::to_string(k->mr) + " in [MR, 8192]");
  }
  if (kc < 1 || kc > 8192 || kc % k->kAlign != 0) {
    return outOfRange("config " + name() + ": kc must be a multiple of " + std::to_string(k->kAlign) + " in [1, 8192]");
  }
  if (nc < k->nr || nc > 65536 || nc % k->nr != 0) {
    return outOfRange("config " + name() + ": nc must be a multiple of NR=" + std::to_string(k->nr) + " in [NR, 65536]");
  }
  if (threads < 1 || threads > 1024) return outOfRange("config " + name() + ": threads must be in [1, 1024]");
  return Status::ok();
}

namespace {

bool parseField(const std::string& part, const char* prefix, int* out) {
  size_t n = std::char_traits<char>::length(prefix);
  if (part.size() <= n || part.compare(0, n, prefix) != 0) return false;
  const char* digits = part.c_str() + n;
  char* end = nullptr;
  long v = std::strtol(digits, &end, 10);
  if (*end != 0 || v < 0 || v > 1 << 20 || digits[0] == '-' || digits[0] == '+') return false;
  *out = int(v);
  return true;
}

}  // namespace

Status CpuConfig::parse(const std::string& name, CpuConfig* out) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (parts.size() >= 2 && parts[0] == "cpu" && parts[1] == "gemv") {
    // cpu . gemv . <isa> . kc . ks . t
    CpuConfig g;
    if (parts.size() != 6 || !parseField(parts[3], "kc", &g.kc) || !parseField(parts[4], "ks", &g.ks) ||
        !parseField(parts[5], "t", &g.threads)) {
      return outOfRange("'" + name + "' is not a cpu GEMV config name (expected cpu.gemv.<isa>.kc<N>.ks<N>.t<N>)");
    }
    g.kernel = parts[1] + "." + parts[2];
    Status s = g.valid();
    if (!s.isOk()) return s;
    *out = g;
    return Status::ok();
  }
  // cpu . <isa> . <dtype> . <MRxNR> . mc . kc . nc . t
  if (parts.size() < 6 || parts[0] != "cpu" || parts[1] == "gemv") {
    return outOfRange("'" + name + "' is not a cpu config name (expected cpu.<kernel>.mc<N>.kc<N>.nc<N>.t<N>)");
  }
  CpuConfig c;
  size_t n = parts.size();
  if (!parseField(parts[n - 4], "mc", &c.mc) || !parseField(parts[n - 3], "kc", &c.kc) ||
      !parseField(parts[n - 2], "nc", &c.nc) || !parseField(parts[n - 1], "t", &c.threads)) {
    return outOfRange("'" + name + "' is not a cpu config name (expected cpu.<kernel>.mc<N>.kc<N>.nc<N>.t<N>)");
  }
  for (size_t i = 1; i + 4 < n; i++) c.kernel += (i > 1 ? "." : "") + parts[i];
  Status s = c.valid();
  if (!s.isOk()) return s;
  *out = c;
  return Status::ok();
}

}  // namespace gemmkit
