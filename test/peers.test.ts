// bench/peers/index.ts without the peers (and bench/timing.ts, the benches' shared median and loops): parsing of the runners' output, aggregation into results,
// and a peer that is not set up being reported instead of thrown. Nothing here times anything, and
// nothing needs bench/peers/setup.sh (CI runs npm test before any peer is set up).
import { describe, expect, it } from 'vitest';
import {
  bestCeilings,
  collectResults,
  gflopsOf,
  PEER_NAMES,
  parseCeilings,
  parseRunnerOutput,
  peerEnv,
  peerStatus,
  type PeerShape,
  runPeers,
  shapeToken,
  targetShapes,
} from '../bench/peers/index.js';
import { median, rotationCopies, timeAsync, timeSync } from '../bench/timing.js';
import { info } from '../src/index.js';

const nowhere = { buildDir: '/nonexistent/gemmkit-peers', python: '/nonexistent/python3' };
const square: PeerShape = { m: 64, n: 64, k: 64, transB: false, dtype: 'f32' };
const decode: PeerShape = { m: 1, n: 4096, k: 14336, transB: true, dtype: 'f32' };
const bf16: PeerShape = { m: 8, n: 256, k: 512, transB: true, dtype: 'bf16', outDtype: 'f32' };

// What the runners print (C++ compact JSON, Python json.dumps with spaces), plus a stray library line.
const runnerOutput = [
  '{"kind":"info","peer":"onednn","detail":"oneDNN 2.6.3 isa avx512_core_bf16, 2 threads","ok":true}',
  '{"kind":"result","shape":"64x64x64:n:f32","medianMs":0.004,"runs":2000,"sets":16,"impl":"brg:avx512_core, weights BA16a64b, out f32"}',
  'onednn_verbose,info,some library chatter',
  '{"kind": "error", "shape": "1x4096x14336:t:f32", "reason": "wrong result: sampled error 0.5 relative to sum |a*b|"}',
  '{"kind": "skip", "shape": "8x256x512:t:bf16:f32", "reason": "numpy has no bf16 matmul"}',
  '',
].join('\n');

