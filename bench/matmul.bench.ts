// npm run bench: gemmkit's CPU kernels against the hardware's ceilings and the peer libraries.
//  1. The target shapes (targetShapes: f32 and bf16 square 1024 and 2048, x @ W^T at M = 1..512, gemmkit
//     unpacked and prepacked) in two regimes, every library timed the same way in each:
//       rotated  calls cycle through enough operand copies that none finds its operands in cache (as many
//                bytes as the peers rotate through: 4x the last-level cache, at least 128 MiB, within 64
//                copies), as in serving, where every layer has its own weights;
//       hot      one operand set called again and again: whatever of it the caches hold stays there.
//     gemmkit and the peers alternate shape by shape. Each row: gemmkit's GFLOP/s as a share of the f32 FMA
//     peak (f32) or the AVX512-BF16 and AMX-BF16 peaks (bf16) that bench/ceilings measures (the better of a
//     measurement before and one after), the peers' GFLOP/s (best variant of each library) and the ratios.
//  2. Decode bandwidth (M = 1 over 1 GiB of weights against the read bandwidth) and prepacked vs unpacked.
//  3. GFLOP/s of the default config on 1 thread and on the whole pool.
// Peers come from bench/peers (set them up once with `bench/peers/setup.sh`); without them those columns
// say so. Hold the machine's exclusive lock while it runs (see README).
//   --quick          small shapes and short timing (CI smoke run)
//   --time-ms MS     timing budget per measurement (default 400; quick 20)
//   --no-peers       skip ceilings and peers
import { parseArgs } from 'node:util';
import { type DType, PackedWeight, Tensor, explain, info, matmulSync, prepack, zeros } from '../src/index.js';
import { prepareMatmul } from '../src/matmul.js';
import { randomTensor } from './inputs.js';
import { type Ceilings, type PeerResult, type PeerShape, bestCeilings, measureCeilings, peerStatus, rotationFootprintBytes, runPeers, shapeToken, targetSizes } from './peers/index.js';
import { machineLoad, printTable, rotationCopies, timeSync } from './timing.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'time-ms': { type: 'string' },
    'no-peers': { type: 'boolean', default: false },
  },
});
const quick = args.quick;
const timeMs = Number(args['time-ms'] ?? (quick ? 20 : 400));
const inf = info();
const pool = inf.threads;
const MiB = 1024 * 1024;

// ---- timing -----------------------------------------------------------------------------------------
interface Operands { a: Tensor; b: Tensor | PackedWeight }

/** matmul's transB for a set: a PackedWeight carries its own. */
function transBFor(o: Operands, transB: boolean): boolean | undefined {
  return o.b instanceof PackedWeight ? undefined : transB;
}

/**
 * Median ms of matmulSync over rotating operand sets, with the given config. Each set writes its own C,
 * allocated once, as the peers' runners do: a new result per call would time the allocator too (fresh pages
 * faulted in by the GEMM's threads and the collector's threads competing for the cores, which made square
 * 1024 f32 on 2 cores take 7 ms in some loops and 14 ms in others).
 */
function timeOurs(sets: Operands[], transB: boolean, outDtype: DType, config: string): number {
  const outs = sets.map((o) => {
    const [bRows, bCols] = o.b.shape;
    const t = o.b instanceof PackedWeight ? o.b.transB : transB;
    return zeros([o.a.shape[0], t ? bRows : bCols], outDtype);
  });
  const call = (i: number) => {
    const o = sets[i];
    matmulSync(o.a, o.b, { transB: transBFor(o, transB), out: outs[i], config });
  };
  try {
    return timeSync((i) => call(i % sets.length), { minRuns: 3, maxRuns: 2000, budgetMs: timeMs });
  } finally {
    for (const t of outs) t.dispose();
  }
}

