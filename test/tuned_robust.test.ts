// A tuned file never stops a service: rows whose config cannot run here are reported (file, line, why) and
// skipped when the file is loaded, a row that fails to run anyway gives way to the heuristic, and prepack
// and loadModel survive such rows. Clear errors for the smaller misuses: setTunedFile(''), explain with a
// config that cannot run, tune --device past the backend's devices, oversized tuned files, and a stale
// record-untuned lock that must never hold up a matmul.
import { closeSync, openSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type DType, MLP_METADATA_KEY, TunedFileError, explain, forward, info, loadModel, matmul, matmulSync, prepack, saveSafetensors,
  setTunedFile, tunedFiles,
} from '../src/index.js';
import { cpuNative } from '../src/native.js';
import type { GemmSpec } from '../src/tuner/key.js';
import { MAX_TUNED_FILE_BYTES, type TunedRow, readTunedFile, rowToRecord } from '../src/tuner/tuned_file.js';
import { expectMatches, randTensor, referenceMatmul } from './helpers.js';
import { row, runCli, runNode, scratchDir, spec, tunedFileText } from './tuner_helpers.js';

afterEach(() => {
  setTunedFile(null);
  vi.restoreAllMocks();
});

const N = 24, K = 40;
const f32Blocked = info().kernels.find((k) => k.available && k.family === 'blocked' && k.inputs === 'any' && k.isa !== 'scalar')
  ?? info().kernels.find((k) => k.id === 'scalar.f32.4x8')!;
const bf16Blocked = info().kernels.find((k) => k.available && k.family === 'blocked' && k.inputs === 'bf16');
const blockedConfig = (threads = 1) => `cpu.${f32Blocked.id}.mc${f32Blocked.mr}.kc64.nc${f32Blocked.nr}.t${threads}`;

// Rows a hostile or stale tuned file may hold, each with its own key (M), and what the warning must say.
interface BadRow { what: string; spec: GemmSpec; config: string; why: RegExp }
function badRows(prepacked = false): BadRow[] {
  const s = (m: number, extra: Partial<GemmSpec> = {}) => spec(m, N, K, { prepacked, ...extra });
  const bf16 = { dtypeA: 'bf16' as DType, dtypeB: 'bf16' as DType, outDtype: 'bf16' as DType };
  return [
    { what: 'an unknown kernel', spec: s(1), config: 'cpu.nosuch.f32.4x8.mc8.kc16.nc16.t1', why: /unknown micro-kernel 'nosuch\.f32\.4x8'/ },
    ...(bf16Blocked ? [{ what: 'a bf16 kernel on an f32 row', spec: s(2), config: `cpu.${bf16Blocked.id}.mc${bf16Blocked.mr}.kc64.nc${bf16Blocked.nr}.t1`, why: /needs bf16 A and B/ }] : []),
    { what: 'AMX on a CPU without it (here: the emulated AMX kernel, offered only when asked for)', spec: s(3, bf16), config: 'cpu.amxemu.bf16.32x32.mc32.kc64.nc32.t1', why: /cannot run here: the emulated AMX kernel is offered only with GEMMKIT_CPU_EMULATE_AMX=1/ },
    { what: 'ks0', spec: s(4), config: 'cpu.gemv.scalar.kc256.ks0.t1', why: /ks must be in \[1, 64\]/ },
    { what: 't9999', spec: s(5), config: blockedConfig(9999), why: /threads must be in \[1, 1024\]/ },
    { what: 'a BLAS that is not loaded', spec: s(6), config: 'cpu.cblas.nosuchblas-1.0', why: /names a system BLAS that is not loaded here/ },
    { what: 'a cuda config on a cpu row', spec: s(7, bf16), config: 'cuda.sm80.bf16.mma.128x128x32.w4.s3.g8', why: /is not a cpu config name/ },
    { what: 'garbage', spec: s(8), config: 'garbage', why: /'garbage' is not a cpu config name/ },
  ];
}

function badRow(b: BadRow): TunedRow {
  const r = row(b.spec, b.config);
  return b.config.includes('.') ? r : { ...r, kernel: b.config };
}

