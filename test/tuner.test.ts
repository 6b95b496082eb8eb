// The tuner in-process: an end-to-end tune whose file matmul then uses, the tuned file's validators,
// malformed and truncated files, padded-M buckets, resume, and the numerical check rejecting a wrong
// candidate (injected through a wrapper of the native surface, so nothing faulty ships).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TunedFileError, explain, matmulSync, setTunedFile, tunedFiles } from '../src/index.js';
import { type NativeAddon, type ProblemDesc, cpuNative } from '../src/native.js';
import { f32ToBf16, bf16ToF32 } from '../src/dtype.js';
import { keyString, kernelOfConfig } from '../src/tuner/key.js';
import { parseTunedFile, readTunedFile, updateTunedFile } from '../src/tuner/tuned_file.js';
import { type TunerBackend, tune, tuneShape, specDesc } from '../src/tuner/tune.js';
import { expectMatches, randTensor, referenceMatmul } from './helpers.js';
import { QUICK, row, scratchDir, spec, tunedFileText, validators } from './tuner_helpers.js';

const cpu = cpuNative();
const cpuBackend: TunerBackend = { name: 'cpu', native: cpu };

afterEach(() => {
  setTunedFile(null);
  vi.restoreAllMocks();
});

/** A config the CPU backend accepts that differs from the heuristic for the shape (so a test can tell). */
function otherConfig(s: ReturnType<typeof spec>): string {
  const desc = specDesc('cpu', s);
  const def = cpu.heuristic(desc);
  return cpu.candidates(desc).find((c) => c !== def && c.startsWith('cpu.') && !c.startsWith('cpu.cblas'))!;
}

describe('end to end: tune, write the file, matmul dispatches from it', () => {
  it('tunes three small shapes into a valid file that explain() and matmul then use', async () => {
    const dir = scratchDir();
    const out = join(dir, 'tuned.csv');
    const shapes = [spec(7, 45, 77), spec(64, 96, 128, { bias: true, activation: 'relu' }), spec(33, 40, 50, { dtypeA: 'bf16', dtypeB: 'bf16', outDtype: 'bf16', transB: false })];
    const events: string[] = [];
    const summary = await tune({ backend: cpuBackend, cpu, shapes, opts: QUICK, out, onEvent: (e) => events.push(e.type) });
    expect(summary.results.map((r) => r.error)).toEqual([undefined, undefined, undefined]);
    expect(events.filter((e) => e === 'shape-done')).toHaveLength(3);
    const file = readTunedFile(out);
    expect(file.validators).toEqual(validators());
    expect(file.rows.map(keyString).sort()).toEqual(shapes.map(keyString).sort());
    for (const r of file.rows) {
      expect(r.status).toBe('ok');
      expect(r.maxError).toBeLessThan(r.outDtype === 'f32' ? 1e-4 : 2 ** -6); // bf16 output: its own rounding
      expect(r.kernel).toBe(kernelOfConfig(r.config));
      expect(r.speedup).toBeCloseTo(r.defaultUs / r.medianUs, 3);
    }
    expect(setTunedFile(out)).toEqual([{ path: out, backend: 'cpu', rows: 3, used: true }]);
    for (const s of shapes) {
      const a = randTensor(s.transA ? [s.k, s.m] : [s.m, s.k], s.dtypeA, 1);
      const b = randTensor(s.transB ? [s.n, s.k] : [s.k, s.n], s.dtypeB, 2);
      const bias = s.bias ? randTensor([s.n], 'f32', 3) : undefined;
      const opts = { transA: s.transA, transB: s.transB, bias, activation: s.activation, outDtype: s.outDtype };
      const e = explain(a, b, opts);
      const fileRow = file.rows.find((r) => keyString(r) === keyString(s))!;
      expect(e.source).toBe('tuned');
      expect(e.config).toBe(fileRow.config);
      expect(e.row?.file).toBe(out);
      expect(e.reason).toContain(`${out}:${fileRow.line}`);
      expectMatches(matmulSync(a, b, opts), referenceMatmul(a, b, opts), s.k, `tuned ${e.config}`);
    }
  });

  it('the default config is timed in the same run and a winner must beat it by more than the noise margin', async () => {
    const r = await tuneShape(cpuBackend, cpu, spec(16, 64, 64), { ...QUICK, noisePct: 1e6 }, validators());
    // With an impossible margin only the default can win, and its speedup is exactly 1.
    expect(r.winner).toBe(r.defaultConfig);
    expect(r.speedup).toBe(1);
    expect(r.candidates.find((c) => c.config === r.defaultConfig)?.status).toBe('winner');
  });

  it('a shape budget that runs out skips candidates but still picks a checked winner', async () => {
    const r = await tuneShape(cpuBackend, cpu, spec(64, 256, 256), { ...QUICK, maxMsPerShape: 1 }, validators());
    expect(r.row?.status).toBe('ok');
    expect(r.candidates.filter((c) => c.status === 'skipped').length).toBeGreaterThan(0);
  });

  it('--no-check rows are marked unchecked', async () => {
    const r = await tuneShape(cpuBackend, cpu, spec(8, 32, 32), { ...QUICK, check: false }, validators());
    expect(r.row?.status).toBe('unchecked');
    expect(Number.isNaN(r.row?.maxError)).toBe(true);
  });
});