// For a prepacked weight, the heuristic for its packed panel (the counterpart of oneDNN's reordered
// weights). Without a tuned row, matmul itself runs M = 1 on the weight's kept source instead
// (explain() says which; see matmulConfig); those calls are the unpacked rows' GEMV kernel.
function heuristicConfig(o: Operands, transB: boolean, threads?: number): string {
  const { native, desc } = prepareMatmul('bench', o.a, o.b, { transB: transBFor(o, transB) }, !(o.b instanceof PackedWeight));
  const c = native.heuristic(desc);
  return threads === undefined ? c : c.replace(/\.t\d+$/, `.t${threads}`);
}

/** The config matmul runs the call with (explain(): on a prepacked weight at M = 1, GEMV on its kept source). */
function matmulConfig(o: Operands, transB: boolean): string {
  return explain(o.a, o.b, { transB: transBFor(o, transB) }).config;
}

/** Operand copies whose weights total at least `bytes` (and at least one). */
function operandSets(m: number, n: number, k: number, transB: boolean, dtype: DType, bytes: number, packed: boolean): Operands[] {
  const weightBytes = n * k * (dtype === 'f32' ? 4 : 2);
  return Array.from({ length: rotationCopies(weightBytes + m * k * 4, bytes) }, (_, i) => {
    const w = randomTensor(transB ? [n, k] : [k, n], dtype, 2 + 2 * i);
    return { a: randomTensor([m, k], dtype, 3 + 2 * i), b: packed ? prepack(w, { transB }) : w };
  });
}

// ---- the tables ---------------------------------------------------------------------------------------
const fx = (v: number, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
const pct = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? `${(100 * v).toFixed(0)}%` : 'n/a');
// The kernel and thread count of a config name (the cache blocks are the heuristic's; see README).
const shortConfig = (c: string) => c.replace(/^cpu\./, '').replace(/\.(mc\d+\.kc\d+\.nc\d+|kc\d+\.ks\d+)\.t(\d+)$/, ' t$2');

console.log(`gemmkit ${inf.version} on ${inf.cpu.model} (${inf.cpu.features.join(' ')}), pool of ${pool} threads, ${inf.compiler}`);
console.log(`at the start: ${machineLoad(pool).note}`);
const peers = !args['no-peers'];
let ceilings: Ceilings | undefined;
if (peers) {
  for (const s of peerStatus()) console.log(`  peer ${s.peer.padEnd(18)} ${s.available ? '' : '(not available) '}${s.detail}`);
  ceilings = await measureCeilings(pool, quick ? { readMiB: 256 } : {});
  console.log(`ceilings (${pool} threads): f32 FMA ${fx(ceilings.fmaF32Gflops)} GFLOP/s, AVX512-BF16 ${fx(ceilings.avx512Bf16Gflops ?? NaN)}, ` +
    `AMX-BF16 ${ceilings.amxBf16Gflops !== undefined ? fx(ceilings.amxBf16Gflops) : `n/a (${ceilings.amxNote ?? 'absent'})`}, read ${fx(ceilings.readGBps)} GB/s`);
} else {
  console.log('ceilings and peers: not measured (--no-peers)');
}

// As much as the peers rotate through (4x the last-level cache, at least 128 MiB), so the ratios are fair.
const rotate = quick ? 16 * MiB : rotationFootprintBytes();
const regimes = [{ name: 'rotated', footprint: rotate }, { name: 'hot', footprint: 0 }] as const;
type Regime = (typeof regimes)[number]['name'];
const { squares, weights, ms: targetMs } = targetSizes({ quick });
const peerTimeMs = quick ? 20 : 300;
// A library's column is its fastest variant (openblas: as detected or forced to SkylakeX; blis: skx or detected).
const LIBRARIES: [string, string[]][] = [['openblas', ['openblas', 'openblas-skylakex']], ['blis', ['blis', 'blis-detected']], ['onednn', ['onednn']]];
const fastest = (results: readonly PeerResult[], variants?: string[]) =>
  results.filter((r) => Number.isFinite(r.medianMs) && (!variants || variants.includes(r.peer))).sort((x, y) => x.medianMs - y.medianMs)[0];

