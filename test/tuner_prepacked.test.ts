// Prepared weights and tuned dispatch: a prepack()ed weight takes its layout from the tuned table, its
// calls follow the tuned rows that can run on what it holds (the packed layout, or the kept source for
// configs that read B as stored), and the tuner tunes prepacked shapes so that they can.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { explain, info, matmulSync, prepack, setTunedFile } from '../src/index.js';
import { prepareMatmul } from '../src/matmul.js';
import { cpuNative } from '../src/native.js';
import { dispatch } from '../src/tuner/dispatch.js';
import { readTunedFile } from '../src/tuner/tuned_file.js';
import { tune, tuneShape } from '../src/tuner/tune.js';
import { expectMatches, intTensor, referenceMatmul } from './helpers.js';
import { QUICK, row, runNode, scratchDir, spec, tunedFileText, validators } from './tuner_helpers.js';

afterEach(() => {
  setTunedFile(null);
});

const blocked = info().kernels.filter((k) => k.available && k.family === 'blocked' && k.inputs === 'any');
const kernel = blocked.find((k) => k.isa !== 'scalar') ?? blocked[0];
const gemv = info().kernels.find((k) => k.available && k.family === 'gemv' && k.inputs === 'any')!;
const blockedConfig = (kc: number, mcSlivers = 2) => `cpu.${kernel.id}.mc${mcSlivers * kernel.mr}.kc${kc}.nc${4 * kernel.nr}.t1`;
const gemvConfig = `cpu.${gemv.id}.kc256.ks1.t1`;

// W: [N=64, K=96] applied as x @ W^T.
const N = 64, K = 96;
const packedSpec = (m: number) => spec(m, N, K, { prepacked: true });