/** Wraps the CPU surface with one extra candidate whose output is wrong but which times as fastest. */
function withWrongCandidate(name: string, corrupt: (desc: ProblemDesc) => ProblemDesc | void, after?: (desc: ProblemDesc) => void): NativeAddon {
  return {
    ...cpu,
    // First, so a shape's time budget running out on a loaded machine never leaves it untried.
    candidates: (d) => [name, ...cpu.candidates(d)],
    supports: (d, c) => (c === name ? null : cpu.supports(d, c)),
    timeConfig: async (d, c, o) => (c === name ? Array(o.iterations).fill(0.01) : cpu.timeConfig(d, c, o)),
    matmulAsync: async (d) => {
      if (d.config !== name) return cpu.matmulAsync(d);
      const changed = corrupt(d) ?? d;
      await cpu.matmulAsync({ ...changed, config: '' });
      after?.(changed);
    },
  };
}

describe('the numerical check rejects a wrong candidate', () => {
  const cases: [string, ReturnType<typeof spec>, NativeAddon][] = [
    ['one element off (float64 reference)', spec(45, 77, 129), withWrongCandidate('cpu.test.wrong', () => {}, (d) => { (d.c as Float32Array)[d.m * d.n - 1] += 1; })],
    ['f32 inputs rounded to bf16 (a precision bug)', spec(45, 77, 129), withWrongCandidate('cpu.test.wrong', (d) => ({ ...d, a: bf16ToF32(f32ToBf16(d.a as Float32Array)) }))],
    // M*N*K past the float64 budget: the reference is the default kernel, itself checked on float64 rows.
    ['a relative error of 1e-3 in one element (kernel reference)', spec(64, 1024, 1100), withWrongCandidate('cpu.test.wrong', () => {}, (d) => { (d.c as Float32Array)[12345] *= 1.001; })],
  ];
  for (const [what, s, native] of cases) {
    it(what, async () => {
      const r = await tuneShape({ name: 'cpu', native }, cpu, s, QUICK, validators());
      const wrong = r.candidates.find((c) => c.config === 'cpu.test.wrong')!;
      expect(wrong.status, `${what}: ${JSON.stringify(wrong)}`).toBe('incorrect');
      expect(wrong.message).toMatch(/C\[\d+, \d+\] is .* but the reference/);
      expect(r.winner).not.toBe('cpu.test.wrong');
      expect(r.row?.status).toBe('ok');
      // Without the check, the same wrapper's fake timing would have won: the check is what stops it.
      const unchecked = await tuneShape({ name: 'cpu', native }, cpu, s, { ...QUICK, check: false }, validators());
      expect(unchecked.winner).toBe('cpu.test.wrong');
    });
  }
});

describe('tuned file validators', () => {
  it('a file made for another machine is reported once and not used', () => {
    const dir = scratchDir();
    const s = spec(32, 64, 64);
    const path = join(dir, 'other.csv');
    writeFileSync(path, tunedFileText([row(s, otherConfig(s))], { ...validators(), device: 'Some Other CPU' }));
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const status = setTunedFile(path);
    expect(status[0].used).toBe(false);
    expect(status[0].reason).toMatch(/was made for device "Some Other CPU" but this machine has/);
    setTunedFile(path);
    expect(warn).toHaveBeenCalledTimes(1);
    const a = randTensor([32, 64], 'f32', 1), b = randTensor([64, 64], 'f32', 2);
    expect(explain(a, b, { transB: true }).source).toBe('default');
    for (const key of ['gemmkit', 'arch', 'libraries', 'threads', 'backend'] as const) {
      const r = { ...row(s, otherConfig(s)), ...(key === 'arch' || key === 'backend' ? { [key]: 'x' } : {}) };
      writeFileSync(path, tunedFileText([r], { ...validators(), [key]: 'x' }));
      expect(setTunedFile(path)[0].used, key).toBe(false);
    }
  });

  it('tuning into a file made for another machine is an error and leaves it untouched', async () => {
    const path = join(scratchDir(), 'other.csv');
    const text = tunedFileText([], { ...validators(), threads: '999' });
    writeFileSync(path, text);
    await expect(tune({ backend: cpuBackend, cpu, shapes: [spec(4, 4, 4)], opts: QUICK, out: path })).rejects.toThrow(/threads "999"/);
    expect(readFileSync(path, 'utf8')).toBe(text);
  });
});