function capturedWarnings(): string[] {
  const seen: string[] = [];
  vi.spyOn(process, 'emitWarning').mockImplementation(((w: string | Error) => {
    seen.push(typeof w === 'string' ? w : w.message);
  }) as typeof process.emitWarning);
  return seen;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function inputsFor(s: GemmSpec, seed: number) {
  const x = randTensor([s.m, K], s.dtypeA, seed);
  const w = randTensor(s.transB ? [N, K] : [K, N], s.dtypeB, seed + 1);
  return { x, w, opts: { transB: s.transB, outDtype: s.outDtype } };
}

describe('a tuned file never stops a service', () => {
  it('rows whose config cannot run here are reported once (file, line, why) and skipped; their calls run the heuristic', async () => {
    const bad = badRows();
    const good = row(spec(100, N, K), blockedConfig()); // no bucket of the bad rows' Ms
    const path = join(scratchDir(), 'tuned.csv');
    writeFileSync(path, tunedFileText([...bad.map(badRow), good]));
    const lines = new Map(readTunedFile(path).rows.map((r) => [r.config, r.line!]));
    const warnings = capturedWarnings();
    expect(setTunedFile(path)).toEqual([{ path, backend: 'cpu', rows: bad.length + 1, skipped: bad.length, used: true }]);
    for (const b of bad) {
      const about = warnings.filter((w) => w.includes(`${path}:${lines.get(b.config)}:`));
      expect(about, `${b.what}: ${warnings.join('\n')}`).toHaveLength(1);
      expect(about[0], b.what).toMatch(b.why);
      expect(about[0], b.what).toMatch(/the row is skipped/);
      const { x, w, opts } = inputsFor(b.spec, b.spec.m);
      const e = explain(x, w, opts);
      expect(e.source, `${b.what}: ${e.reason}`).toBe('default');
      expectMatches(matmulSync(x, w, opts), referenceMatmul(x, w, opts), K, b.what);
      expectMatches(await matmul(x, w, opts), referenceMatmul(x, w, opts), K, `${b.what} (async)`);
    }
    expect(warnings).toHaveLength(bad.length);
    // The good row is used.
    const { x, w } = inputsFor(good, 3);
    expect(explain(x, w, { transB: true })).toMatchObject({ source: 'tuned', config: good.config });
    // Loading the file again reports nothing new.
    setTunedFile(path);
    expect(warnings).toHaveLength(bad.length);
  });

  it('prepack and loadModel with prepacked rows that cannot run here pack for the heuristic and run', async () => {
    const bad = badRows(true);
    // Rows for the model's weight [N, K] f32 at M = 1..8 (as `tune --model` writes them).
    const path = join(scratchDir(), 'tuned.csv');
    writeFileSync(path, tunedFileText(bad.map(badRow)));
    capturedWarnings();
    expect(setTunedFile(path)[0]).toMatchObject({ skipped: bad.length, used: true });
    const w = randTensor([N, K], 'f32', 1);
    for (const keepSource of [true, false]) {
      const packed = prepack(w, { transB: true, keepSource });
      for (const b of bad.filter((r) => r.spec.dtypeA === 'f32')) {
        const x = randTensor([b.spec.m, K], 'f32', b.spec.m);
        expectMatches(matmulSync(x, packed), referenceMatmul(x, w, { transB: true }), K, `prepacked ${b.what}`);
      }
    }
    const model = join(scratchDir(), 'mlp.safetensors');
    saveSafetensors(model, { 'fc.weight': w }, { [MLP_METADATA_KEY]: JSON.stringify({ type: 'mlp', layers: [{ op: 'linear', weight: 'fc.weight' }] }) });
    const mlp = await loadModel(model);
    const x = randTensor([5, K], 'f32', 9);
    expectMatches(await forward(mlp, x), referenceMatmul(x, w, { transB: true }), K, 'loadModel + forward');
  });

  it('a row that passed the check but fails to run gives way to the heuristic, with one warning per key; opts.config still throws', async () => {
    const s = spec(3, N, K);
    const config = blockedConfig(9999); // refused by the backend when it runs
    const path = join(scratchDir(), 'tuned.csv');
    writeFileSync(path, tunedFileText([row(s, config)]));
    // The backend vouches for the row while the file loads (as it would for a row that breaks later).
    const supports = vi.spyOn(cpuNative(), 'supports').mockReturnValue(null);
    expect(setTunedFile(path)[0]).toMatchObject({ used: true, rows: 1 });
    supports.mockRestore();
    const warnings = capturedWarnings();
    const { x, w, opts } = inputsFor(s, 1);
    expect(explain(x, w, opts)).toMatchObject({ source: 'tuned', config });
    expectMatches(matmulSync(x, w, opts), referenceMatmul(x, w, opts), K, 'sync, first call');
    expectMatches(await matmul(x, w, opts), referenceMatmul(x, w, opts), K, 'async');
    expectMatches(matmulSync(x, w, opts), referenceMatmul(x, w, opts), K, 'sync, again');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`${escape(path)}:9: config ${escape(config)} failed to run .*threads must be in \\[1, 1024\\].*the row is dropped`));
    expect(explain(x, w, opts).source).toBe('default');
    expect(() => matmulSync(x, w, { ...opts, config })).toThrow(/threads must be in/);
    await expect(matmul(x, w, { ...opts, config })).rejects.toThrow(/threads must be in/);
  });

  it('the same for a prepacked weight: the row that fails on its kept source gives way to the heuristic', async () => {
    const s = spec(3, N, K, { prepacked: true });
    const config = blockedConfig(9999);
    const path = join(scratchDir(), 'tuned.csv');
    writeFileSync(path, tunedFileText([row(s, config)]));
    const supports = vi.spyOn(cpuNative(), 'supports').mockReturnValue(null);
    setTunedFile(path);
    supports.mockRestore();
    const warnings = capturedWarnings();
    const { x, w } = inputsFor(s, 4);
    const packed = prepack(w, { transB: true });
    expect(explain(x, packed)).toMatchObject({ source: 'tuned', config });
    expectMatches(await matmul(x, packed), referenceMatmul(x, w, { transB: true }), K, 'prepacked, async');
    expectMatches(matmulSync(x, packed), referenceMatmul(x, w, { transB: true }), K, 'prepacked, sync');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/failed to run 3x24x40 f32->f32 nt prepacked .*the row is dropped/);
    expect(explain(x, packed).source).toBe('default');
  });

  it('a prepacked row that cannot pack its weight gives way to the heuristic layout, with one warning', () => {
    // amxemu reads bf16 panels: it cannot pack an f32 weight (a row the backend vouched for at load).
    const path = join(scratchDir(), 'tuned.csv');
    const config = 'cpu.amxemu.bf16.32x32.mc32.kc64.nc32.t1';
    writeFileSync(path, tunedFileText([row(spec(64, N, K, { prepacked: true }), config)]));
    const supports = vi.spyOn(cpuNative(), 'supports').mockReturnValue(null);
    setTunedFile(path);
    supports.mockRestore();
    const warnings = capturedWarnings();
    const w = randTensor([N, K], 'f32', 2);
    const packed = prepack(w, { transB: true });
    expect(packed.layout).not.toMatch(/^amxemu/);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/:9: config cpu\.amxemu\.bf16\.32x32\.mc32\.kc64\.nc32\.t1 cannot pack this weight .*the row is dropped/);
    const x = randTensor([64, K], 'f32', 3);
    expectMatches(matmulSync(x, packed), referenceMatmul(x, w, { transB: true }), K, 'prepacked after the row was dropped');
    prepack(w, { transB: true });
    expect(warnings).toHaveLength(1);
  });

  it('GEMMKIT_TUNED_FILE with such rows: a fresh process runs every call and warns once per row', async () => {
    const bad = badRows();
    const path = join(scratchDir(), 'tuned.csv');
    writeFileSync(path, tunedFileText(bad.map(badRow)));
    const code = `
      import { matmulSync, prepack, tensor } from './src/index.js';
      process.on('warning', (w) => console.error('WARNING ' + w.message));
      const specs = ${JSON.stringify(bad.map((b) => b.spec))};
      for (const s of specs) {
        const x = tensor(new Float32Array(s.m * ${K}).fill(1), [s.m, ${K}], s.dtypeA);
        const w = tensor(new Float32Array(${N * K}).fill(1), [${N}, ${K}], s.dtypeB);
        for (const b of [w, prepack(w, { transB: true }), prepack(w, { transB: true, keepSource: false })]) {
          const y = matmulSync(x, b, { transB: true, outDtype: s.outDtype }).toFloat32();
          if (y.some((v) => v !== ${K})) throw new Error('wrong result for M=' + s.m);
        }
      }
      console.log('ok');
    `;
    const r = await runNode(['--input-type=module', '-e', code], { GEMMKIT_TUNED_FILE: path });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('ok');
    expect(r.stderr.match(/WARNING/g)).toHaveLength(bad.length);
    for (const b of bad) expect(r.stderr).toMatch(b.why);
  });
});

