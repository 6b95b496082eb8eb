// Calls into a system BLAS respect the pool's core budget: a stand-in cblas library (built here with the
// C++ compiler the addon needs) logs, at every cblas_sgemm, the thread count it was set to and the sum of
// the thread counts of all calls inside it at that moment. 50 concurrent matmuls on it must never have
// more library threads running than the pool has, must each run on the lease they were given, and must
// give the right products.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNode, scratchDir } from './tuner_helpers.js';

const FAKE_BLAS = String.raw`
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

static std::atomic<int> threads{1};
static std::mutex mutex;
static int inside = 0;  // sum of the thread counts of the calls inside cblas_sgemm

extern "C" {
const char* openblas_get_config() { return "OpenBLAS 9.9.9 STAND-IN"; }
void openblas_set_num_threads(int n) { threads = n; }
void cblas_sgemm(int, int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                 int ldb, float beta, float* c, int ldc) {
  const int mine = threads.load();  // a library runs a call on the thread count set when it starts
  {
    std::lock_guard<std::mutex> lock(mutex);
    inside += mine;
    if (FILE* f = std::fopen(std::getenv("FAKE_BLAS_LOG"), "a")) {
      std::fprintf(f, "%d %d\n", mine, inside);
      std::fclose(f);
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(3));  // long enough for calls to overlap
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < n; j++) {
      float acc = 0;
      for (int l = 0; l < k; l++) acc += a[ta == 112 ? l * lda + i : i * lda + l] * b[tb == 112 ? j * ldb + l : l * ldb + j];
      c[i * ldc + j] = alpha * acc + (beta == 0 ? 0 : beta * c[i * ldc + j]);
    }
  }
  std::lock_guard<std::mutex> lock(mutex);
  inside -= mine;
}
}
`;

function buildFakeBlas(dir: string): string | undefined {
  const src = join(dir, 'fake_blas.cpp'), lib = join(dir, 'libfakeblas.so');
  writeFileSync(src, FAKE_BLAS);
  try {
    execFileSync(process.env.CXX ?? 'g++', ['-O2', '-shared', '-fPIC', '-std=c++17', '-o', lib, src, '-lpthread'], { stdio: 'pipe' });
  } catch {
    return undefined;
  }
  return lib;
}

describe('system BLAS calls take the pool\'s threads', () => {
  it('50 concurrent calls never run more library threads than the pool has, each on its lease', async () => {
    const dir = scratchDir();
    const lib = buildFakeBlas(dir);
    if (!lib) return; // no C++ compiler: nothing to load
    const log = join(dir, 'calls.log');
    const code = `
      import { info, matmul, tensor } from './src/index.js';
      const config = info().libraries.find((l) => l.name === 'openblas')?.config;
      if (config !== 'cpu.cblas.openblas-9.9.9') throw new Error('the stand-in BLAS did not load: ' + JSON.stringify(info().libraries));
      const n = 200; // 16 MFLOP: the engine's default would take 4 threads
      const a = tensor(Float32Array.from({ length: n * n }, (_, i) => (i % 7) - 3), [n, n]);
      const b = tensor(Float32Array.from({ length: n * n }, (_, i) => (i % 5) - 2), [n, n]);
      const want = (await matmul(a, b, { config: 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1' })).toFloat32();
      const got = await Promise.all(Array.from({ length: 50 }, () => matmul(a, b, { config })));
      for (const y of got) if (y.toFloat32().some((v, i) => v !== want[i])) throw new Error('a wrong product');
      console.log(JSON.stringify({ pool: info().threads }));
    `;
    const r = await runNode(['--input-type=module', '-e', code], { GEMMKIT_BLAS: lib, GEMMKIT_NUM_THREADS: '3', FAKE_BLAS_LOG: log });
    expect(r.code, r.stderr).toBe(0);
    const pool = JSON.parse(r.stdout).pool as number;
    expect(pool).toBe(3);
    const calls = readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number));
    expect(calls).toHaveLength(50);
    const most = Math.max(...calls.map(([, inside]) => inside));
    expect(most, `library threads running at once: ${most}, pool ${pool}`).toBeLessThanOrEqual(pool);
    for (const [threads] of calls) expect(threads).toBeGreaterThanOrEqual(1);
    // Nothing else computes here, so each call's lease is all it asks for: the whole pool.
    expect(Math.max(...calls.map(([threads]) => threads))).toBe(pool);
  });
});