describe('malformed and truncated tuned files give an error naming the file and line', () => {
  const s = spec(32, 64, 64);
  const good = () => tunedFileText([row(s, 'cpu.avx2.f32.6x16.mc24.kc256.nc4096.t1'), row(spec(8, 64, 64), 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1')]);
  const cases: [string, (t: string) => string, RegExp][] = [
    ['empty', () => '', /:1: the file is empty/],
    ['not a tuned file', () => 'M,N,K\n1,2,3\n', /:1: not a gemmkit tuned file/],
    ['validator line garbled', (t) => t.replace('# device: ', '#device='), /:4: a validator line must read/],
    ['validator missing', (t) => t.replace(/# threads: .*\n/, ''), /:7: validator line "# threads: ..." is missing/],
    ['truncated after the validators', (t) => t.split('\n').slice(0, 7).join('\n') + '\n', /:8: the header row is missing/],
    ['header changed', (t) => t.replace('median_us', 'median'), /:8: the header must be/],
    ['truncated mid-row', (t) => t.slice(0, t.length - 40), /:10: has \d+ fields, expected 19 \(the file is truncated/],
    ['a number that is not one', (t) => t.replace(/,32,64,64,/, ',32,6x4,64,'), /:\d+: column n is "6x4"; expected an integer >= 1/],
    ['an unknown status', (t) => t.replace(/,ok\n/, ',okay\n'), /:9: column status is "okay"; expected ok or unchecked/],
    ['a broken quote', (t) => t.replace(/,ok\n/, ',"ok\n'), /:\d+: not valid CSV/],
    ['a row for another backend', (t) => t.replace(/\ncpu,/, '\ncuda,'), /:9: column backend is "cuda"/],
  ];
  for (const [what, edit, want] of cases) {
    it(what, () => {
      const path = join(scratchDir(), 'bad.csv');
      writeFileSync(path, edit(good()));
      expect(() => setTunedFile(path)).toThrow(TunedFileError);
      expect(() => setTunedFile(path)).toThrow(new RegExp(path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&') + want.source));
    });
  }
  it('the unedited file parses (so each case above fails for its own reason)', () => {
    expect(parseTunedFile('x.csv', good()).rows).toHaveLength(2);
  });
  it('a missing file, and bad arguments to setTunedFile', () => {
    expect(() => setTunedFile('/nonexistent/tuned.csv')).toThrow(/\/nonexistent\/tuned.csv: cannot read the tuned file \(ENOENT\)/);
    expect(() => setTunedFile(42 as never)).toThrow(TypeError);
    expect(() => setTunedFile([''])).toThrow(/non-empty string/);
  });
});

describe('dispatch: exact rows, padded-M buckets, several files', () => {
  it('an untuned M uses the nearest tuned M above it within 2x; beyond that, the heuristic', () => {
    const dir = scratchDir();
    const path = join(dir, 'buckets.csv');
    const c32 = 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1', c128 = 'cpu.scalar.f32.4x8.mc16.kc32.nc32.t1';
    writeFileSync(path, tunedFileText([row(spec(32, 64, 96), c32), row(spec(128, 64, 96), c128)]));
    setTunedFile(path);
    const b = randTensor([64, 96], 'f32', 2);
    const at = (m: number, opts = {}) => explain(randTensor([m, 96], 'f32', m), b, { transB: true, ...opts });
    expect(at(32)).toMatchObject({ source: 'tuned', config: c32 });
    expect(at(20)).toMatchObject({ source: 'bucket', config: c32 });
    expect(at(20).reason).toMatch(/M=20 is not tuned; using the row for M=32/);
    expect(at(16)).toMatchObject({ source: 'bucket', config: c32 });
    expect(at(15).source).toBe('default'); // 32 > 2 x 15
    expect(at(64)).toMatchObject({ source: 'bucket', config: c128 });
    expect(at(33).source).toBe('default'); // 128 > 2 x 33
    expect(at(128)).toMatchObject({ source: 'tuned', config: c128 });
    expect(at(129).source).toBe('default'); // no tuned M above
    expect(at(20, { outDtype: 'bf16' }).source).toBe('default'); // another key
    expect(at(20, { activation: 'relu' }).source).toBe('default');
    expect(at(20, { config: c128 })).toMatchObject({ source: 'forced', config: c128 });
    // The bucket's config really runs, and gives the right answer.
    const a = randTensor([20, 96], 'f32', 5);
    expectMatches(matmulSync(a, b, { transB: true }), referenceMatmul(a, b, { transB: true }), 96, 'bucket M=20');
    // Batched calls are not tuned.
    expect(explain(randTensor([2, 32, 96], 'f32', 1), b, { transB: true }).source).toBe('default');
  });

  it('explain names the key and says why the heuristic picks; matmul dispatch then runs what explain names', () => {
    setTunedFile(null);
    const b = randTensor([64, 96], 'f32', 2);
    const a = randTensor([20, 96], 'f32', 3);
    const untuned = explain(a, b, { transB: true });
    expect(untuned).toMatchObject({ backend: 'cpu', source: 'default', config: cpu.heuristic(specDesc('cpu', spec(20, 64, 96))) });
    expect(untuned.key).toBe(`cpu|${keyString(spec(20, 64, 96))}`);
    expect(untuned.reason).toMatch(/^no tuned file is loaded/);
    const path = join(scratchDir(), 'other.csv');
    writeFileSync(path, tunedFileText([row(spec(200, 64, 96), 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1')]));
    setTunedFile(path);
    const missed = explain(a, b, { transB: true });
    expect(missed).toMatchObject({ source: 'default', config: untuned.config, key: untuned.key });
    expect(missed.reason).toMatch(/^20x64x96 f32->f32 nt is not in the tuned table and no tuned M within 2x above M=20/);
    expectMatches(matmulSync(a, b, { transB: true }), referenceMatmul(a, b, { transB: true }), 96, 'untuned M=20');
  });

  it('several files: the faster row wins per key', () => {
    const dir = scratchDir();
    const s = spec(32, 64, 96);
    const slow = join(dir, 'slow.csv'), fast = join(dir, 'fast.csv');
    writeFileSync(slow, tunedFileText([row(s, 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1', 50)]));
    writeFileSync(fast, tunedFileText([row(s, 'cpu.scalar.f32.4x8.mc16.kc16.nc16.t1', 20)]));
    const a = randTensor([32, 96], 'f32', 1), b = randTensor([64, 96], 'f32', 2);
    for (const order of [[slow, fast], [fast, slow]]) {
      setTunedFile(order);
      expect(explain(a, b, { transB: true }).config).toBe('cpu.scalar.f32.4x8.mc16.kc16.nc16.t1');
    }
    setTunedFile(`${slow}:${fast}`);
    expect(tunedFiles().map((f) => f.used)).toEqual([true, true]);
    expect(explain(a, b, { transB: true }).row?.file).toBe(fast);
  });
});

describe('updating a tuned file', () => {
  it('merges with the rows there, keeping the faster per key; concurrent updates lose nothing', async () => {
    const path = join(scratchDir(), 'merge.csv');
    const v = validators();
    const s = spec(8, 16, 16);
    await updateTunedFile(path, v, [row(s, 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1', 30)]);
    await updateTunedFile(path, v, [row(s, 'cpu.scalar.f32.4x8.mc16.kc16.nc16.t1', 40)]); // slower: ignored
    expect(readTunedFile(path).rows.map((r) => r.config)).toEqual(['cpu.scalar.f32.4x8.mc8.kc16.nc16.t1']);
    await updateTunedFile(path, v, [row(s, 'cpu.scalar.f32.4x8.mc24.kc16.nc16.t1', 20)]); // faster: replaces
    expect(readTunedFile(path).rows.map((r) => r.config)).toEqual(['cpu.scalar.f32.4x8.mc24.kc16.nc16.t1']);
    await Promise.all(Array.from({ length: 20 }, (_, i) => updateTunedFile(path, v, [row(spec(i + 100, 16, 16), 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1')])));
    expect(readTunedFile(path).rows).toHaveLength(21);
  });

  it('--resume skips the keys the file has', async () => {
    const path = join(scratchDir(), 'resume.csv');
    const first = await tune({ backend: cpuBackend, cpu, shapes: [spec(5, 16, 16)], opts: QUICK, out: path, resume: true });
    expect(first.results).toHaveLength(1);
    const notes: string[] = [];
    const second = await tune({ backend: cpuBackend, cpu, shapes: [spec(5, 16, 16), spec(6, 16, 16), spec(6, 16, 16)], opts: QUICK, out: path, resume: true, onNote: (m) => notes.push(m) });
    expect(second.resumed.map(keyString)).toEqual([keyString(spec(5, 16, 16))]);
    expect(second.results.map((r) => r.spec.m)).toEqual([6]); // and the duplicate shape is tuned once
    expect(notes.join()).toMatch(/--resume: 1 shape\(s\) already in/);
    expect(readTunedFile(path).rows).toHaveLength(2);
  });
});
