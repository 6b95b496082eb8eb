// AMX-BF16 micro-kernel, 32x32 register block: four 16x16 f32 C tiles (tmm0-3), two A tiles of 16 rows
// x 32 bf16 (tmm4-5, PanelFormat::Bf16K32) and two B tiles of 16 k pairs x 16 columns (tmm6-7,
// PanelFormat::Bf16Pairs, the VNNI layout), four TDPBF16PS per 32 k. Depth is padded to 32 (kAlign).
//
// The kernel reaches the tile instructions only through the thin wrappers of a "tile ops" class:
//   AmxTiles        the real instructions (function-level target "amx-tile,amx-bf16"); used only after
//                   cpuid reported AMX and the kernel granted tile-data permission (cpu_features.cpp).
//   EmulatedTiles   plain C++ on emulated tile registers, following the instructions' definitions
//                   (row/colsb from the loaded config, TDPBF16PS adding the even then the odd product of
//                   each pair into f32, bf16 denormal inputs read as zero, denormal results flushed).
// Both instantiate the same kernel template, so the emulated kernel (offered only when
// GEMMKIT_CPU_EMULATE_AMX=1) tests the real kernel's tiling, layouts and edges on CPUs without AMX.
#include "micro_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>
#include <stdexcept>

#define GEMMKIT_AMX __attribute__((target("amx-tile,amx-bf16"), always_inline))

