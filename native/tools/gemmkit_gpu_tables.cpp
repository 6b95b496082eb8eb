// gemmkit-gpu-tables: the GPU kernel tables and their host-side logic, on any CPU (no GPU toolkit).
//   gemmkit-gpu-tables list       one line per table row: arch, row, name, kernel key, threads, shared
//                                 bytes, and whether the row is the first of its kernel (what
//                                 native/gpu/check-compile.sh compiles)
//   gemmkit-gpu-tables selftest   checks config names (round trip, malformed and non-canonical names),
//                                 valid() limits, rasterisation, split-K ranges, the shared-memory
//                                 swizzle, warp grids, architecture matching and problem fit.
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "../gpu/config_tables.h"
#include "../gpu/gpu_config.h"
#include "../gpu/tile_schedule.h"
#include "check_support.h"

using namespace gemmkit;

namespace {

int list() {
  std::set<std::string> seen;
  for (const GpuConfigTable& t : kGpuConfigTables) {
    for (size_t i = 0; i < t.size; i++) {
      const GpuConfig& c = t.configs[i];
      const std::string key = c.instantiationKey();
      const bool first = seen.insert(key).second;
      std::printf("%s\t%zu\t%s\t%s\t%d\t%lld\t%s\n", gpuArchName(t.arch), i, c.name().c_str(), key.c_str(), c.threads(),
                  (long long)c.sharedBytes(), first ? "first" : "same");
    }
  }
  return 0;
}

void checkTables() {
  std::set<std::string> names;
  for (const GpuConfigTable& t : kGpuConfigTables) {
    expect(t.size > 0, std::string("table ") + gpuArchName(t.arch) + " is empty");
    for (size_t i = 0; i < t.size; i++) {
      const GpuConfig& c = t.configs[i];
      const std::string n = c.name();
      expect(c.arch == t.arch, n + " sits in the " + gpuArchName(t.arch) + " table");
      Status v = c.valid();
      expect(v.isOk(), n + " is valid: " + v.message());
      GpuConfig back;
      Status p = GpuConfig::parse(n, &back);
      expect(p.isOk() && back.name() == n, n + " parses back to itself: " + p.message());
      expect(names.insert(n).second, n + " appears once");
    }
  }
}

void checkNames() {
  GpuConfig c;
  const char* good[] = {"cuda.sm80.bf16.mma.128x128x32.w4.s3.g8", "cuda.sm80.bf16.mma.128x128x32.w4.s3.sk2.g8",
                        "hip.gfx942.f16.mfma.128x128x32.w4.s2", "cuda.sm80.any.simt.64x64x16.w4.s1.sk4",
                        "hip.gfx90a.bf16.skinny.16x4x2048.w4.s1.sk4"};
  for (const char* n : good) {
    Status s = GpuConfig::parse(n, &c);
    expect(s.isOk() && c.name() == n, std::string(n) + " parses: " + s.message());
  }
  Status s = GpuConfig::parse("cuda.sm80.bf16.mma.128x256x32.w8.s3.sk2.g4", &c);
  expect(s.isOk() && c.family == GpuFamily::Mma && c.tileM == 128 && c.tileN == 256 && c.tileK == 32 && c.warps == 8 &&
             c.stages == 3 && c.splitK == 2 && c.group == 4 && c.input == GpuInput::BF16 && c.arch == GpuArch::Sm80,
         "fields of cuda.sm80.bf16.mma.128x256x32.w8.s3.sk2.g4");
  struct Bad {
    const char* name;
    const char* because;  // a piece of the expected message
  };
  const Bad bad[] = {
      {"", "wrong number of fields"},
      {"cuda.sm80.bf16.mma.128x128x32.w4", "wrong number of fields"},
      {"cpu.sm80.bf16.mma.128x128x32.w4.s3", "belongs to cuda"},
      {"hip.sm80.bf16.mma.128x128x32.w4.s3", "belongs to cuda"},
      {"cuda.gfx942.bf16.mfma.128x128x32.w4.s2", "belongs to hip"},
      {"cuda.sm75.bf16.mma.128x128x32.w4.s3", "unknown architecture"},
      {"cuda.sm80.fp8.mma.128x128x32.w4.s3", "unknown input type"},
      {"cuda.sm80.bf16.tensor.128x128x32.w4.s3", "unknown kernel family"},
      {"cuda.sm80.bf16.mma.128x128.w4.s3", "is not <BM>x<BN>x<BK>"},
      {"cuda.sm80.bf16.mma.128x128x032.w4.s3", "is not <BM>x<BN>x<BK>"},
      {"cuda.sm80.bf16.mma.128x128x32.x4.s3", "is not w<warps>"},
      {"cuda.sm80.bf16.mma.128x128x32.w4.s-3", "is not s<stages>"},
      {"cuda.sm80.bf16.mma.128x128x32.w4.s3.sk1", "not canonical"},
      {"cuda.sm80.bf16.mma.128x128x32.w4.s3.g1", "not canonical"},
      {"cuda.sm80.bf16.mma.128x128x32.w4.s3.g8.sk2", "unexpected field"},
      {"cuda.sm80.bf16.mma.128x128x32.w4.s3.z2", "unexpected field"},
      {"cuda.sm80.bf16.mfma.128x128x32.w4.s2", "AMD-only"},
      {"hip.gfx942.bf16.mma.128x128x32.w4.s3", "NVIDIA-only"},
      {"cuda.sm80.f32.mma.128x128x32.w4.s3", "f16 or bf16"},
      {"cuda.sm80.bf16.simt.64x64x16.w4.s1", "write 'any'"},
      {"cuda.sm80.bf16.mma.128x128x24.w4.s3", "BK must be 16, 32 or 64"},
      {"cuda.sm80.bf16.mma.96x128x32.w4.s3", "powers of two"},
      {"cuda.sm80.bf16.mma.128x128x32.w4.s1", "2 to 8 stages"},
      {"cuda.sm80.bf16.mma.256x256x64.w8.s4", "shared memory"},       // 256 KiB of stages
      {"cuda.sm80.bf16.mma.128x256x64.w8.s4", "shared memory"},       // fits sm90a, not sm80
      {"cuda.sm80.bf16.mma.256x256x32.w4.s3", "registers"},           // 128x128 per warp
      {"cuda.sm80.bf16.mma.32x32x32.w8.s3", "multiple of 16x16"},
      {"cuda.sm80.bf16.mma.128x128x32.w3.s3", "warps must be"},
      {"cuda.sm80.bf16.mma.128x128x32.w64.s3", "warps must be"},
      {"cuda.sm80.bf16.mma.128x128x32.w4.s3.sk65", "split-K"},
      {"cuda.sm90a.bf16.wgmma.128x256x64.w8.s4", "reserved for a later version"},
      {"cuda.sm80.bf16.wgmma.128x256x64.w8.s4", "needs sm90a"},
      {"hip.gfx942.bf16.mfma.128x128x64.w4.s2", "LDS"},               // 69632 bytes of LDS
      {"hip.gfx942.bf16.mfma.128x128x32.w4.s3", "double-buffer"},
      {"hip.gfx942.bf16.mfma.256x256x16.w2.s2", "accumulators"},
      {"hip.gfx942.bf16.skinny.32x4x2048.w4.s1", "M <= 16"},
      {"hip.gfx942.bf16.skinny.16x16x2048.w4.s1", "128 accumulators"},
      {"hip.gfx942.bf16.skinny.4x8x1024.w4.s1", "threads x vector"},  // 256 threads x 8 = 2048
      {"cuda.sm80.bf16.skinny.4x8x1024.w4.s1.g2", "no rasterisation"},
      {"cuda.sm80.any.skinny.4x8x1024.w4.s1", "specialised"},
      {"cuda.sm80.any.simt.64x64x16.w4.s2", "one stage"},
      {"cuda.sm80.any.simt.64x66x16.w4.s1", "multiple of 4"},
  };
  for (const Bad& b : bad) {
    Status st = GpuConfig::parse(b.name, &c);
    expect(!st.isOk() && st.message().find(b.because) != std::string::npos,
           std::string("'") + b.name + "' is rejected because " + b.because + ", got: " + (st.isOk() ? "accepted" : st.message()));
  }
}

void checkRasterisation() {
  for (int tilesM : {1, 2, 3, 7, 8, 9, 33}) {
    for (int tilesN : {1, 2, 5, 16, 17}) {
      for (int group : {1, 2, 3, 8, 64}) {
        std::vector<int> hits(size_t(tilesM * tilesN), 0);
        bool inRange = true;
        for (int pid = 0; pid < tilesM * tilesN; pid++) {
          int tm, tn;
          rasterTile(pid, tilesM, tilesN, group, &tm, &tn);
          if (tm < 0 || tm >= tilesM || tn < 0 || tn >= tilesN) { inRange = false; continue; }
          hits[size_t(tm * tilesN + tn)]++;
        }
        bool once = inRange;
        for (int h : hits) once = once && h == 1;
        expect(once, "rasterTile covers each of " + std::to_string(tilesM) + "x" + std::to_string(tilesN) + " tiles once (group " +
                         std::to_string(group) + ")");
      }
    }
  }
  // Blocks launched together stay within `group` tile rows.
  int tm, tn;
  rasterTile(5, 16, 16, 4, &tm, &tn);
  expect(tm == 1 && tn == 1, "block 5 of 16x16 tiles with group 4 is tile (1, 1)");
}

void checkSplitK() {
  for (int k : {0, 1, 7, 8, 31, 32, 33, 100, 1000, 4096, 4100}) {
    for (int splits : {1, 2, 3, 4, 7, 64}) {
      for (int step : {1, 8, 32, 64}) {
        int expectBegin = 0;
        bool ok = true;
        for (int s = 0; s < splits; s++) {
          int b, e;
          splitKRange(k, splits, step, s, &b, &e);
          ok = ok && b == expectBegin && e >= b && e <= k && (b % step == 0 || b == k);
          expectBegin = e;
        }
        ok = ok && expectBegin == k;
        expect(ok, "split-K ranges partition K=" + std::to_string(k) + " into " + std::to_string(splits) + " (step " +
                       std::to_string(step) + ")");
      }
    }
  }
}

void checkSwizzle() {
  for (int chunks : {1, 2, 4, 8, 16, 32}) {
    bool bijective = true, conflictFree = true;
    for (int row = 0; row < 64; row++) {
      std::vector<int> used(size_t(chunks), 0);
      for (int ch = 0; ch < chunks; ch++) {
        int p = swizzleChunk(row, ch, chunks);
        if (p < 0 || p >= chunks) bijective = false;
        else used[size_t(p)]++;
      }
      for (int u : used) bijective = bijective && u == 1;
    }
    // 8 consecutive rows (an ldmatrix) at one logical chunk hit 8 distinct 16-byte bank groups.
    if (chunks >= 2) {
      for (int row0 = 0; row0 < 64; row0 += 8) {
        for (int ch = 0; ch < chunks; ch++) {
          std::set<int> groups;
          for (int r = row0; r < row0 + 8; r++) groups.insert((r * chunks + swizzleChunk(r, ch, chunks)) % 8);
          conflictFree = conflictFree && groups.size() == 8;
        }
      }
    }
    expect(bijective, "swizzle permutes the chunks of a row (" + std::to_string(chunks) + " chunks)");
    expect(conflictFree, "swizzle spreads 8 rows over 8 bank groups (" + std::to_string(chunks) + " chunks)");
  }
}

void checkWarpGrids() {
  for (const GpuConfigTable& t : kGpuConfigTables) {
    for (size_t i = 0; i < t.size; i++) {
      const GpuConfig& c = t.configs[i];
      WarpGrid g = warpGrid(c);
      expect(g.warpsM * g.warpsN == c.warps, c.name() + ": the warp grid has every warp");
    }
  }
}

void checkArchAndFit() {
  expect(gpuArchRunsOn(GpuArch::Sm80, "sm_80") && gpuArchRunsOn(GpuArch::Sm80, "sm_90") && gpuArchRunsOn(GpuArch::Sm80, "sm_120"),
         "the sm80 table runs on 8.0, 9.0 and 12.0");
  expect(!gpuArchRunsOn(GpuArch::Sm80, "sm_75") && !gpuArchRunsOn(GpuArch::Sm80, "gfx942"), "the sm80 table does not run on 7.5 or AMD");
  expect(gpuArchRunsOn(GpuArch::Sm90a, "sm_90") && !gpuArchRunsOn(GpuArch::Sm90a, "sm_89") && !gpuArchRunsOn(GpuArch::Sm90a, "sm_100"),
         "the sm90a table runs on 9.0 only");
  expect(gpuArchRunsOn(GpuArch::Gfx942, "gfx942:sramecc+:xnack-") && !gpuArchRunsOn(GpuArch::Gfx942, "gfx90a:sramecc+:xnack-") &&
             gpuArchRunsOn(GpuArch::Gfx90a, "gfx90a") && !gpuArchRunsOn(GpuArch::Gfx90a, "gfx9400"),
         "AMD tables match the architecture before the features");

  GpuConfig mma, skinny, simt;
  GpuConfig::parse("cuda.sm80.bf16.mma.128x128x32.w4.s3.g8", &mma);
  GpuConfig::parse("cuda.sm80.bf16.skinny.4x8x1024.w4.s1.sk4", &skinny);
  GpuConfig::parse("cuda.sm80.any.simt.64x64x16.w4.s1", &simt);
  Problem p;
  p.m = 5; p.n = 77; p.k = 129; p.dtypeA = p.dtypeB = DType::BF16; p.dtypeC = DType::F16;
  expect(gpuConfigFits(mma, p).isOk(), "mma bf16 fits a bf16 x bf16 -> f16 problem");
  expect(!gpuConfigFits(skinny, p).isOk() && gpuConfigFits(skinny, p).message().find("M <= 4") != std::string::npos,
         "skinny with BM 4 rejects M = 5");
  p.m = 4;
  expect(gpuConfigFits(skinny, p).isOk(), "skinny with BM 4 runs M = 4");
  p.dtypeB = DType::F32;
  expect(gpuConfigFits(mma, p).code() == StatusCode::Unsupported, "mma bf16 rejects a bf16 x f32 problem");
  expect(gpuConfigFits(simt, p).isOk(), "simt runs mixed dtypes");
  p.k = int64_t(1) << 31;
  expect(!gpuConfigFits(simt, p).isOk(), "K = 2^31 is too large for the GPU kernels");
  p.k = 100; p.batch = 3;
  expect(gpuWorkspaceBytes(mma, p) == 0, "no workspace without split-K");
  expect(gpuWorkspaceBytes(skinny, p) == 3 * 4 * 4 * 77 * 4, "split-K workspace is batch x splits x M x N floats");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "list") == 0) return list();
  if (argc == 2 && std::strcmp(argv[1], "selftest") == 0) {
    checkTables();
    checkNames();
    checkRasterisation();
    checkSplitK();
    checkSwizzle();
    checkWarpGrids();
    checkArchAndFit();
    std::printf("gemmkit-gpu-tables selftest: %d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
  }
  std::fprintf(stderr, "usage: gemmkit-gpu-tables list|selftest\n");
  return 2;
}
