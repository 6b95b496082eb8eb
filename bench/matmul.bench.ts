// npm run bench: gemmkit's CPU kernels against the hardware's ceilings and the peer libraries, in one run
// and one table (issue 3's targets), then GFLOP/s on square and inference shapes for 1 thread and the
// whole pool (issue 2's rows). Every figure is the median of timed calls that rotate through enough input
// copies to keep operands out of the last-level cache (as many bytes as the peers rotate through, 4x the
// LLC and at least 128 MiB, within 64 copies; 1 GiB of weights for the decode bandwidth row). Ceilings and
// peers come from bench/peers (set them up once with `npm run bench:peers`); without them those columns
// say so. Hold the machine's exclusive lock while it runs (see README).
//   --quick          small shapes and short timing (CI smoke run)
//   --time-ms MS     timing budget per measurement (default 400; quick 20)
//   --no-peers       skip ceilings and peers
import { parseArgs } from 'node:util';
import { type DType, PackedWeight, Tensor, info, matmulSync, prepack } from '../src/index.js';
import { prepareMatmul } from '../src/matmul.js';
import { randomTensor } from './inputs.js';
import { type Ceilings, type PeerResult, type PeerShape, measureCeilings, peerStatus, rotationFootprintBytes, runPeers, shapeToken, targetShapes, targetSizes } from './peers/index.js';
import { printTable, rotationCopies, timeSync } from './timing.js';

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

/** Median ms of matmulSync over rotating operand sets, with the given config. */
function timeOurs(sets: Operands[], transB: boolean, outDtype: DType, config: string): number {
  const call = (o: Operands) => matmulSync(o.a, o.b, { transB: o.b instanceof PackedWeight ? undefined : transB, outDtype, config });
  return timeSync((i) => call(sets[i % sets.length]), { minRuns: 3, maxRuns: 2000, budgetMs: timeMs });
}

// For a prepacked weight, the heuristic for its packed panel (the counterpart of oneDNN's reordered
// weights). Without a tuned row, matmul itself runs M = 1 on the weight's kept source instead
// (explain() says which); those calls are the unpacked rows' GEMV kernel.
function heuristicConfig(o: Operands, transB: boolean, threads?: number): string {
  const packed = o.b instanceof PackedWeight;
  const { native, desc } = prepareMatmul('bench', o.a, o.b, { transB: packed ? undefined : transB }, !packed);
  const c = native.heuristic(desc);
  return threads === undefined ? c : c.replace(/\.t\d+$/, `.t${threads}`);
}

/** Operand copies whose weights total at least `bytes` (and at least one). */
function operandSets(m: number, n: number, k: number, transB: boolean, dtype: DType, bytes: number, packed: boolean): Operands[] {
  const weightBytes = n * k * (dtype === 'f32' ? 4 : 2);
  return Array.from({ length: rotationCopies(weightBytes + m * k * 4, bytes) }, (_, i) => {
    const w = randomTensor(transB ? [n, k] : [k, n], dtype, 2 + 2 * i);
    return { a: randomTensor([m, k], dtype, 3 + 2 * i), b: packed ? prepack(w, { transB }) : w };
  });
}

