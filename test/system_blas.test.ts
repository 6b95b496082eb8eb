// The system BLAS candidate (a cblas_sgemm found with dlopen) and the tuner's native entry points.
// .ci/run installs OpenBLAS, so CI runs the BLAS tests; elsewhere they are skipped, saying why.
import { describe, expect, it } from 'vitest';
import { info, matmulSync } from '../src/index.js';
import { cpuNative } from '../src/native.js';
import { specDesc } from '../src/tuner/tune.js';
import { expectMatches, intTensor, randTensor, referenceMatmul } from './helpers.js';
import { spec } from './tuner_helpers.js';

const libraries = cpuNative().info().libraries;
const blasMissing = libraries.length === 0 ? 'no cblas library (libopenblas0, libblis4, libblas3) is installed' : false;

describe('system BLAS candidates', () => {
  it.skipIf(blasMissing)(`every library found runs as a config named with its library and version (${blasMissing || libraries.map((l) => l.config).join(', ')})`, () => {
    const native = cpuNative();
    for (const lib of libraries) {
      expect(lib.config).toMatch(/^cpu\.cblas\.[a-z]+-[0-9a-z.-]+$/);
      expect(lib.config).toBe(`cpu.cblas.${lib.name}-${lib.version}`);
      const desc = specDesc('cpu', spec(7, 45, 77));
      expect(native.candidates(desc)).toContain(lib.config);
      // f32 only: not offered, and refused with a reason, for 16-bit operands.
      const bf = specDesc('cpu', spec(7, 45, 77, { dtypeA: 'bf16', dtypeB: 'bf16', outDtype: 'bf16' }));
      expect(native.candidates(bf)).not.toContain(lib.config);
      expect(native.supports(bf, lib.config)).toMatch(/runs f32 only/);
      expect(() => matmulSync(intTensor([3, 4], 'bf16', 1), intTensor([4, 5], 'bf16', 2), { config: lib.config })).toThrow(/runs f32 only/);
    }
  });

  it.skipIf(blasMissing)('computes every transpose, alpha/beta, bias + activation and batches like the reference', () => {
    for (const lib of libraries) {
      for (const [ta, tb] of [[false, false], [false, true], [true, false], [true, true]]) {
        for (const [m, n, k] of [[1, 1, 1], [7, 45, 77], [64, 1, 100], [33, 17, 0]]) {
          const a = intTensor(ta ? [k, m] : [m, k], 'f32', m + n), b = intTensor(tb ? [n, k] : [k, n], 'f32', k + 1);
          const bias = intTensor([n], 'f32', 5);
          const out = intTensor([m, n], 'f32', 6);
          const opts = { transA: ta, transB: tb, bias, activation: 'relu' as const, alpha: 2, beta: -1 };
          const ref = referenceMatmul(a, b, { ...opts, c: out });
          const got = matmulSync(a, b, { ...opts, out: intTensor([m, n], 'f32', 6), config: lib.config });
          expectMatches(got, ref, k, `${lib.config} ${m}x${n}x${k} ta=${ta} tb=${tb}`, true);
        }
      }
      const a = randTensor([3, 9, 20], 'f32', 1), b = randTensor([20, 11], 'f32', 2);
      expectMatches(matmulSync(a, b, { config: lib.config, activation: 'gelu' }), referenceMatmul(a, b, { activation: 'gelu' }), 20, `${lib.config} batched gelu`);
    }
  });

  it('a BLAS config that is not loaded is refused with what was found', () => {
    expect(() => matmulSync(intTensor([2, 2], 'f32', 1), intTensor([2, 2], 'f32', 2), { config: 'cpu.cblas.nosuchblas-1.0' })).toThrow(
      /cpu.cblas.nosuchblas-1.0 names a system BLAS that is not loaded here \(found: /,
    );
  });

  it('info() lists the libraries that tuned files are validated against', () => {
    expect(info().libraries).toEqual(libraries);
    for (const l of libraries) expect(l.path).toBeTruthy();
  });
});

describe('native timeConfig and referenceAsync', () => {
  const native = cpuNative();
  const desc = specDesc('cpu', spec(16, 32, 24));
  it('times the asked number of iterations, with or without rotating copies', async () => {
    const config = native.heuristic(desc);
    for (const rotatingBytes of [0, 1 << 20]) {
      const us = await native.timeConfig(desc, config, { warmup: 1, iterations: 5, rotatingBytes, maxMs: 0 });
      expect(us).toHaveLength(5);
      for (const t of us) expect(t).toBeGreaterThan(0);
    }
    // maxMs stops after the first timed run once the bound is passed.
    expect(await native.timeConfig(desc, config, { warmup: 0, iterations: 1000, rotatingBytes: 0, maxMs: 1e-6 })).toHaveLength(1);
  });
  it('rejects bad options and configs as errors, not crashes', async () => {
    const config = native.heuristic(desc);
    expect(() => native.timeConfig(desc, config, { warmup: -1, iterations: 1, rotatingBytes: 0, maxMs: 0 })).toThrow(RangeError);
    expect(() => native.timeConfig(desc, config, { warmup: 0, iterations: 0, rotatingBytes: 0, maxMs: 0 })).toThrow(/iterations must be an integer/);
    expect(() => native.timeConfig(desc, config, { warmup: 0, iterations: 1, rotatingBytes: 0, maxMs: -1 })).toThrow(/maxMs/);
    await expect(native.timeConfig(desc, 'cpu.nope', { warmup: 0, iterations: 1, rotatingBytes: 0, maxMs: 0 })).rejects.toThrow(/not a cpu config name/);
  });
  it('referenceAsync gives the float64 result and the root-sum-square of the terms', async () => {
    const a = new Float32Array([1, 2, 3, 4, 5, 6]), b = new Float32Array([1, 0, 0, 1, 1, 1]);
    const d = { ...specDesc('cpu', spec(2, 2, 3)), a, b, c: new Float32Array(4) };
    const c64 = new Float64Array(4), scale = new Float64Array(4);
    await native.referenceAsync(d, c64, scale);
    expect([...c64]).toEqual([1, 6, 4, 15]); // x @ W^T with W = [[1,0,0],[1,1,1]]
    expect(scale[1]).toBeCloseTo(Math.sqrt(1 + 4 + 9), 12);
    expect(() => native.referenceAsync(d, new Float64Array(3))).toThrow(/c64 has 3 elements but the problem writes 4/);
  });
});