/** gemmkit's median for one shape, weight form and regime, and the peers' results for that shape and regime. */
interface TargetResult { regime: Regime; shape: PeerShape; weight: string; config: string; ms: number; peers: readonly PeerResult[] }
const targetResults: TargetResult[] = [];
function record(r: TargetResult): void {
  targetResults.push(r);
  const best = fastest(r.peers);
  console.log(`${r.regime} ${shapeToken(r.shape)} ${r.weight} ${shortConfig(r.config)}: ${fx(r.ms, 3)} ms, ${fx((2 * r.shape.m * r.shape.n * r.shape.k) / r.ms / 1e6)} GF/s` +
    (best ? `; fastest peer ${best.peer} ${fx(best.gflops)} GF/s` : ''));
}
/** The peers on one shape in one regime (each its own process), timed right after gemmkit on it. */
const peersOn = async (shape: PeerShape, footprintBytes: number) =>
  peers ? runPeers([shape], { threads: pool, timeMs: peerTimeMs, footprintBytes }) : [];

// The engines alternate shape by shape (gemmkit, the peers, gemmkit prepacked, ...), so a change in the
// machine's load over the minutes a run takes moves all of them alike.
// Squares: A [S, S] @ B [S, S].
for (const dtype of ['f32', 'bf16'] as DType[]) {
  for (const s of squares) {
    const sets = operandSets(s, s, s, false, dtype, rotate, false);
    const config = heuristicConfig(sets[0], false);
    const shape: PeerShape = { m: s, n: s, k: s, transB: false, dtype: dtype as 'f32' | 'bf16' };
    for (const r of regimes) {
      const ms = timeOurs(r.name === 'hot' ? sets.slice(0, 1) : sets, false, dtype, config);
      record({ regime: r.name, shape, weight: '-', config, ms, peers: await peersOn(shape, r.footprint) });
    }
  }
}

// Inference x @ W^T with W [N, K], ours unpacked and prepacked (each copy's packed panel beside its source).
for (const dtype of ['f32', 'bf16'] as DType[]) {
  for (const [n, k] of weights) {
    const plain = operandSets(targetMs.at(-1)!, n, k, true, dtype, rotate, false);
    const packed = plain.map((o) => prepack(o.b as Tensor, { transB: true }));
    for (const m of targetMs) {
      const shape: PeerShape = { m, n, k, transB: true, dtype: dtype as 'f32' | 'bf16' };
      const inputs = plain.map((_, i) => randomTensor([m, k], dtype, 7 + i));
      for (const r of regimes) {
        const copies = r.name === 'hot' ? 1 : plain.length;
        const unpackedSets = plain.slice(0, copies).map((o, i) => ({ a: inputs[i], b: o.b }));
        const packedSets = packed.slice(0, copies).map((b, i) => ({ a: inputs[i], b }));
        // The prepacked rows time what matmul runs on a prepacked weight: its panel, or at M = 1 its source.
        const cu = heuristicConfig(unpackedSets[0], true), cp = matmulConfig(packedSets[0], true);
        const mu = timeOurs(unpackedSets, true, dtype, cu);
        const peerResults = await peersOn(shape, r.footprint);
        const mp = timeOurs(packedSets, true, dtype, cp);
        record({ regime: r.name, shape, weight: 'unpacked', config: cu, ms: mu, peers: peerResults });
        record({ regime: r.name, shape, weight: 'prepacked', config: cp, ms: mp, peers: peerResults });
      }
    }
    plain.length = 0;
    packed.length = 0;
  }
}

// The ceilings again after the long part of the run: each peak is the best of both measurements.
if (ceilings) {
  const after = await measureCeilings(pool, quick ? { readMiB: 256 } : {});
  console.log(`ceilings again (${pool} threads): f32 FMA ${fx(after.fmaF32Gflops)} GFLOP/s, AVX512-BF16 ${fx(after.avx512Bf16Gflops ?? NaN)}, ` +
    `AMX-BF16 ${fx(after.amxBf16Gflops ?? NaN)}, read ${fx(after.readGBps)} GB/s; the table uses the better of each`);
  ceilings = bestCeilings(ceilings, after);
}

