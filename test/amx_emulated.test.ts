// The AMX path on any CPU: GEMMKIT_CPU_EMULATE_AMX=1 offers the AMX kernel's logic on emulated tile
// registers (amxemu.bf16.32x32, the same template as the real kernel), which the heuristic then prefers
// for bf16 x bf16, as it would prefer real AMX. GEMMKIT_CPU_AMX_REFUSE=1 simulates the kernel refusing
// tile-data permission: the heuristic must fall back (AVX512-BF16, else the f32 kernels) and forcing the
// AMX config must be a clear error. The real AMX kernel runs only where cpuid reports AMX.
// This file runs in its own process (vitest forks), so the variables do not leak into other suites.
import { afterEach, describe, expect, it } from 'vitest';
import { info, matmulSync, prepack } from '../src/index.js';
import { prepareMatmul } from '../src/matmul.js';
import { expectMatches, intTensor, randTensor, referenceMatmul } from './helpers.js';

process.env.GEMMKIT_CPU_EMULATE_AMX = '1';
afterEach(() => {
  delete process.env.GEMMKIT_CPU_AMX_REFUSE;
});

const TRANSPOSES: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
const heuristicFor = (m: number, n: number, k: number) => {
  const { native, desc } = prepareMatmul('t', intTensor([m, k], 'bf16', 1), intTensor([k, n], 'bf16', 2), {});
  return native.heuristic(desc);
};

describe('emulated AMX kernel', () => {
  it('is offered when asked for, and preferred for bf16 x bf16 beyond GEMV sizes', () => {
    const emu = info().kernels.find((k) => k.id === 'amxemu.bf16.32x32');
    expect(emu?.available).toBe(true);
    // The real kernel is compiled in; it is available only on CPUs with AMX (not on AMD Zen 4, for example),
    // and where it is, the heuristic prefers it to the emulation.
    const real = info().kernels.find((k) => k.id === 'amx.bf16.32x32');
    expect(real).toBeDefined();
    const hasAmx = info().cpu.features.includes('amx_bf16');
    expect(real!.available).toBe(hasAmx);
    expect(heuristicFor(64, 64, 64)).toMatch(hasAmx ? /^cpu\.amx\.bf16\.32x32\./ : /^cpu\.amxemu\.bf16\.32x32\./);
  });

  it('matches the float64 reference exactly at awkward sizes, all transposes, K not a multiple of 32', () => {
    let seed = 1;
    for (const [m, n, k] of [[1, 1, 1], [7, 7, 7], [31, 33, 45], [33, 31, 77], [45, 77, 127], [64, 64, 64], [65, 63, 31]]) {
      for (const [ta, tb] of TRANSPOSES) {
        const a = intTensor(ta ? [k, m] : [m, k], 'bf16', seed++);
        const b = intTensor(tb ? [n, k] : [k, n], 'bf16', seed++);
        const ref = referenceMatmul(a, b, { transA: ta, transB: tb });
        for (const config of ['cpu.amxemu.bf16.32x32.mc64.kc32.nc64.t2', 'cpu.amxemu.bf16.32x32.mc32.kc64.nc32.t1', undefined]) {
          const c = matmulSync(a, b, { transA: ta, transB: tb, config, outDtype: 'f32' });
          expectMatches(c, ref, k, `${m}x${n}x${k} ta=${ta} tb=${tb} ${config ?? 'heuristic'}`, true);
        }
      }
    }
  });

  it('random values within the K-scaled bound, bias and activation, bf16 output', () => {
    const a = randTensor([50, 200], 'bf16', 1), w = randTensor([70, 200], 'bf16', 2), bias = randTensor([70], 'bf16', 3);
    const config = 'cpu.amxemu.bf16.32x32.mc64.kc96.nc64.t2';
    const got = matmulSync(a, w, { transB: true, bias, activation: 'gelu', config });
    expect(got.dtype).toBe('bf16');
    expectMatches(got, referenceMatmul(a, w, { transB: true, bias, activation: 'gelu' }), 200, config);
  });

  it('prepacked in the AMX layout == unpacked, bit for bit', () => {
    const w = randTensor([77, 100], 'bf16', 4); // [N, K]
    const config = 'cpu.amxemu.bf16.32x32.mc64.kc64.nc64.t2';
    const packed = prepack(w, { transB: true, config });
    expect(packed.layout).toBe('amxemu.bf16.32x32.kc64');
    for (const m of [1, 5, 33]) {
      const x = randTensor([m, 100], 'bf16', 10 + m);
      expect(Array.from(matmulSync(x, packed, { config }).data)).toEqual(Array.from(matmulSync(x, w, { transB: true, config }).data));
    }
  });
});

describe('AMX permission refused (simulated)', () => {
  it('the heuristic falls back to AVX512-BF16 (or the f32 kernels) and stays correct', () => {
    process.env.GEMMKIT_CPU_AMX_REFUSE = '1';
    const fallback = heuristicFor(64, 64, 64);
    expect(fallback).not.toMatch(/amx/);
    const features = info().cpu.features;
    if (features.includes('avx512_bf16')) expect(fallback).toMatch(/^cpu\.avx512bf16\.bf16\./);
    else if (features.includes('avx512')) expect(fallback).toMatch(/^cpu\.avx512\.f32\./);
    expect(info().kernels.find((k) => k.id === 'amxemu.bf16.32x32')?.available).toBe(false);
    const a = intTensor([64, 64], 'bf16', 1), b = intTensor([64, 64], 'bf16', 2);
    expectMatches(matmulSync(a, b, { outDtype: 'f32' }), referenceMatmul(a, b), 64, `fallback ${fallback}`, true);
  });

  it('forcing the AMX config, or prepacking for it, is an error that names the refusal', () => {
    process.env.GEMMKIT_CPU_AMX_REFUSE = '1';
    const a = intTensor([8, 8], 'bf16', 1), b = intTensor([8, 8], 'bf16', 2);
    const config = 'cpu.amxemu.bf16.32x32.mc64.kc64.nc64.t1';
    expect(() => matmulSync(a, b, { config })).toThrow(/permission refused/);
    expect(() => prepack(b, { config })).toThrow(/permission refused/);
    delete process.env.GEMMKIT_CPU_AMX_REFUSE;
    expect(() => matmulSync(a, b, { config })).not.toThrow();
  });

  it('the real AMX config is refused on a CPU without AMX, with the reason', () => {
    if (info().cpu.features.includes('amx_bf16')) return;
    const a = intTensor([8, 8], 'bf16', 1);
    expect(() => matmulSync(a, a, { config: 'cpu.amx.bf16.32x32.mc64.kc64.nc64.t1' })).toThrow(/no AMX-BF16/);
  });
});