describe('peer runner protocol', () => {
  it('median of odd, even, unsorted and empty lists', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(median([])).toBeNaN();
  });

  it('the timing loops: warm-up calls, then at least minRuns and at most maxRuns timed calls, each awaited', async () => {
    const seen: number[] = [];
    expect(timeSync((i) => seen.push(i), { warmup: 2, minRuns: 5 })).toBeGreaterThanOrEqual(0);
    expect(seen).toEqual([0, 1, 0, 1, 2, 3, 4]); // a fixed count without a budget
    seen.length = 0;
    timeSync((i) => seen.push(i), { warmup: 0, minRuns: 2, maxRuns: 9, budgetMs: 1e9 });
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]); // the budget never runs out: maxRuns stops it
    seen.length = 0;
    let running = false;
    const ms = await timeAsync(async (i) => {
      expect(running).toBe(false); // one call at a time
      running = true;
      await new Promise((r) => setTimeout(r, 1));
      seen.push(i);
      running = false;
    }, { minRuns: 3 });
    expect(seen).toEqual([0, 0, 1, 2]);
    expect(ms).toBeGreaterThan(0);
  });

  it('operand copies to rotate through: enough for the footprint, at least 1, at most 64', () => {
    expect(rotationCopies(100, 1000)).toBe(10);
    expect(rotationCopies(300, 1000)).toBe(4);
    expect(rotationCopies(5000, 1000)).toBe(1);
    expect(rotationCopies(1, 1e9)).toBe(64);
    expect(rotationCopies(0, 1000)).toBe(64);
  });

  it('shape tokens name transposition and dtypes the way the runners parse them', () => {
    expect(shapeToken(square)).toBe('64x64x64:n:f32');
    expect(shapeToken(decode)).toBe('1x4096x14336:t:f32');
    expect(shapeToken(bf16)).toBe('8x256x512:t:bf16:f32');
    expect(shapeToken({ ...bf16, outDtype: 'bf16' })).toBe('8x256x512:t:bf16');
  });

  it('GFLOP/s counts 2*M*N*K per call', () => {
    expect(gflopsOf({ m: 1000, n: 1000, k: 1000, transB: false, dtype: 'f32' }, 2)).toBeCloseTo(1000, 9);
  });

  it('parses info, result, error and skip lines and keeps anything else aside', () => {
    const parsed = parseRunnerOutput(runnerOutput);
    expect(parsed.info).toEqual({ peer: 'onednn', detail: 'oneDNN 2.6.3 isa avx512_core_bf16, 2 threads', ok: true });
    expect(parsed.lines.map((l) => l.kind)).toEqual(['info', 'result', 'error', 'skip']);
    expect(parsed.other).toEqual(['onednn_verbose,info,some library chatter']);
    expect(parseRunnerOutput('{"kind":"info","peer":"blis","detail":"x","ok":false}').info?.ok).toBe(false);
  });

  it('aggregates a run: timed, failed (NaN with the reason), skipped (left out) and missing (NaN, exit named)', () => {
    const missing: PeerShape = { m: 7, n: 45, k: 77, transB: true, dtype: 'f32' };
    const results = collectResults('onednn', [square, decode, bf16, missing], parseRunnerOutput(runnerOutput), {
      code: 134,
      signal: null,
      stderr: 'terminate called after throwing\n',
    });
    expect(results.map((r) => r.shape)).toEqual([square, decode, missing]);
    const [timed, failed, lost] = results;
    expect(timed.medianMs).toBe(0.004);
    expect(timed.gflops).toBeCloseTo((2 * 64 ** 3) / 0.004 / 1e6, 9);
    expect(timed.impl).toContain('brg:avx512_core');
    expect(timed.runs).toBe(2000);
    expect(failed.medianMs).toBeNaN();
    expect(failed.note).toContain('wrong result');
    expect(lost.medianMs).toBeNaN();
    expect(lost.note).toContain('exited with code 134');
    expect(lost.note).toContain('terminate called');
  });

  it('reads the ceilings JSON; a unit the CPU lacks stays undefined', () => {
    const c = parseCeilings(
      '{"threads":2,"cpu":"AMD EPYC","features":"avx2+fma avx512f","fmaF32Gflops":232.8,"avx512FmaF32Gflops":227.6,' +
        '"avx2FmaF32Gflops":232.8,"avx512Bf16Gflops":null,"amxBf16Gflops":null,"amxNote":"CPU has no AMX-BF16","readGBps":29.7,"readMedianGBps":27.1,"readMiB":1024}\n',
      2,
    );
    expect(c).toMatchObject({ threads: 2, fmaF32Gflops: 232.8, avx2FmaF32Gflops: 232.8, readGBps: 29.7, readMedianGBps: 27.1, amxNote: 'CPU has no AMX-BF16' });
    expect(c.avx512Bf16Gflops).toBeUndefined();
    expect(c.amxBf16Gflops).toBeUndefined();
  });

  it('bestCeilings keeps the higher of each figure, and a measured figure over a failed one', () => {
    const a = parseCeilings('{"threads":2,"fmaF32Gflops":200,"avx512Bf16Gflops":100,"amxBf16Gflops":null,"readGBps":30}', 2);
    const b = parseCeilings('{"threads":2,"fmaF32Gflops":250,"avx512Bf16Gflops":90,"amxBf16Gflops":null,"readGBps":20,"readMedianGBps":15}', 2);
    expect(bestCeilings(a, b)).toMatchObject({ fmaF32Gflops: 250, avx512Bf16Gflops: 100, readGBps: 30, readMedianGBps: 15 });
    expect(bestCeilings(a, b).amxBf16Gflops).toBeUndefined();
    const failed = { threads: 2, fmaF32Gflops: NaN, readGBps: NaN, note: 'building the ceilings program failed' };
    expect(bestCeilings(failed, a)).toMatchObject({ fmaF32Gflops: 200, readGBps: 30 });
    expect(bestCeilings(failed, a).note).toBeUndefined();
    expect(bestCeilings(a, failed)).toMatchObject({ fmaF32Gflops: 200, readGBps: 30 });
  });

  it('gives every threading runtime the thread count and drops inherited ISA forcing', () => {
    const env = peerEnv(2, { PATH: '/bin', OPENBLAS_CORETYPE: 'Prescott', BLIS_ARCH_TYPE: '3', OMP_NUM_THREADS: '8' });
    expect(env).toMatchObject({ PATH: '/bin', OMP_NUM_THREADS: '2', OPENBLAS_NUM_THREADS: '2', BLIS_NUM_THREADS: '2' });
    expect(env.OPENBLAS_CORETYPE).toBeUndefined();
    expect(env.BLIS_ARCH_TYPE).toBeUndefined();
  });

  it('the target shapes: squares 1024 and 2048 and x @ W^T for M = 1..512, f32 and bf16', () => {
    const tokens = targetShapes().map(shapeToken);
    for (const t of ['1024x1024x1024:n:f32', '2048x2048x2048:n:bf16', '1x14336x4096:t:f32', '128x4096x14336:t:bf16', '512x4096x4096:t:f32']) {
      expect(tokens).toContain(t);
    }
    expect(tokens).toHaveLength(2 * (2 + 3 * 5));
  });
});

describe('a peer that is not set up', () => {
  it('peerStatus says so and how to set it up', () => {
    const status = peerStatus(nowhere);
    expect(status.map((s) => s.peer)).toEqual([...PEER_NAMES]);
    for (const s of status) {
      expect(s.available).toBe(false);
      expect(s.detail).toContain('bench/peers/setup.sh');
    }
  });

  it('runPeers returns a noted NaN result per shape the peer could run, without throwing', async () => {
    const results = await runPeers([square, bf16], { threads: 2, timeMs: 1, ...nowhere });
    // f32 shapes for all five peers, the bf16 shape only for oneDNN (numpy and BLIS have no bf16 GEMM);
    // without AVX-512 neither the peers forced onto AVX-512 kernels nor oneDNN's bf16.
    const avx512 = info().cpu.features.includes('avx512');
    const forced = ['openblas-skylakex', 'blis'];
    expect(results.map((r) => `${r.peer} ${shapeToken(r.shape)}`)).toEqual([
      ...PEER_NAMES.filter((p) => avx512 || !forced.includes(p)).map((p) => `${p} 64x64x64:n:f32`),
      ...(avx512 ? ['onednn 8x256x512:t:bf16:f32'] : []),
    ]);
    for (const r of results) {
      expect(r.medianMs).toBeNaN();
      expect(r.note).toMatch(/not set up .*bench\/peers\/setup\.sh/);
    }
  });

  it('runPeers runs only the peers asked for', async () => {
    const results = await runPeers([square], { threads: 1, peers: ['blis-detected'], ...nowhere });
    expect(results.map((r) => r.peer)).toEqual(['blis-detected']);
  });
});