describe('clear errors instead of silent accepts', () => {
  it("setTunedFile: '' is a TypeError; null, undefined and [] clear the table", () => {
    const path = join(scratchDir(), 'tuned.csv');
    writeFileSync(path, tunedFileText([row(spec(16, N, K), blockedConfig())]));
    setTunedFile(path);
    for (const bad of ['', ':', '::']) {
      expect(() => setTunedFile(bad)).toThrow(TypeError);
      expect(() => setTunedFile(bad)).toThrow(/names no file; pass null \(or nothing\) to clear the tuned table/);
      expect(tunedFiles()).toHaveLength(1); // still loaded
    }
    expect(() => setTunedFile([path, ''])).toThrow(/paths\[1\] must be a non-empty string/);
    for (const clear of [null, undefined, []] as const) {
      setTunedFile(path);
      expect(setTunedFile(clear as never)).toEqual([]);
      expect(tunedFiles()).toEqual([]);
    }
    setTunedFile(path);
    expect(setTunedFile()).toEqual([]);
  });

  it('explain with an opts.config that cannot run the call is a RangeError saying why', () => {
    const x = randTensor([4, K], 'f32', 1), w = randTensor([N, K], 'f32', 2);
    expect(() => explain(x, w, { transB: true, config: 'garbage' })).toThrow(RangeError);
    expect(() => explain(x, w, { transB: true, config: 'garbage' })).toThrow(/explain: config "garbage" cannot run this call: 'garbage' is not a cpu config name/);
    expect(() => explain(x, w, { transB: true, config: blockedConfig(9999) })).toThrow(/threads must be in/);
    expect(() => explain(x, w, { transB: true, config: 'cpu.cblas.nosuchblas-1.0' })).toThrow(/not loaded here/);
    if (bf16Blocked) {
      expect(() => explain(x, w, { transB: true, config: `cpu.${bf16Blocked.id}.mc${bf16Blocked.mr}.kc64.nc${bf16Blocked.nr}.t1` })).toThrow(/needs bf16 A and B/);
    }
    expect(() => explain(x, prepack(w, { transB: true, keepSource: false }), { config: 'cpu.gemv.scalar.kc256.ks1.t1' })).toThrow(/keepSource: false/);
    expect(explain(x, w, { transB: true, config: blockedConfig() })).toMatchObject({ source: 'forced', config: blockedConfig() });
  });

  it('tune --device past the backend\'s devices is an error naming it', async () => {
    const r = await runCli(['tune', '--shape', '4x4x4', '--device', '5', '--out', join(scratchDir(), 't.csv')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--device 5 does not exist: backend 'cpu' has 1 device\(s\) \(device 0\)/);
  });

  it(`a tuned file over ${MAX_TUNED_FILE_BYTES} bytes is refused before it is read; an overlong line is an error naming it`, async () => {
    const dir = scratchDir();
    const big = join(dir, 'big.csv');
    const fd = openSync(big, 'w');
    closeSync(fd);
    writeFileSync(big, tunedFileText([row(spec(16, N, K), blockedConfig())]));
    const { truncateSync } = await import('node:fs');
    truncateSync(big, MAX_TUNED_FILE_BYTES + 1); // sparse: costs no disk
    expect(() => setTunedFile(big)).toThrow(TunedFileError);
    expect(() => setTunedFile(big)).toThrow(new RegExp(`${escape(big)}: the tuned file is ${MAX_TUNED_FILE_BYTES + 1} bytes, more than the ${MAX_TUNED_FILE_BYTES} bytes \\(16 MiB\\)`));
    const long = join(dir, 'long.csv');
    writeFileSync(long, tunedFileText([row(spec(16, N, K), blockedConfig())]).replace('# device: ', `# device: ${'x'.repeat(5000)}`));
    expect(() => setTunedFile(long)).toThrow(new RegExp(`${escape(long)}:4: the line is longer than 4096 characters`));
    // Through GEMMKIT_TUNED_FILE in a fresh process: a warning, and the calls run.
    const r = await runNode(['--input-type=module', '-e', `
      import { matmulSync, tensor } from './src/index.js';
      process.on('warning', (w) => console.error('WARNING ' + w.message));
      matmulSync(tensor([1, 2], [1, 2]), tensor([3, 4], [2, 1]));
      console.log('ok');
    `], { GEMMKIT_TUNED_FILE: big });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/WARNING GEMMKIT_TUNED_FILE: .*more than the 16777216 bytes \(16 MiB\).*; the file is not used/);
  });

  it('a large tuned file (30,000 rows, 5.5 MB) loads, and its rows dispatch', () => {
    const template = row(spec(1, 1, 64), blockedConfig());
    const lines: string[] = [];
    for (let n = 1; lines.length < 30_000; n++) {
      for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) lines.push(rowToRecord({ ...template, m, n }).join(','));
    }
    const path = join(scratchDir(), 'large.csv');
    writeFileSync(path, `${tunedFileText([])}${lines.join('\n')}\n`);
    expect(setTunedFile(path)).toEqual([{ path, backend: 'cpu', rows: lines.length, used: true }]);
    const x = randTensor([32, 64], 'f32', 1), w = randTensor([777, 64], 'f32', 2);
    expect(explain(x, w, { transB: true })).toMatchObject({ source: 'tuned', config: blockedConfig() });
  });
});