// The share of the measured peak the compute-bound rows must reach (see goalRow).
const GOAL_OF_PEAK = 0.85;
const targetRows: string[][] = [[
  'regime', 'shape', 'dtype', 'W', 'gemmkit kernel', 'ms', 'GF/s', 'W GB/s', '% FMA', '% BF16', '% AMX',
  ...LIBRARIES.map(([lib]) => `${lib} GF/s`), 'best peer', 'vs best', 'vs oneDNN', 'goal', 'met',
]];
for (const { regime, shape: s, weight, config, ms, peers: results } of targetResults) {
  const gf = (2 * s.m * s.n * s.k) / ms / 1e6;
  const wGBps = s.transB ? (s.n * s.k * (s.dtype === 'f32' ? 4 : 2)) / ms / 1e6 : NaN;
  const best = fastest(results);
  const onednn = fastest(results, ['onednn']);
  // The compute-bound goals (squares, and x @ W^T at M >= 32 on a prepacked weight): at least oneDNN's speed
  // and at least GOAL_OF_PEAK of the peak of the kernel's unit (f32: FMA; bf16: AMX-BF16 where measured,
  // else AVX512-BF16). The decode goal (M = 1 on a prepacked weight: a stream of the weight, no peak to
  // reach): at least oneDNN's speed on its reordered weight. Unpacked weights carry no goal (at small M
  // they keep their lead over the peers).
  const computeGoal = !s.transB || (weight === 'prepacked' && s.m >= 32);
  const decodeGoal = weight === 'prepacked' && s.m === 1;
  const vsOnednn = onednn ? onednn.medianMs / ms : NaN;
  const peak = !ceilings ? NaN : s.dtype === 'f32' ? ceilings.fmaF32Gflops : (ceilings.amxBf16Gflops ?? ceilings.avx512Bf16Gflops ?? NaN);
  const ofPeak = gf / peak;
  const misses = [...(vsOnednn < 1 ? ['oneDNN'] : []), ...(computeGoal && ofPeak < GOAL_OF_PEAK ? ['peak'] : [])];
  const measured = Number.isFinite(vsOnednn) && (decodeGoal || Number.isFinite(ofPeak));
  const met = !(computeGoal || decodeGoal) || !measured ? '' : misses.length === 0 ? 'yes' : `NO: ${misses.join(', ')}`;
  const f32 = s.dtype === 'f32';
  targetRows.push([
    regime, s.transB ? `M=${s.m} W ${s.n}x${s.k}` : `square ${s.m}`, s.dtype, weight, shortConfig(config), fx(ms, 3), fx(gf), s.transB ? fx(wGBps) : '-',
    f32 ? pct(ceilings ? gf / ceilings.fmaF32Gflops : undefined) : '-',
    f32 ? '-' : pct(ceilings?.avx512Bf16Gflops ? gf / ceilings.avx512Bf16Gflops : undefined),
    f32 ? '-' : pct(ceilings?.amxBf16Gflops ? gf / ceilings.amxBf16Gflops : undefined),
    ...LIBRARIES.map(([, variants]) => {
      const r = fastest(results, variants);
      if (r) return fx(r.gflops);
      return results.some((x) => variants.includes(x.peer)) ? 'n/a' : '-';
    }),
    best?.peer ?? '-', best ? fx(best.medianMs / ms, 2) : 'n/a', fx(vsOnednn, 2),
    computeGoal ? `>= 1.0x oneDNN, ${(100 * GOAL_OF_PEAK).toFixed(0)}% peak` : decodeGoal ? '>= 1.0x oneDNN' : '', met,
  ]);
}
console.log();
printTable(targetRows, (col) => (col >= 5 && col <= 13) || col === 15 || col === 16);
console.log("  '-': not applicable (openblas and BLIS have no bf16 GEMM; without AVX-512 neither has oneDNN); n/a: not measured (peer not set up, or failed: see bench:peers)");

