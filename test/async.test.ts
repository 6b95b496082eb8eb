// The promise API: many GEMMs in flight at once, each correct, with inputs kept alive until they settle.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { type Tensor, info, matmul } from '../src/index.js';
import { expectMatches, intTensor, randTensor, referenceMatmul } from './helpers.js';

describe('async matmul', () => {
  it('100 concurrent matmuls with distinct inputs are all correct', async () => {
    const cases = Array.from({ length: 100 }, (_, i) => {
      const m = 1 + (i % 13) * 7, n = 3 + (i % 11) * 9, k = 2 + (i % 7) * 23;
      const dtype = (['f32', 'bf16', 'f16'] as const)[i % 3];
      const a = intTensor([m, k], dtype, 1000 + i), b = intTensor([k, n], 'f32', 2000 + i);
      return { a, b, k, label: `case ${i}: ${m}x${n}x${k} ${dtype}` };
    });
    const results = await Promise.all(cases.map(({ a, b }) => matmul(a, b)));
    cases.forEach(({ a, b, k, label }, i) => expectMatches(results[i], referenceMatmul(a, b), k, label, true));
  });

  it('does not block the event loop while a large GEMM runs', async () => {
    const a = randTensor([768, 768], 'f32', 1), b = randTensor([768, 768], 'f32', 2);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = performance.now();
    const pending = Array.from({ length: 6 }, () => matmul(a, b));
    await Promise.all(pending);
    clearInterval(timer);
    // Only meaningful if the GEMMs took a while; the interval must have fired meanwhile.
    if (performance.now() - started > 50) expect(ticks).toBeGreaterThan(0);
  });

  it('keeps inputs alive while work is in flight, even if the caller drops them', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(typeof gc).toBe('function'); // vitest.config.ts passes --expose-gc
    const start = (): { promise: Promise<Tensor>; expected: Float64Array } => {
      const a = intTensor([300, 400], 'f32', 5), b = intTensor([400, 300], 'bf16', 6);
      return { promise: matmul(a, b), expected: referenceMatmul(a, b).value };
    };
    const runs = Array.from({ length: 4 }, start);
    for (let i = 0; i < 5; i++) {
      gc!();
      // Churn memory so freed buffers would be reused if the addon had not kept them.
      Array.from({ length: 20 }, () => new Float32Array(120_000).fill(123));
    }
    for (const { promise, expected } of runs) {
      const c = await promise;
      expect(Array.from(c.toFloat32())).toEqual(Array.from(expected, Math.fround));
    }
  });
});

describe('info()', () => {
  it('reports version, backends, CPU model, features and threads', () => {
    const i = info();
    expect(i.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(i.backends.map((b) => b.name)).toContain('cpu');
    expect(i.cpu.model.length).toBeGreaterThan(0);
    expect(i.cpu.cores).toBeGreaterThanOrEqual(1);
    expect(Array.isArray(i.cpu.features)).toBe(true);
    expect(i.threads).toBeGreaterThanOrEqual(1);
    // No GPU here: cuda and hip are unavailable; the emulated ones too until `npm run build:emu` builds them.
    const unavailable = i.unavailable.map((u) => u.name);
    expect(unavailable.filter((n) => !n.startsWith('emu-')).sort()).toEqual(['cuda', 'hip']);
    expect(unavailable.filter((n) => n.startsWith('emu-')).every((n) => n === 'emu-cuda' || n === 'emu-hip')).toBe(true);
    expect(i.kernels.find((k) => k.id === 'scalar.f32.4x8')?.available).toBe(true);
  });

  it('GEMMKIT_NUM_THREADS sizes the pool, and a bad value is reported and ignored', () => {
    const run = (value: string) =>
      spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', "import { info } from './src/index.ts'; console.log(info().threads)"], {
        cwd: new URL('..', import.meta.url),
        env: { ...process.env, GEMMKIT_NUM_THREADS: value },
        encoding: 'utf8',
      });
    expect(run('3').stdout.trim()).toBe('3');
    expect(run('1').stdout.trim()).toBe('1');
    const bad = run('lots');
    expect(bad.stdout.trim()).toBe(String(info().cpu.cores));
    expect(bad.stderr).toMatch(/GEMMKIT_NUM_THREADS="lots" is not an integer in \[1, 4096\]/);
  });
});