describe('GEMMKIT_RECORD_UNTUNED never holds up a matmul', () => {
  // A script that times its first matmul (a miss, so recorded) and exits; the record is written after it.
  const script = `
    import { matmulSync, tensor } from './src/index.js';
    process.on('warning', (w) => console.error('WARNING ' + w.message));
    const x = tensor(new Float32Array(4 * 8).fill(1), [4, 8]), w = tensor(new Float32Array(8 * 8).fill(1), [8, 8]);
    matmulSync(x, w); // loads the addon
    const t0 = performance.now();
    matmulSync(tensor(new Float32Array(3 * 8).fill(1), [3, 8]), w);
    console.log(JSON.stringify({ ms: performance.now() - t0 }));
  `;
  const sleeper = () => spawn('sleep', ['60'], { stdio: 'ignore' });

  it('a stale lock held by a live but unrelated pid (an old lock file) is broken by its age, and the shapes are recorded', async () => {
    const rec = join(scratchDir(), 'untuned.csv');
    const other = sleeper();
    try {
      writeFileSync(`${rec}.lock`, String(other.pid));
      const old = Date.now() / 1000 - 3600;
      utimesSync(`${rec}.lock`, old, old);
      const r = await runNode(['--input-type=module', '-e', script], { GEMMKIT_RECORD_UNTUNED: rec });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).ms).toBeLessThan(1000); // was 10 s: the matmul waited for the lock
      expect(readFileSync(rec, 'utf8').trim().split('\n').slice(1).sort()).toEqual([
        'cpu,f32,f32,false,false,plain,none,3,8,8', 'cpu,f32,f32,false,false,plain,none,4,8,8',
      ]);
    } finally {
      other.kill();
    }
  });

  it('a fresh lock held by another live process: the matmul does not wait, and the process exits saying what it could not record', async () => {
    const rec = join(scratchDir(), 'untuned.csv');
    const other = sleeper();
    try {
      writeFileSync(`${rec}.lock`, String(other.pid));
      const t0 = performance.now();
      const r = await runNode(['--input-type=module', '-e', script], { GEMMKIT_RECORD_UNTUNED: rec });
      const wall = performance.now() - t0;
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).ms).toBeLessThan(1000);
      expect(r.stderr).toMatch(/WARNING GEMMKIT_RECORD_UNTUNED: 2 untuned shape\(s\) not recorded into .*untuned\.csv \(could not lock .* within 1000 ms/);
      expect(wall).toBeLessThan(30_000); // the exit waits a bounded time for the lock
    } finally {
      other.kill();
    }
  });
});