namespace gemmkit {

namespace {

// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t startRow;
  uint8_t reserved[14];
  uint16_t colsb[16];  // bytes per row of each tile
  uint8_t rows[16];
};

// Every tile is 16 rows of 64 bytes: C tiles 16x16 f32, A tiles 16 rows x 32 bf16, B tiles 16 k pairs.
constexpr TileConfig makeConfig() {
  TileConfig c{};
  c.palette = 1;
  for (int t = 0; t < 8; t++) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  return c;
}
// Static storage: LDTILECFG's asm operand names only the first bytes, so the compiler must not be asked
// to materialise the rest on the stack.
alignas(64) const TileConfig kTileConfig = makeConfig();

struct AmxTiles {
  static GEMMKIT_AMX inline void configure(const TileConfig* c) { _tile_loadconfig(c); }
  static GEMMKIT_AMX inline void release() { _tile_release(); }
  // Tile numbers must be literals in the instructions; callers pass constants, so each switch folds away.
  static GEMMKIT_AMX inline void zero(int t) {
    switch (t) {
      case 0: _tile_zero(0); break;
      case 1: _tile_zero(1); break;
      case 2: _tile_zero(2); break;
      case 3: _tile_zero(3); break;
    }
  }
  static GEMMKIT_AMX inline void load(int t, const void* p, int64_t stride) {
    switch (t) {
      case 4: _tile_loadd(4, p, stride); break;
      case 5: _tile_loadd(5, p, stride); break;
      case 6: _tile_loadd(6, p, stride); break;
      case 7: _tile_loadd(7, p, stride); break;
    }
  }
  static GEMMKIT_AMX inline void dot(int c, int a, int b) {
    switch (c * 100 + a * 10 + b) {
      case 46: _tile_dpbf16ps(0, 4, 6); break;
      case 147: _tile_dpbf16ps(1, 4, 7); break;
      case 256: _tile_dpbf16ps(2, 5, 6); break;
      case 357: _tile_dpbf16ps(3, 5, 7); break;
    }
  }
  static GEMMKIT_AMX inline void store(int t, void* p, int64_t stride) {
    switch (t) {
      case 0: _tile_stored(0, p, stride); break;
      case 1: _tile_stored(1, p, stride); break;
      case 2: _tile_stored(2, p, stride); break;
      case 3: _tile_stored(3, p, stride); break;
    }
  }
};

struct EmulatedTiles {
  struct Tile {
    int rows = 0, colsb = 0;
    alignas(64) uint8_t data[16][64];
  };
  struct State {
    bool configured = false;
    Tile tiles[8];
  };
  static State& state() {
    static thread_local State s;
    return s;
  }
  static Tile& tile(int t) {
    State& s = state();
    if (!s.configured) throw std::logic_error("emulated AMX: tile used before LDTILECFG");
    return s.tiles[t];
  }
  static void configure(const TileConfig* c) {
    State& s = state();
    for (int t = 0; t < 8; t++) {
      s.tiles[t].rows = c->rows[t];
      s.tiles[t].colsb = c->colsb[t];
      std::memset(s.tiles[t].data, 0, sizeof(s.tiles[t].data));
    }
    s.configured = true;
  }
  static void release() { state().configured = false; }
  static void zero(int t) { std::memset(tile(t).data, 0, sizeof(Tile::data)); }
  static void load(int t, const void* p, int64_t stride) {
    Tile& x = tile(t);
    for (int r = 0; r < x.rows; r++) std::memcpy(x.data[r], static_cast<const char*>(p) + r * stride, size_t(x.colsb));
  }
  static void store(int t, void* p, int64_t stride) {
    Tile& x = tile(t);
    for (int r = 0; r < x.rows; r++) std::memcpy(static_cast<char*>(p) + r * stride, x.data[r], size_t(x.colsb));
  }
  static float bf16In(const uint8_t* row, int i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    if ((h & 0x7f80u) == 0) h &= 0x8000u;  // denormal inputs are read as zero
    return bf16ToF32(h);
  }
  static float flushDenormal(float v) {
    uint32_t u = floatBits(v);
    return (u & 0x7f800000u) == 0 ? bitsFloat(u & 0x80000000u) : v;
  }
  // TDPBF16PS: c[m][n] += sum over k pairs of a[m][2k]*b[k][2n] + a[m][2k+1]*b[k][2n+1], in that order.
  static void dot(int ci, int ai, int bi) {
    Tile &c = tile(ci), &a = tile(ai), &b = tile(bi);
    for (int m = 0; m < c.rows; m++) {
      float acc[16];
      std::memcpy(acc, c.data[m], 64);
      for (int k = 0; k < a.colsb / 4; k++) {
        for (int n = 0; n < c.colsb / 4; n++) {
          acc[n] = flushDenormal(acc[n] + bf16In(a.data[m], 2 * k) * bf16In(b.data[k], 2 * n));
          acc[n] = flushDenormal(acc[n] + bf16In(a.data[m], 2 * k + 1) * bf16In(b.data[k], 2 * n + 1));
        }
      }
      std::memcpy(c.data[m], acc, 64);
    }
  }
};

// Ap: [kb/32][32][32] bf16 (rows of 32 k), Bp: [kb/2][32][2] bf16, both padded to a multiple of 32 in k.
// The target attribute lets the real wrappers inline; it only permits AMX instructions, which the compiler
// never generates on its own, so the emulated instantiation stays plain x86-64 code.
template <class Tiles>
__attribute__((target("amx-tile,amx-bf16"))) void amxTile32x32(int64_t kb, const void* ApIn, const void* BpIn, float* C, int64_t ldc, int mr, int nr,
                         float alpha, float beta) {
  const uint16_t* Ap = static_cast<const uint16_t*>(ApIn);
  const uint16_t* Bp = static_cast<const uint16_t*>(BpIn);
  Tiles::configure(&kTileConfig);
  Tiles::zero(0);
  Tiles::zero(1);
  Tiles::zero(2);
  Tiles::zero(3);
  const int64_t chunks = (kb + 31) / 32;
  for (int64_t ch = 0; ch < chunks; ch++) {
    const uint16_t* a = Ap + ch * 32 * 32;  // rows 0-15, then rows 16-31 at +16*32, row stride 64 bytes
    const uint16_t* b = Bp + ch * 16 * 64;  // 16 pair rows of 32 columns: stride 128 bytes, cols 16-31 at +32
    Tiles::load(4, a, 64);
    Tiles::load(5, a + 16 * 32, 64);
    Tiles::load(6, b, 128);
    Tiles::load(7, b + 32, 128);
    Tiles::dot(0, 4, 6);
    Tiles::dot(1, 4, 7);
    Tiles::dot(2, 5, 6);
    Tiles::dot(3, 5, 7);
  }
  alignas(64) float out[32][32];
  Tiles::store(0, &out[0][0], 128);
  Tiles::store(1, &out[0][16], 128);
  Tiles::store(2, &out[16][0], 128);
  Tiles::store(3, &out[16][16], 128);
  Tiles::release();
  for (int r = 0; r < mr; r++) {
    float* row = C + r * ldc;
    for (int c = 0; c < nr; c++) row[c] = beta == 0.0f ? alpha * out[r][c] : alpha * out[r][c] + beta * row[c];
  }
}

void microKernelAmx(int64_t kb, const void* Ap, const void* Bp, float* C, int64_t ldc, int mr, int nr, float alpha,
                    float beta) {
  amxTile32x32<AmxTiles>(kb, Ap, Bp, C, ldc, mr, nr, alpha, beta);
}

void microKernelAmxEmulated(int64_t kb, const void* Ap, const void* Bp, float* C, int64_t ldc, int mr, int nr,
                            float alpha, float beta) {
  amxTile32x32<EmulatedTiles>(kb, Ap, Bp, C, ldc, mr, nr, alpha, beta);
}

}  // namespace

void addAmxKernels(std::vector<MicroKernel>& out) {
  out.push_back({"amx.bf16.32x32", Isa::Amx, 32, 32, PanelFormat::Bf16K32, PanelFormat::Bf16Pairs, 32, microKernelAmx});
  out.push_back({"amxemu.bf16.32x32", Isa::AmxEmulated, 32, 32, PanelFormat::Bf16K32, PanelFormat::Bf16Pairs, 32,
                 microKernelAmxEmulated});
}

}  // namespace gemmkit

#else

namespace gemmkit {
void addAmxKernels(std::vector<MicroKernel>&) {}
}  // namespace gemmkit

#endif