const rows: string[][] = [['figure', 'shape', 'dtype', 'gemmkit kernel', 'ms', 'value', 'vs', 'their value', 'ratio', 'goal', 'met']];
function row(target: string, shape: string, dtype: string, ours: string, ms: number, value: string, vs: string, theirs: string, ratio: number, goal: number | undefined) {
  const met = goal === undefined || !Number.isFinite(ratio) ? '' : ratio >= goal ? 'yes' : 'NO';
  rows.push([target, shape, dtype, ours, fx(ms, 3), value, vs, theirs, Number.isFinite(ratio) ? ratio.toFixed(2) : 'n/a', goal === undefined ? '' : `>= ${goal}`, met]);
  console.log(rows.at(-1)!.join(' | '));
}

// Decode bandwidth: M = 1 with bf16 weights cycling through at least 1 GiB, vs the measured read bandwidth.
{
  const [n, k] = quick ? [1024, 1024] : [4096, 14336];
  for (const packed of [false, true]) {
    const sets = operandSets(1, n, k, true, 'bf16', (quick ? 64 : 1024) * MiB, packed);
    const config = packed ? matmulConfig(sets[0], true) : heuristicConfig(sets[0], true);
    const ms = timeOurs(sets, true, 'bf16', config);
    const gbps = (n * k * 2) / ms / 1e6;
    row(`M=1 bf16 over ${fx((sets.length * n * k * 2) / 2 ** 30, 2)} GiB${packed ? ' prepacked' : ''}`, `M=1 W ${n}x${k}`, 'bf16',
      shortConfig(config), ms, `${fx(gbps)} GB/s`, 'read bandwidth', ceilings ? `${fx(ceilings.readGBps)} GB/s` : '-', ceilings ? gbps / ceilings.readGBps : NaN, 0.85);
  }
}

// Prepacked vs unpacked at small M (no goal: the unpacked GEMV path keeps its lead there).
{
  const [n, k] = quick ? [1024, 1024] : [4096, 4096];
  for (const dtype of ['f32', 'bf16'] as DType[]) {
    const plain = operandSets(32, n, k, true, dtype, rotate, false);
    const packed = plain.map((o) => ({ a: o.a, b: prepack(o.b as Tensor, { transB: true }) }));
    for (const m of quick ? [1, 32] : [1, 2, 4, 8, 16, 32]) {
      const pl = plain.map((o) => ({ a: randomTensor([m, k], dtype, 9), b: o.b }));
      const pk = packed.map((o, i) => ({ a: pl[i].a, b: o.b }));
      const cu = heuristicConfig(pl[0], true), cp = heuristicConfig(pk[0], true);
      const mu = timeOurs(pl, true, dtype, cu), mp = timeOurs(pk, true, dtype, cp);
      row('prepacked vs unpacked', `M=${m} W ${n}x${k}`, dtype, shortConfig(cp), mp, `${fx((2 * m * n * k) / mp / 1e6)} GF/s`,
        shortConfig(cu), `${fx(mu, 3)} ms`, mu / mp, undefined);
    }
  }
}

console.log();
printTable(rows);

// The default config on 1 thread and on the pool.
console.log();
const plainRows: string[][] = [['shape', 'dtype', 'threads', 'median ms', 'GFLOP/s', 'config']];
for (const dtype of ['f32', 'bf16'] as DType[]) {
  const cases: { label: string; m: number; n: number; k: number; transB: boolean }[] = [];
  for (const s of quick ? [256] : [256, 512, 1024, 2048]) cases.push({ label: `square ${s}`, m: s, n: s, k: s, transB: false });
  for (const m of quick ? [1, 8] : [1, 8, 32, 128]) {
    const w = quick ? 1024 : 4096;
    cases.push({ label: `M=${m} x W ${w}x${w}^T`, m, n: w, k: w, transB: true });
  }
  for (const c of cases) {
    const sets = operandSets(c.m, c.n, c.k, c.transB, dtype, rotate, false);
    for (const threads of [...new Set([1, pool])]) {
      const config = heuristicConfig(sets[0], c.transB, threads);
      const ms = timeOurs(sets, c.transB, dtype, config);
      plainRows.push([c.label, dtype, String(threads), ms.toFixed(3), fx((2 * c.m * c.n * c.k) / ms / 1e6), config]);
    }
  }
}
printTable(plainRows);
console.log(`\nat the end: ${machineLoad(pool).note}`);