describe('tuned dispatch of prepacked weights', () => {
  it('prepack takes the layout of the largest-M row that reads a packed layout; calls follow the rows they can run', () => {
    const path = join(scratchDir(), 'tuned.csv');
    writeFileSync(path, tunedFileText([
      row(packedSpec(128), blockedConfig(64)),
      row(packedSpec(32), blockedConfig(64, 4)), // same layout, other mc
      row(packedSpec(8), blockedConfig(32)), // another layout: cannot run on the weight
      row(packedSpec(1), gemvConfig), // reads B as stored
      row(spec(128, N, K), blockedConfig(128)), // a plain row: not for prepacked calls
    ]));
    setTunedFile(path);
    const w = intTensor([N, K], 'f32', 1);
    const packed = prepack(w, { transB: true });
    expect(packed.layout).toBe(`${kernel.id}.kc64`);
    const check = (m: number, source: string, weight: string, config: string | RegExp) => {
      const x = intTensor([m, K], 'f32', 10 + m);
      const e = explain(x, packed);
      expect(e.source, `M=${m}: ${e.reason}`).toBe(source);
      expect(e.weight, `M=${m}`).toBe(weight);
      if (typeof config === 'string') expect(e.config).toBe(config);
      else expect(e.config).toMatch(config);
      const got = matmulSync(x, packed);
      expect(Array.from(got.data), `M=${m} ${e.config}`).toEqual(Array.from(matmulSync(x, w, { transB: true, config: e.config }).data));
      expectMatches(got, referenceMatmul(x, w, { transB: true }), K, `prepacked M=${m} ${e.config}`, true);
      return e;
    };
    check(128, 'tuned', 'packed', blockedConfig(64));
    check(32, 'tuned', 'packed', blockedConfig(64, 4));
    check(20, 'bucket', 'packed', blockedConfig(64, 4)); // padded M: the row for 32
    check(1, 'tuned', 'source', gemvConfig);
    const e8 = check(8, 'default', 'packed', new RegExp(`^cpu\\.${kernel.id.replace(/\./g, '\\.')}\\..*\\.kc64\\.`));
    expect(e8.reason).toMatch(new RegExp(`packed as ${kernel.id}\\.kc32, but this one is packed as ${kernel.id}\\.kc64`));
    // The plain row serves plain calls only.
    expect(explain(intTensor([128, K], 'f32', 3), w, { transB: true }).config).toBe(blockedConfig(128));
  });

  it('without its source a prepacked weight runs rows that read B as stored on its packed layout instead', () => {
    const path = join(scratchDir(), 'tuned.csv');
    writeFileSync(path, tunedFileText([row(packedSpec(64), blockedConfig(64)), row(packedSpec(1), gemvConfig)]));
    setTunedFile(path);
    const w = intTensor([N, K], 'f32', 2);
    const packed = prepack(w, { transB: true, keepSource: false });
    const x = intTensor([1, K], 'f32', 4);
    const e = explain(x, packed);
    expect(e).toMatchObject({ source: 'default', weight: 'packed' });
    expect(e.reason).toMatch(/keepSource: false/);
    expectMatches(matmulSync(x, packed), referenceMatmul(x, w, { transB: true }), K, 'packed only, M=1', true);
  });

  it('tune: a prepared weight is tuned largest M first, every row can run on one layout, and dispatch then uses them all', async () => {
    const out = join(scratchDir(), 'tuned.csv');
    const shapes = [1, 16, 64].map((m) => packedSpec(m));
    const summary = await tune({ backend: { name: 'cpu', native: cpuNative() }, cpu: cpuNative(), shapes, opts: QUICK, out });
    expect(summary.results.every((r) => r.row)).toBe(true);
    const rows = readTunedFile(out).rows;
    expect(rows.map((r) => r.prepacked)).toEqual([true, true, true]);
    const layouts = new Set(rows.map((r) => cpuNative().packedLayout!('cpu', r.config)).filter((l) => l !== null));
    expect(layouts.size).toBeLessThanOrEqual(1);
    setTunedFile(out);
    const w = intTensor([N, K], 'f32', 5);
    const packed = prepack(w, { transB: true });
    if (layouts.size === 1) expect(packed.layout).toBe([...layouts][0]);
    for (const m of [1, 16, 64]) {
      const x = intTensor([m, K], 'f32', 6 + m);
      const e = explain(x, packed);
      expect(e.source, `M=${m}: ${e.reason}`).toBe('tuned');
      expectMatches(matmulSync(x, packed), referenceMatmul(x, w, { transB: true }), K, `tuned prepacked M=${m} ${e.config}`, true);
    }
  });

  it('tune: once the largest M fixes the layout, smaller Ms choose only among configs that can run on it', async () => {
    // Fake timings (the configs run for real in the check): kc64 wins at M=64, kc32 would win at M=16.
    const cpu = cpuNative();
    const fast = (m: number, c: string) => (m === 64 && c === blockedConfig(64)) || (m === 16 && c === blockedConfig(32));
    const native = {
      ...cpu,
      candidates: (d: Parameters<typeof cpu.candidates>[0]) => [...new Set([...cpu.candidates(d), blockedConfig(64), blockedConfig(32)])],
      timeConfig: async (d: Parameters<typeof cpu.timeConfig>[0], c: string, o: { iterations: number }) => Array(o.iterations).fill(fast(d.m, c) ? 1 : 10),
    };
    const out = join(scratchDir(), 'tuned.csv');
    const shapes = [packedSpec(16), packedSpec(64)];
    await tune({ backend: { name: 'cpu', native }, cpu, shapes, opts: QUICK, out });
    const rows = readTunedFile(out).rows;
    expect(rows.find((r) => r.m === 64)?.config).toBe(blockedConfig(64));
    const m16 = rows.find((r) => r.m === 16)!;
    expect([null, `${kernel.id}.kc64`]).toContain(cpu.packedLayout!('cpu', m16.config));
    // The same shapes as plain weights have no layout to keep: kc32 wins at M=16.
    const plainOut = join(scratchDir(), 'tuned.csv');
    await tune({ backend: { name: 'cpu', native }, cpu, shapes: [spec(16, N, K), spec(64, N, K)], opts: QUICK, out: plainOut });
    expect(readTunedFile(plainOut).rows.find((r) => r.m === 16)?.config).toBe(blockedConfig(32));
  });

  it('tune: the default a prepacked shape is measured against is what dispatch runs without a tuned row', async () => {
    const cpu = cpuNative();
    // 300x200 weights (GEMV for the plain problem up to M = 128): the source at M = 1 and, for bf16
    // weights with f32 activations (a larger panel), up to M = 63; the panel from there.
    for (const [m, dtypeB] of [[1, 'f32'], [2, 'f32'], [8, 'bf16'], [64, 'bf16']] as const) {
      const s = spec(m, 300, 200, { prepacked: true, dtypeB });
      const r = await tuneShape({ name: 'cpu', native: cpu }, cpu, s, { ...QUICK, maxMsPerShape: 200, check: false }, validators());
      const packed = prepack(intTensor([300, 200], dtypeB, 1), { transB: true, inputDtype: 'f32' });
      const e = explain(intTensor([m, 200], 'f32', 2), packed);
      expect(r.defaultConfig, `M=${m} ${dtypeB}: dispatch ${e.config} (${e.weight})`).toBe(e.config);
    }
  });

  it('the choice kept per prepacked weight follows setTunedFile: loaded, replaced and cleared', () => {
    const w = intTensor([N, K], 'f32', 1);
    const packed = prepack(w, { transB: true, config: blockedConfig(64) });
    const x = intTensor([8, K], 'f32', 2);
    const choose = () => {
      const { native, desc } = prepareMatmul('test', x, packed, {}, false);
      return dispatch(native, desc, packed.dispatchRef());
    };
    const untuned = choose();
    expect(choose()).toBe(untuned); // kept, not decided again
    const path = join(scratchDir(), 'tuned.csv');
    writeFileSync(path, tunedFileText([row(packedSpec(8), blockedConfig(64, 4))]));
    setTunedFile(path);
    expect(choose()).toEqual({ config: blockedConfig(64, 4), weight: 'packed' });
    writeFileSync(path, tunedFileText([row(packedSpec(8), gemvConfig)]));
    setTunedFile(path);
    expect(choose()).toEqual({ config: gemvConfig, weight: 'source' });
    expect(Array.from(matmulSync(x, packed).data)).toEqual(Array.from(matmulSync(x, w, { transB: true, config: gemvConfig }).data));
    setTunedFile(null);
    expect(choose()).toEqual(untuned);
  });

  it('GEMMKIT_RECORD_UNTUNED records prepacked calls as prepacked', async () => {
    const rec = join(scratchDir(), 'untuned.csv');
    const code = `
      import { matmulSync, prepack, tensor } from './src/index.js';
      const w = tensor(new Float32Array(${N * K}).fill(1), [${N}, ${K}]);
      matmulSync(tensor(new Float32Array(${3 * K}).fill(1), [3, ${K}]), prepack(w, { transB: true }));
      matmulSync(tensor(new Float32Array(${3 * K}).fill(1), [3, ${K}]), w, { transB: true });
    `;
    const r = await runNode(['--input-type=module', '-e', code], { GEMMKIT_RECORD_UNTUNED: rec });
    expect(r.code, r.stderr).toBe(0);
    const lines = readFileSync(rec, 'utf8').trim().split('\n').slice(1);
    expect(lines.sort()).toEqual([`cpu,f32,f32,false,true,plain,none,3,${N},${K}`, `cpu,f32,f32,false,true,prepacked,none,3,${N},${K}`]);
  });

  it('GEMMKIT_RECORD_UNTUNED: a prepacked weight records each new M once, and its results do not change', async () => {
    const rec = join(scratchDir(), 'untuned.csv');
    const code = `
      import { matmulSync, prepack, tensor } from './src/index.js';
      const w = tensor(Float32Array.from({ length: ${N * K} }, (_, i) => (i % 7) - 3), [${N}, ${K}]);
      const packed = prepack(w, { transB: true });
      for (const m of [3, 5, 3, 64, 5, 64]) {
        const x = tensor(Float32Array.from({ length: m * ${K} }, (_, i) => (i % 5) - 2), [m, ${K}]);
        const got = Array.from(matmulSync(x, packed).data), want = Array.from(matmulSync(x, w, { transB: true }).data);
        if (got.some((v, i) => v !== want[i])) throw new Error('M=' + m + ': the prepacked result differs');
      }
    `;
    const r = await runNode(['--input-type=module', '-e', code], { GEMMKIT_RECORD_UNTUNED: rec });
    expect(r.code, r.stderr).toBe(0);
    const lines = readFileSync(rec, 'utf8').trim().split('\n').slice(1).filter((l) => l.includes(',prepacked,'));
    expect(lines.sort()).toEqual([3, 5, 64].map((m) => `cpu,f32,f32,false,true,prepacked,none,${m},${N},${K}`).sort());
  });
});