// ---- the table --------------------------------------------------------------------------------------
const rows: string[][] = [['target', 'shape', 'dtype', 'gemmkit kernel', 'ms', 'value', 'vs', 'their value', 'ratio', 'goal', 'met']];
const fx = (v: number, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
function row(target: string, shape: string, dtype: string, ours: string, ms: number, value: string, vs: string, theirs: string, ratio: number, goal: number | undefined) {
  const met = goal === undefined || !Number.isFinite(ratio) ? '' : ratio >= goal ? 'yes' : 'NO';
  rows.push([target, shape, dtype, ours, fx(ms, 3), value, vs, theirs, Number.isFinite(ratio) ? ratio.toFixed(2) : 'n/a', goal === undefined ? '' : `>= ${goal}`, met]);
  console.log(rows.at(-1)!.join(' | '));
}
// The kernel and thread count of a config name (the cache blocks are the heuristic's; see README).
const shortConfig = (c: string) => c.replace(/^cpu\./, '').replace(/\.(mc\d+\.kc\d+\.nc\d+|kc\d+\.ks\d+)\.t(\d+)$/, ' t$2');

console.log(`gemmkit ${inf.version} on ${inf.cpu.model} (${inf.cpu.features.join(' ')}), pool of ${pool} threads, ${inf.compiler}`);
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

// Shapes of issue 3's targets (weights W [N, K]).
const { squares, weights, ms: decodeMs } = targetSizes({ quick });
const peerResults = peers ? await runPeers(targetShapes({ quick }), { threads: pool, timeMs: quick ? 20 : 300 }) : [];
function bestPeer(s: PeerShape, only?: string): PeerResult | undefined {
  const rs = peerResults.filter((r) => shapeToken(r.shape) === shapeToken(s) && Number.isFinite(r.medianMs) && (!only || r.peer === only));
  return rs.sort((x, y) => x.medianMs - y.medianMs)[0];
}
// As much as the peers rotate through (4x the last-level cache, at least 128 MiB), so the ratios are fair.
const rotate = quick ? 16 * MiB : rotationFootprintBytes();

// f32 and bf16 square: fastest f32 peer (and the FMA peak); oneDNN for bf16.
for (const dtype of ['f32', 'bf16'] as DType[]) {
  for (const s of squares) {
    const sets = operandSets(s, s, s, false, dtype, rotate, false);
    const config = heuristicConfig(sets[0], false);
    const ms = timeOurs(sets, false, dtype, config);
    const gf = (2 * s ** 3) / ms / 1e6;
    const shape: PeerShape = { m: s, n: s, k: s, transB: false, dtype: dtype as 'f32' | 'bf16' };
    const p = bestPeer(shape, dtype === 'bf16' ? 'onednn' : undefined);
    const goal = dtype === 'f32' ? 1.0 : 1.5;
    row(`${dtype} square vs ${dtype === 'f32' ? 'best peer' : 'oneDNN'}`, `square ${s}`, dtype, shortConfig(config), ms, `${fx(gf)} GF/s`,
      p ? p.peer : 'no peer', p ? `${fx(p.gflops)} GF/s` : '-', p ? p.medianMs / ms : NaN, goal);
    if (dtype === 'f32' && ceilings) {
      row('f32 square vs FMA peak', `square ${s}`, dtype, shortConfig(config), ms, `${fx(gf)} GF/s`, 'FMA peak', `${fx(ceilings.fmaF32Gflops)} GF/s`, gf / ceilings.fmaF32Gflops, 0.8);
    }
    if (dtype === 'bf16' && ceilings?.avx512Bf16Gflops) {
      row('bf16 square vs BF16 peak', `square ${s}`, dtype, shortConfig(config), ms, `${fx(gf)} GF/s`, 'BF16 peak', `${fx(ceilings.avx512Bf16Gflops)} GF/s`, gf / ceilings.avx512Bf16Gflops, undefined);
    }
  }
}

// Inference x @ W^T: f32 vs the fastest peer, bf16 vs oneDNN (reordered weights), ours unpacked and prepacked.
for (const dtype of ['f32', 'bf16'] as DType[]) {
  for (const [n, k] of weights) {
    for (const packed of [false, true]) {
      const sets = operandSets(decodeMs.at(-1)!, n, k, true, dtype, rotate, packed);
      for (const m of decodeMs) {
        const ms_ = sets.map((o) => ({ a: randomTensor([m, k], dtype, 7), b: o.b }));
        const config = heuristicConfig(ms_[0], true);
        const ms = timeOurs(ms_, true, dtype, config);
        const gf = (2 * m * n * k) / ms / 1e6;
        const p = bestPeer({ m, n, k, transB: true, dtype: dtype as 'f32' | 'bf16' }, dtype === 'bf16' ? 'onednn' : undefined);
        row(`${dtype} x@W^T ${packed ? 'prepacked' : 'unpacked'} vs ${dtype === 'f32' ? 'best peer' : 'oneDNN'}`, `M=${m} W ${n}x${k}`, dtype,
          shortConfig(config), ms, `${fx(gf)} GF/s`, p ? p.peer : 'no peer', p ? `${fx(p.gflops)} GF/s` : '-', p ? p.medianMs / ms : NaN, 1.2);
      }
      sets.length = 0;
    }
  }
}

// Decode bandwidth: M = 1 with bf16 weights cycling through at least 1 GiB, vs the measured read bandwidth.
{
  const [n, k] = quick ? [1024, 1024] : [4096, 14336];
  for (const packed of [false, true]) {
    const sets = operandSets(1, n, k, true, 'bf16', (quick ? 64 : 1024) * MiB, packed);
    const config = heuristicConfig(sets[0], true);
    const ms = timeOurs(sets, true, 'bf16', config);
    const gbps = (n * k * 2) / ms / 1e6;
    row(`M=1 bf16 over ${fx((sets.length * n * k * 2) / 2 ** 30, 2)} GiB${packed ? ' prepacked' : ''}`, `M=1 W ${n}x${k}`, 'bf16',
      shortConfig(config), ms, `${fx(gbps)} GB/s`, 'read bandwidth', ceilings ? `${fx(ceilings.readGBps)} GB/s` : '-', ceilings ? gbps / ceilings.readGBps : NaN, 0.85);
  }
}

// Prepacked vs unpacked at small M.
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
        shortConfig(cu), `${fx(mu, 3)} ms`, mu / mp, 1.2);
    }
  }
}

console.log();
printTable(rows);

// Issue 2's rows: the default config on 1 thread and on the pool.
console.log();
const plainRows: string[][] = [['shape', 'dtype', 'threads', 'median ms', 'GFLOP/s', 'config']];
for (const dtype of ['f32', 'bf16'] as DType[]) {
  const cases: { label: string; m: number; n: number; k: number; transB: boolean }[] = [];
  for (const s of quick ? [256] : [256, 512, 1024, 2048]) cases.push({ label: `square ${s}`, m: s, n: s, k: s, transB: false });
  for (const m of quick ? [1, 8] : [1, 8, 32, 128]) cases.push({ label: `M=${m} x W 4096x4096^T`, m, n: quick ? 1024 : 4096, k: quick ? 1024 : 4096, transB: true });
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
