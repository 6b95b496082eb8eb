#include "gpu_config.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "tile_schedule.h"

namespace gemmkit {

namespace {

bool isPowerOfTwo(int v) { return v > 0 && (v & (v - 1)) == 0; }

int inputBytes(GpuInput t) { return t == GpuInput::F32 ? 4 : 2; }

// Skinny kernels read 16 bytes along the contiguous dimension per load.
int skinnyVector(const GpuConfig& c) { return 16 / inputBytes(c.input); }

}  // namespace

const char* gpuArchName(GpuArch a) {
  switch (a) {
    case GpuArch::Sm80: return "sm80";
    case GpuArch::Sm90a: return "sm90a";
    case GpuArch::Gfx90a: return "gfx90a";
    case GpuArch::Gfx942: return "gfx942";
  }
  return "?";
}

const char* gpuFamilyName(GpuFamily f) {
  switch (f) {
    case GpuFamily::Simt: return "simt";
    case GpuFamily::Mma: return "mma";
    case GpuFamily::Wgmma: return "wgmma";
    case GpuFamily::Mfma: return "mfma";
    case GpuFamily::Skinny: return "skinny";
  }
  return "?";
}

const char* gpuInputName(GpuInput t) {
  switch (t) {
    case GpuInput::Any: return "any";
    case GpuInput::F32: return "f32";
    case GpuInput::F16: return "f16";
    case GpuInput::BF16: return "bf16";
  }
  return "?";
}

int64_t gpuArchSharedLimit(GpuArch a) {
  switch (a) {
    case GpuArch::Sm80: return 166912;   // 163 KiB: A100's opt-in maximum per block (8.6/8.9 parts have less)
    case GpuArch::Sm90a: return 232448;  // 227 KiB: H100/H200
    case GpuArch::Gfx90a:
    case GpuArch::Gfx942: return 65536;  // 64 KiB of LDS per workgroup
  }
  return 0;
}

std::string GpuConfig::name() const {
  std::string s = std::string(isCuda() ? "cuda." : "hip.") + gpuArchName(arch) + "." + gpuInputName(input) + "." +
                  gpuFamilyName(family) + "." + std::to_string(tileM) + "x" + std::to_string(tileN) + "x" +
                  std::to_string(tileK) + ".w" + std::to_string(warps) + ".s" + std::to_string(stages);
  if (splitK != 1) s += ".sk" + std::to_string(splitK);
  if (group != 1) s += ".g" + std::to_string(group);
  return s;
}

std::string GpuConfig::instantiationKey() const {
  GpuConfig c = *this;
  c.splitK = 1;
  c.group = 1;
  return c.name();
}

WarpGrid warpGrid(const GpuConfig& c) {
  WarpGridShape s = warpGridFor(c.warps, c.tileM, c.tileN);
  return WarpGrid{s.warpsM, s.warpsN};
}

int64_t GpuConfig::sharedBytes() const {
  switch (family) {
    case GpuFamily::Simt: {
      // The K-major tiles, or the epilogue's staging of at most 4096 accumulators, whichever is larger.
      const int64_t tiles = int64_t(tileK) * (tileM + 4) + int64_t(tileK) * (tileN + 4);
      const int64_t stage = int64_t(tileM) * tileN < 4096 ? int64_t(tileM) * tileN : 4096;
      return 4 * (tiles > stage ? tiles : stage);
    }
    case GpuFamily::Mma:
    case GpuFamily::Wgmma: return int64_t(stages) * (tileM + tileN) * tileK * 2;
    case GpuFamily::Mfma: return int64_t(2) * (tileM + tileN) * (tileK + 4) * 2;
    case GpuFamily::Skinny: return int64_t(warps) * tileM * tileN * 4;
  }
  return 0;
}

int GpuConfig::estimatedRegisters() const {
  const int t = threads();
  if (t <= 0) return 0;
  WarpGrid g = warpGrid(*this);
  const int wm = tileM / g.warpsM, wn = tileN / g.warpsN;
  switch (family) {
    case GpuFamily::Simt: {
      const int perThread = tileM * tileN / t;  // register block: (BM*BN/threads) accumulators
      return perThread + perThread / 4 + 4 + 32;
    }
    case GpuFamily::Mma:
    case GpuFamily::Wgmma:
      return wm * wn / 32 + (wm / 16) * 4 + (wn / 8) * 2 + 40;
    case GpuFamily::Mfma: {
      const int accumulators = wm * wn / 64;
      const int prefetch = (tileM + tileN) * tileK / 8 / t * 4;  // 16-byte vectors in flight
      return accumulators + prefetch + (wm / 32 + wn / 32) * 2 + 40;
    }
    case GpuFamily::Skinny:
      return tileM * tileN + tileN * 4 + 4 + 30;
  }
  return 0;
}

Status GpuConfig::valid() const {
  const std::string n = name();
  auto bad = [&](const std::string& why) { return outOfRange("config " + n + ": " + why); };
  const bool amd = !isCuda();
  if (tileM < 1 || tileN < 1 || tileK < 1 || tileM > 1024 || tileN > 1024 || tileK > 8192) {
    return bad("tile sizes must be in [1, 1024] (K in [1, 8192])");
  }
  if (!isPowerOfTwo(warps) || warps > 16 || threads() > 1024) return bad("warps must be 1, 2, 4, 8 or 16 and at most 1024 threads");
  if (splitK < 1 || splitK > 64) return bad("split-K must be in [1, 64]");
  if (group < 1 || group > 64) return bad("rasterisation group must be in [1, 64]");
  const int t = threads();
  switch (family) {
    case GpuFamily::Simt: {
      if (input != GpuInput::Any) return bad("simt kernels take any input dtype: write 'any'");
      if (stages != 1) return bad("simt kernels have one stage (.s1)");
      if (tileN % 4 != 0 || t % (tileN / 4) != 0) return bad("BN must be a multiple of 4 and BN/4 must divide the threads");
      const int threadsM = t / (tileN / 4);
      if (threadsM < 1 || tileM % threadsM != 0 || tileM / threadsM > 16) {
        return bad("BM must split into at most 16 rows per thread over " + std::to_string(threadsM) + " thread rows");
      }
      if (tileK % 4 != 0 || tileM % 4 != 0 || (tileM * tileK / 4) % t != 0 || (tileN * tileK / 4) % t != 0) {
        return bad("BM, BK must be multiples of 4 and the tiles' quads (BM*BK/4, BN*BK/4) multiples of the threads");
      }
      const int rowsPerThread = tileM / threadsM;
      if (tileM * tileN > 4096 && (4096 % (threadsM * tileN) != 0 || rowsPerThread % (4096 / (threadsM * tileN)) != 0)) {
        return bad("the epilogue stages 4096 accumulators per pass, which must be whole rows of every thread");
      }
      if (sharedBytes() > 48 * 1024) return bad("simt tiles use static shared memory: at most 48 KiB");
      break;
    }
    case GpuFamily::Mma:
    case GpuFamily::Wgmma: {
      if (!isCuda()) return bad(std::string(gpuFamilyName(family)) + " kernels are NVIDIA-only");
      if (input != GpuInput::F16 && input != GpuInput::BF16) return bad("tensor-core kernels take f16 or bf16 inputs");
      if (family == GpuFamily::Wgmma) {
        if (arch != GpuArch::Sm90a) return bad("wgmma needs sm90a");
        return unsupported("config " + n + ": the sm_90a wgmma/TMA family is reserved for a later version; this build has no wgmma kernels");
      }
      if (!isPowerOfTwo(tileM) || !isPowerOfTwo(tileN) || tileM < 16 || tileN < 16) return bad("BM and BN must be powers of two >= 16");
      if (tileK != 16 && tileK != 32 && tileK != 64) return bad("BK must be 16, 32 or 64");
      if (stages < 2 || stages > 8) return bad("mma kernels pipeline 2 to 8 stages");
      WarpGrid g = warpGrid(*this);
      if ((tileM / g.warpsM) % 16 != 0 || (tileN / g.warpsN) % 16 != 0) {
        return bad("each warp's tile (" + std::to_string(tileM / g.warpsM) + "x" + std::to_string(tileN / g.warpsN) +
                   ") must be a multiple of 16x16");
      }
      if ((tileM * tileK / 8) % t != 0 || (tileN * tileK / 8) % t != 0) return bad("16-byte chunks of a stage must split evenly over the threads");
      break;
    }
    case GpuFamily::Mfma: {
      if (isCuda()) return bad("mfma kernels are AMD-only");
      if (input != GpuInput::F16 && input != GpuInput::BF16) return bad("matrix-core kernels take f16 or bf16 inputs");
      if (stages != 2) return bad("mfma kernels double-buffer LDS (.s2)");
      if (!isPowerOfTwo(tileM) || !isPowerOfTwo(tileN) || tileM < 32 || tileN < 32) return bad("BM and BN must be powers of two >= 32");
      if (tileK != 16 && tileK != 32 && tileK != 64) return bad("BK must be 16, 32 or 64");
      WarpGrid g = warpGrid(*this);
      if ((tileM / g.warpsM) % 32 != 0 || (tileN / g.warpsN) % 32 != 0) return bad("each wave's tile must be a multiple of 32x32");
      if ((tileM / g.warpsM) * (tileN / g.warpsN) / 64 > 256) return bad("more than 256 accumulators per lane");
      if ((tileM * tileK / 8) % t != 0 || (tileN * tileK / 8) % t != 0) return bad("16-byte vectors of a tile must split evenly over the threads");
      break;
    }
    case GpuFamily::Skinny: {
      if (input == GpuInput::Any) return bad("skinny kernels are specialised for f32, f16 or bf16 inputs");
      if (stages != 1) return bad("skinny kernels have one stage (.s1)");
      if (group != 1) return bad("skinny kernels have no rasterisation (.g)");
      if (tileM > 16) return bad("skinny kernels run M <= 16");
      if (!isPowerOfTwo(tileN) || tileN > 16) return bad("skinny BN must be a power of two <= 16");
      const int step = t * skinnyVector(*this);
      if (tileK % step != 0 || !isPowerOfTwo(tileK / step) || tileK / step > 4) {
        return bad("skinny BK must be 1, 2 or 4 times threads x vector = " + std::to_string(step));
      }
      if (tileM * tileN > 128) return bad("skinny kernels keep at most 128 accumulators per thread (BM*BN)");
      break;
    }
  }
  if (sharedBytes() > gpuArchSharedLimit(arch)) {
    return bad("needs " + std::to_string(sharedBytes()) + " bytes of " + (amd ? "LDS" : "shared memory") + ", more than " +
               gpuArchName(arch) + "'s " + std::to_string(gpuArchSharedLimit(arch)));
  }
  const int regs = estimatedRegisters();
  if (amd ? regs > 512 : (regs > 255 || int64_t(regs) * t > 65536)) {
    return bad("needs about " + std::to_string(regs) + " registers per thread, more than " + gpuArchName(arch) + " has");
  }
  return Status::ok();
}

namespace {

bool parseNumber(const char* s, size_t len, int* out) {
  if (len == 0 || len > 6 || (s[0] == '0' && len > 1)) return false;
  int v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

bool parsePrefixed(const std::string& part, const char* prefix, int* out) {
  size_t n = std::strlen(prefix);
  return part.size() > n && part.compare(0, n, prefix) == 0 && parseNumber(part.c_str() + n, part.size() - n, out);
}

bool parseTile(const std::string& part, int* m, int* n, int* k) {
  size_t x1 = part.find('x');
  size_t x2 = x1 == std::string::npos ? x1 : part.find('x', x1 + 1);
  if (x2 == std::string::npos) return false;
  return parseNumber(part.c_str(), x1, m) && parseNumber(part.c_str() + x1 + 1, x2 - x1 - 1, n) &&
         parseNumber(part.c_str() + x2 + 1, part.size() - x2 - 1, k);
}

}  // namespace

Status GpuConfig::parse(const std::string& name, GpuConfig* out) {
  const std::string form = "<cuda|hip>.<arch>.<any|f32|f16|bf16>.<family>.<BM>x<BN>x<BK>.w<N>.s<N>[.sk<N>][.g<N>]";
  auto bad = [&](const std::string& why) { return outOfRange("'" + name + "' is not a GPU config name: " + why + " (expected " + form + ")"); };
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (parts.size() < 7 || parts.size() > 9) return bad("wrong number of fields");
  GpuConfig c;
  static const GpuArch arches[] = {GpuArch::Sm80, GpuArch::Sm90a, GpuArch::Gfx90a, GpuArch::Gfx942};
  bool found = false;
  for (GpuArch a : arches) {
    if (parts[1] == gpuArchName(a)) { c.arch = a; found = true; }
  }
  if (!found) return bad("unknown architecture '" + parts[1] + "' (sm80, sm90a, gfx90a, gfx942)");
  if (parts[0] != (c.isCuda() ? "cuda" : "hip")) return bad("architecture " + parts[1] + " belongs to " + (c.isCuda() ? "cuda" : "hip"));
  static const GpuInput inputs[] = {GpuInput::Any, GpuInput::F32, GpuInput::F16, GpuInput::BF16};
  found = false;
  for (GpuInput t : inputs) {
    if (parts[2] == gpuInputName(t)) { c.input = t; found = true; }
  }
  if (!found) return bad("unknown input type '" + parts[2] + "'");
  static const GpuFamily families[] = {GpuFamily::Simt, GpuFamily::Mma, GpuFamily::Wgmma, GpuFamily::Mfma, GpuFamily::Skinny};
  found = false;
  for (GpuFamily f : families) {
    if (parts[3] == gpuFamilyName(f)) { c.family = f; found = true; }
  }
  if (!found) return bad("unknown kernel family '" + parts[3] + "' (simt, mma, wgmma, mfma, skinny)");
  if (!parseTile(parts[4], &c.tileM, &c.tileN, &c.tileK)) return bad("tile '" + parts[4] + "' is not <BM>x<BN>x<BK>");
  if (!parsePrefixed(parts[5], "w", &c.warps)) return bad("'" + parts[5] + "' is not w<warps>");
  if (!parsePrefixed(parts[6], "s", &c.stages)) return bad("'" + parts[6] + "' is not s<stages>");
  size_t i = 7;
  if (i < parts.size() && parts[i].compare(0, 2, "sk") == 0) {
    if (!parsePrefixed(parts[i], "sk", &c.splitK)) return bad("'" + parts[i] + "' is not sk<split-K>");
    i++;
  }
  if (i < parts.size() && parts[i].compare(0, 1, "g") == 0) {
    if (!parsePrefixed(parts[i], "g", &c.group)) return bad("'" + parts[i] + "' is not g<group>");
    i++;
  }
  if (i != parts.size()) return bad("unexpected field '" + parts[i] + "'");
  if (c.name() != name) return bad("not canonical; the same configuration is named " + c.name());
  Status s = c.valid();
  if (!s.isOk()) return s;
  *out = c;
  return Status::ok();
}

bool gpuArchRunsOn(GpuArch a, const std::string& deviceArch) {
  const std::string base = deviceArch.substr(0, deviceArch.find(':'));
  switch (a) {
    case GpuArch::Sm80:
    case GpuArch::Sm90a: {
      if (base.compare(0, 3, "sm_") != 0) return false;
      int cc = std::atoi(base.c_str() + 3);
      return a == GpuArch::Sm80 ? cc >= 80 : cc == 90;
    }
    case GpuArch::Gfx90a: return base == "gfx90a";
    case GpuArch::Gfx942: return base == "gfx942";
  }
  return false;
}

Status gpuConfigFits(const GpuConfig& c, const Problem& p) {
  const std::string n = c.name();
  const int64_t intMax = 2147483647;
  if (p.m >= intMax || p.n >= intMax || p.k >= intMax || p.lda >= intMax || p.ldb >= intMax || p.ldc >= intMax) {
    return unsupported("config " + n + ": GPU kernels take M, N, K and leading dimensions below 2^31, not " + p.describe());
  }
  if (!p.packedB.empty()) {
    return unsupported("config " + n + ": prepacked weights (layout " + p.packedB + ") are CPU-only; GPU kernels read B as stored");
  }
  if (c.family == GpuFamily::Simt) return Status::ok();
  DType want = c.input == GpuInput::F32 ? DType::F32 : c.input == GpuInput::F16 ? DType::F16 : DType::BF16;
  if (p.dtypeA != want || p.dtypeB != want) {
    return unsupported("config " + n + " multiplies " + gpuInputName(c.input) + " by " + gpuInputName(c.input) + "; the problem is " +
                       p.describe());
  }
  if (c.family == GpuFamily::Skinny) {
    if (p.m > c.tileM) {
      return unsupported("config " + n + " runs M <= " + std::to_string(c.tileM) + "; the problem has M = " + std::to_string(p.m));
    }
    // The kernel addresses one batch item of A with 32-bit offsets.
    if (p.m > 0 && p.k > 0 && (p.rowsA() - 1) * p.lda + p.colsA() >= intMax) {
      return unsupported("config " + n + " takes A of fewer than 2^31 elements per batch item; the problem is " + p.describe());
    }
  }
  if (c.family == GpuFamily::Wgmma) return c.valid();
  return Status::ok();
}

int64_t gpuWorkspaceBytes(const GpuConfig& c, const Problem& p) {
  if (c.splitK <= 1) return 0;
  // Batch items one launch covers (gridDim.z limit): tiled kernels put the splits in z as well.
  const int64_t perLaunch = c.family == GpuFamily::Skinny ? 65535 : 65535 / c.splitK;
  const int64_t batch = p.batch < perLaunch ? p.batch : perLaunch;
  return batch * c.splitK * p.m * p.n * 4;
}

}  // namespace gemmkit
