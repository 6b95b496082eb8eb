// npm run bench:models: the figures of the model benchmarks, measured in one run.
//  1. the machine's ceilings (bench/ceilings): streaming read bandwidth, the bound for decoding, which
//     reads every weight once per token; the peak of the unit the weight GEMMs run on (AMX or AVX512-BF16
//     for bf16 x bf16 where the CPU has it, else f32 FMA), the bound for prefill;
//  2. digits: accuracy on the held-out 30%, single-image latency p50/p99, predictions/s at batch 256;
//  3. a Llama-style model with random weights (hidden 1024, 8 layers, intermediate 2816, 16 heads, 4 KV
//     heads, vocab 32000), in bf16 and in f32: written to a temp dir, loaded with loadModel, and also
//     converted to GGUF (bench/peers/gguf.ts) for llama.cpp through node-llama-cpp (bench/peers/llama_cpp.ts),
//     the two engines checked to give the same next-token logits on the same ids, then timed alternately
//     (gemmkit, llama.cpp, gemmkit, ...; medians) with the same thread count: prefill tokens/s for 128- and
//     512-token prompts, decode tokens/s at batch 1, each against its bound (weight bytes read per token /
//     read bandwidth; weight-GEMM FLOPs per token / peak; the ceilings measured again after the rounds, the
//     better of the two measurements used) and gemmkit against llama.cpp; decode again on 1 thread for both
//     engines (bench/models_decode.ts in a child process whose pool has 1 thread, against 1 thread's read
//     bandwidth), and the pool's threads against 1;
//  4. the choices inside: the attention op vs plain loops; small GEMMs sync vs on the thread pool.
// Medians; run it alone on the machine (`flock -x /tmp/gemmkit-cpu.lock npm run bench:models`).
//   --quick       a small model, short prompts and few rounds, as a smoke test (CI); llama.cpp runs only if
//                 already set up (bench/peers/setup-llama-cpp.sh), else shows n/a
//   --rounds N    alternate rounds per figure (default 5; quick 2)
//   --no-peers    gemmkit alone (no llama.cpp)
// Without --quick and --no-peers, a llama.cpp peer that is not set up is set up first (npm registry).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type DType, type LlamaModel, createKVCache, dtypeSize, forward, info, loadModel, matmul, matmulSync, modelGemmShapes, writeRandomLlamaCheckpoint } from '../src/index.js';
import { attention as attentionOp, tensor } from '../src/index.js';
import { gemmPolicy, linearInputDtype } from '../src/models/layers.js';
import { softmaxRows } from './legacy_models.js';
import { measureSpeed, runDigits } from '../examples/digits/digits.js';
import { randomTensor } from './inputs.js';
import { type EngineSteps, type Timings, benchLlamaConfig, gemmkitEngine, llamaCppEngine, promptIds, timeRound } from './models_engines.js';
import { llamaCheckpointToGguf } from './peers/gguf.js';
import { type Ceilings, bestCeilings, measureCeilings } from './peers/index.js';
import { LLAMA_CPP_SETUP_SCRIPT, type LlamaCppModel, LlamaCppPeer, compareLogits, llamaCppStatus } from './peers/llama_cpp.js';
import { machineLoad, median, printTable, timeAsync } from './timing.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    'no-peers': { type: 'boolean', default: false },
  },
});
const quick = args.quick;
const rounds = Number(args.rounds ?? (quick ? 2 : 5));
if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`--rounds must be a positive integer, got ${args.rounds}`);

/** Median ms of `runs` awaited calls of fn after `warmup` untimed ones. */
const timeMs = (fn: () => unknown, runs: number, warmup = 1) => timeAsync(fn, { warmup, minRuns: runs });
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

const inf = info();
console.log(`gemmkit ${inf.version} on ${inf.cpu.model} (${inf.cpu.features.join(' ')}), pool of ${inf.threads} threads${quick ? ' [--quick]' : ''}`);
const startLoad = machineLoad(inf.threads);
console.log(`at the start: ${startLoad.note}`);
if (startLoad.busy && inf.threads > 1) {
  console.log('  (with other work on the cores, compare the engines on one thread each: GEMMKIT_NUM_THREADS=1 npm run bench:models)');
}
const tmp = mkdtempSync(join(tmpdir(), 'gemmkit-bench-models-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true })); // also when a step throws

// --- 1. the machine's ceilings (bench/ceilings via bench/peers: best of several runs) ------------------------
const ceilings = await measureCeilings(inf.threads, { readMiB: quick ? 64 : 1024 });
if (ceilings.note) console.log(`ceilings: ${ceilings.note}`);
console.log(`\n== ceilings on ${inf.threads} threads: streaming read ${ceilings.readGBps.toFixed(1)} GB/s (median ${ceilings.readMedianGBps?.toFixed(1) ?? '?'}), f32 FMA ${ceilings.fmaF32Gflops.toFixed(0)} GFLOP/s, AVX512-BF16 ${ceilings.avx512Bf16Gflops?.toFixed(0) ?? 'n/a'}, AMX-BF16 ${ceilings.amxBf16Gflops?.toFixed(0) ?? 'n/a'}`);

// --- 2. digits -------------------------------------------------------------------------------------------
{
  const r = await runDigits(join(tmp, 'digits.safetensors'));
  const s = await measureSpeed(r.model, r.test, quick ? 1 : 10, 256, quick ? 20 : 400);
  console.log(`\n== digits (64-64-10 MLP, trained in ${(r.trainMs / 1000).toFixed(2)} s on ${r.train.count} images)`);
  console.log(`accuracy on the ${r.test.count} held-out images: ${(100 * r.accuracy).toFixed(2)}%`);
  console.log(`single-image latency: p50 ${(s.p50Ms * 1000).toFixed(1)} us, p99 ${(s.p99Ms * 1000).toFixed(1)} us`);
  console.log(`throughput at batch 256: ${Math.round(s.predictionsPerSecond).toLocaleString('en-US')} predictions/s`);
}

// --- 3. Llama-style decoder: gemmkit and llama.cpp on the same weights ------------------------------------
const hfConfig = benchLlamaConfig(quick);
const promptLens = quick ? [32, 64] : [128, 512];
const decodeSteps = quick ? 8 : 32;
const threads = inf.threads; // both engines: gemmkit's pool, sized to the CPUs the process may use
// Next-token logits of the two engines must agree to this (max |diff| / max |logit|): f32 weights differ
// only in summation order and llama.cpp's f16 KV cache; bf16 runs also round activations to bf16 inside
// each engine's GEMMs, at different points.
const logitsTolerance: Record<'f32' | 'bf16', number> = { f32: 1e-2, bf16: 5e-2 };

let llamaCpp: LlamaCppPeer | undefined;
let llamaCppNote = '';
if (args['no-peers']) {
  llamaCppNote = 'n/a (--no-peers)';
} else {
  if (!llamaCppStatus().available && !quick) {
    console.log('\nsetting up the llama.cpp peer (bench/peers/setup-llama-cpp.sh)');
    spawnSync('bash', [LLAMA_CPP_SETUP_SCRIPT], { stdio: 'inherit' });
  }
  const opened = await LlamaCppPeer.open({ threads });
  if (opened instanceof LlamaCppPeer) llamaCpp = opened;
  else llamaCppNote = `n/a (${opened.error})`;
}
const cores = availableParallelism();
console.log(`\n== Llama-style decoder: gemmkit and llama.cpp on the same weights, ${threads} threads each${threads !== cores ? ` (this process may use ${cores} CPUs)` : ''}`);
console.log(`llama.cpp peer: ${llamaCpp ? llamaCpp.detail : llamaCppNote}`);

// The weight GEMMs run in the dtype the model feeds them: the compute bound is that unit's peak.
function computePeak(c: Ceilings, dtype: DType): [string, number] {
  if (linearInputDtype(dtype) !== 'bf16') return ['f32 FMA', c.fmaF32Gflops];
  return c.amxBf16Gflops ? ['AMX-BF16', c.amxBf16Gflops] : ['AVX512-BF16', c.avx512Bf16Gflops ?? NaN];
}

/** One figure of the table before its bound is known: tokens/s of each engine (NaN without the peer). */
interface Figure {
  figure: string;
  dtype: 'bf16' | 'f32';
  /** Threads of each engine (decode is also timed on 1 thread, in a child process). */
  threads: number;
  ours: number;
  theirs: number;
  /** decode: weight bytes read per token; prefill: weight-GEMM FLOPs per token. */
  bound: { kind: 'memory'; bytesPerToken: number; readGBps?: number } | { kind: 'compute'; flopsPerToken: number };
}
const figures: Figure[] = [];
// Decode on 1 thread as well (both engines, and the read bandwidth of 1 thread), in a child process whose
// pool has one thread (bench/models_decode.ts), on the same checkpoint and GGUF; not with --quick.
const oneThreadDecode = !quick && threads > 1;
interface OneThreadDecode { threads: number; readGBps: number; gemmkitMs: number[]; llamaCppMs: number[] | null; note: string }
function decodeOnOneThread(dir: string, gguf: string | undefined): OneThreadDecode {
  const script = fileURLToPath(new URL('./models_decode.ts', import.meta.url));
  const childArgs = [...process.execArgv, script, '--dir', dir, '--prompt', String(promptLens[0]), '--steps', String(decodeSteps), '--rounds', String(rounds), ...(gguf ? ['--gguf', gguf] : [])];
  const run = spawnSync(process.execPath, childArgs, { env: { ...process.env, GEMMKIT_NUM_THREADS: '1' }, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const last = run.stdout?.trim().split('\n').at(-1) ?? '';
  if (run.status !== 0 || !last.startsWith('{')) throw new Error(`bench/models_decode.ts on 1 thread failed (${run.status ?? run.signal}): ${(run.stderr ?? '').trim().slice(-600)}`);
  const r = JSON.parse(last) as OneThreadDecode;
  if (r.threads !== 1) throw new Error(`bench/models_decode.ts ran on ${r.threads} threads, not 1`);
  console.log(`decode on 1 thread (bench/models_decode.ts): read bandwidth ${r.readGBps.toFixed(1)} GB/s${r.note ? `; ${r.note}` : ''}`);
  return r;
}
let mismatch = false;
let model!: LlamaModel; // the bf16 model, kept for section 4
for (const dtype of ['bf16', 'f32'] as const) {
  const dir = join(tmp, `llama-${dtype}`);
  const gguf = join(tmp, `llama-${dtype}.gguf`);
  let t0 = process.hrtime.bigint();
  writeRandomLlamaCheckpoint(dir, hfConfig, { dtype, seed: 1 });
  const writeS = seconds(t0);
  t0 = process.hrtime.bigint();
  const ours = (await loadModel(dir)) as LlamaModel;
  const loadS = seconds(t0);
  const c = ours.config;
  const gemms = await modelGemmShapes(dir, [1]);
  const gemmWeights = gemms.reduce((sum, g) => sum + g.count * g.n * g.k, 0);
  const bytesPerToken = gemms.reduce((sum, g) => sum + g.count * g.n * g.k * dtypeSize(g.dtype), 0);
  console.log(`\n-- ${dtype} weights: hidden ${c.hiddenSize}, ${c.numHiddenLayers} layers, intermediate ${c.intermediateSize}, ${c.numAttentionHeads} heads / ${c.numKeyValueHeads} KV heads, vocab ${c.vocabSize}; ` +
    `${(gemmWeights / 1e6).toFixed(1)} M weights in GEMMs (${(bytesPerToken / 1e6).toFixed(0)} MB read per token); checkpoint written in ${writeS.toFixed(1)} s, loaded by gemmkit in ${loadS.toFixed(2)} s`);

  const capacity = Math.max(...promptLens) + decodeSteps + 1;
  const engines: [string, EngineSteps][] = [['gemmkit', gemmkitEngine(ours, capacity)]];
  let theirs: LlamaCppModel | undefined;
  if (llamaCpp) {
    t0 = process.hrtime.bigint();
    llamaCheckpointToGguf(dir, gguf, { contextLength: capacity });
    const convertS = seconds(t0);
    t0 = process.hrtime.bigint();
    theirs = await llamaCpp.load(gguf, { contextSize: capacity, batchSize: Math.max(...promptLens) });
    console.log(`GGUF written in ${convertS.toFixed(1)} s, loaded by llama.cpp in ${seconds(t0).toFixed(2)} s (${theirs.settings})`);
    // The same next-token distribution on the same ids, before anything is timed.
    const ids = promptIds(promptLens[0], c.vocabSize);
    const a = (await forward(ours, ids, { cache: createKVCache(ours, 1, ids.length), logits: 'last' })).data as Float32Array;
    const b = await theirs.logits(ids, c.vocabSize);
    const cmp = compareLogits(a, b);
    const ok = cmp.topOurs === cmp.topTheirs && cmp.relativeMaxDiff < logitsTolerance[dtype];
    if (!ok) mismatch = true;
    console.log(`next-token logits after ${ids.length} ids: max |gemmkit - llama.cpp| / max |logit| = ${cmp.relativeMaxDiff.toExponential(2)} (limit ${logitsTolerance[dtype]}), ` +
      `top-1 ${cmp.topOurs} / ${cmp.topTheirs}${cmp.topOurs !== cmp.topTheirs ? ` (gemmkit's logit gap ${cmp.topGap.toExponential(2)})` : ''}: ${ok ? 'same' : 'MISMATCH: the timings below compare different models'}`);
    engines.push(['llama.cpp', llamaCppEngine(theirs)]);
  }

  // Warm-up (first calls pack, allocate and page in), then rounds that alternate the engines per figure.
  const timings = new Map(engines.map(([name]) => [name, { prefill: new Map(), decode: [] } as Timings]));
  const scratch: Timings = { prefill: new Map(), decode: [] };
  for (const [, e] of engines) for (const len of promptLens) await timeRound(e, len, c.vocabSize, scratch, len === promptLens[0] ? decodeSteps : 0);
  for (let r = 0; r < rounds; r++) {
    for (const len of promptLens) {
      for (const [name, e] of engines) await timeRound(e, len, c.vocabSize, timings.get(name)!, len === promptLens[0] ? decodeSteps : 0);
    }
  }

  const tokS = (name: string, ms: (t: Timings) => number[], tokens: number) => {
    const t = timings.get(name);
    return t ? tokens / (median(ms(t)) / 1000) : NaN;
  };
  figures.push({ figure: `decode, batch 1, after ${promptLens[0]}`, dtype, threads, ours: tokS('gemmkit', (t) => t.decode, 1), theirs: tokS('llama.cpp', (t) => t.decode, 1), bound: { kind: 'memory', bytesPerToken } });
  for (const len of promptLens) {
    // Weight-GEMM FLOPs of a prefill (the LM head runs on the last token only); attention's are left out.
    const flops = 2 * len * (gemmWeights - c.vocabSize * c.hiddenSize) + 2 * c.vocabSize * c.hiddenSize;
    figures.push({ figure: `prefill ${len} tokens`, dtype, threads, ours: tokS('gemmkit', (t) => t.prefill.get(len)!, len), theirs: tokS('llama.cpp', (t) => t.prefill.get(len)!, len), bound: { kind: 'compute', flopsPerToken: flops / len } });
  }
  await theirs?.dispose();
  if (oneThreadDecode) {
    const one = decodeOnOneThread(dir, theirs ? gguf : undefined);
    figures.push({ figure: `decode, batch 1, after ${promptLens[0]}`, dtype, threads: 1, ours: 1000 / median(one.gemmkitMs), theirs: one.llamaCppMs ? 1000 / median(one.llamaCppMs) : NaN,
      bound: { kind: 'memory', bytesPerToken, readGBps: one.readGBps } });
  }
  rmSync(gguf, { force: true });
  rmSync(dir, { recursive: true, force: true });
  if (dtype === 'bf16') model = ours;
}
await llamaCpp?.dispose();

// The ceilings again after the timing rounds: each bound uses the better of both measurements.
const after = await measureCeilings(inf.threads, { readMiB: quick ? 64 : 1024 });
const best = bestCeilings(ceilings, after);
console.log(`\nceilings again: streaming read ${after.readGBps.toFixed(1)} GB/s, f32 FMA ${after.fmaF32Gflops.toFixed(0)} GFLOP/s, AMX-BF16 ${after.amxBf16Gflops?.toFixed(0) ?? 'n/a'}; the bounds use the better of each`);
const table: string[][] = [['figure', 'weights', 'threads', 'gemmkit tok/s', 'llama.cpp tok/s', 'gemmkit / llama.cpp', 'bound tok/s', 'bound', 'gemmkit % of bound', 'llama.cpp % of bound', 'goal', 'met']];
const fx = (v: number, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
const pct = (v: number) => (Number.isFinite(v) ? `${(100 * v).toFixed(0)}%` : 'n/a');
for (const f of figures) {
  let bound: number, boundText: string, goal: string, met: boolean | undefined;
  if (f.bound.kind === 'memory') {
    const readGBps = f.bound.readGBps ?? best.readGBps;
    bound = (readGBps * 1e9) / f.bound.bytesPerToken;
    boundText = `memory: ${(f.bound.bytesPerToken / 1e6).toFixed(0)} MB at ${readGBps.toFixed(1)} GB/s`;
    goal = '>= 80% of bound';
    met = Number.isFinite(bound) ? f.ours / bound >= 0.8 : undefined;
  } else {
    const [peakName, peak] = computePeak(best, f.dtype);
    bound = (peak * 1e9) / f.bound.flopsPerToken;
    boundText = `compute: ${(f.bound.flopsPerToken / 1e9).toFixed(3)} GFLOP/token at ${peak.toFixed(0)} GFLOP/s ${peakName}`;
    goal = '>= 1.3x llama.cpp';
    met = Number.isFinite(f.theirs) ? f.ours / f.theirs >= 1.3 : undefined;
  }
  // Without the peer its columns say n/a (the reason is printed with the table).
  table.push([f.figure, f.dtype, String(f.threads), fx(f.ours), fx(f.theirs), fx(f.ours / f.theirs, 2), fx(bound), boundText, pct(f.ours / bound), pct(f.theirs / bound), goal, met === undefined ? '' : met ? 'yes' : 'NO']);
}
console.log(`\n${threads} threads for each engine${oneThreadDecode ? ' (decode also on 1)' : ''}; medians of ${rounds} alternate rounds (decode: ${decodeSteps} steps per round)${llamaCpp ? '' : `; llama.cpp ${llamaCppNote}`}`);
printTable(table, (col) => col >= 2 && col <= 9);
// Decode on the pool's threads against 1 thread (goal: faster), per dtype and engine.
for (const dtype of ['bf16', 'f32'] as const) {
  const [many, one] = [threads, 1].map((t) => figures.find((f) => f.dtype === dtype && f.threads === t && f.bound.kind === 'memory'));
  if (!many || !one || many === one) continue;
  console.log(`decode ${dtype}, ${threads} threads / 1 thread: gemmkit ${fx(many.ours / one.ours, 2)}x (${many.ours > one.ours ? 'faster: goal met' : 'NOT faster'}), llama.cpp ${fx(many.theirs / one.theirs, 2)}x`);
}
console.log(machineLoad(threads).note);
if (mismatch) {
  console.log('the engines disagree on the next-token logits (see above): the comparison is not valid');
  process.exitCode = 1;
}
const c = model.config;

// --- 4. choices ---------------------------------------------------------------------------------------------
console.log('\n== attention: the attention op (what forward runs) vs plain loops, one layer, batch 1');
function loopAttention(layer: number, q: Float32Array, tokens: number, past: number, kv: ReturnType<typeof createKVCache>): Float32Array {
  const { numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim: d } = c;
  const groups = heads / kvHeads, scale = 1 / Math.sqrt(d);
  const out = new Float32Array(tokens * heads * d), scores = new Float32Array(past + tokens);
  const K = kv.keys[layer].data as Float32Array, V = kv.values[layer].data as Float32Array;
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < heads; h++) {
      const base = Math.floor(h / groups) * kv.capacity * d, qo = (t * heads + h) * d, len = past + t + 1;
      for (let j = 0; j < len; j++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += q[qo + i] * K[base + j * d + i];
        scores[j] = s * scale;
      }
      softmaxRows(scores.subarray(0, len), len);
      for (let j = 0; j < len; j++) for (let i = 0; i < d; i++) out[qo + i] += scores[j] * V[base + j * d + i];
    }
  }
  return out;
}
for (const [tokens, past] of quick ? [[1, 31]] : [[1, 127], [1, 511], [128, 0]]) {
  const kv = createKVCache(model, 1, 1024);
  for (const t of [...kv.keys, ...kv.values]) {
    const a = t.data as Float32Array;
    for (let i = 0; i < a.length; i++) a[i] = Math.sin(i);
  }
  const q = Float32Array.from({ length: tokens * c.numAttentionHeads * c.headDim }, (_, i) => Math.cos(i));
  const qt = tensor(q, [tokens, c.numAttentionHeads * c.headDim]);
  const viaOp = await timeMs(() => attentionOp(qt, kv.keys[0], kv.values[0], { slots: [0], past, tokens, heads: c.numAttentionHeads }), quick ? 3 : 21);
  const viaLoops = await timeMs(() => loopAttention(0, q, tokens, past, kv), quick ? 3 : 21);
  console.log(`${tokens} token(s) after ${past} cached: op ${viaOp.toFixed(3)} ms, loops ${viaLoops.toFixed(3)} ms (loops / op = ${(viaLoops / viaOp).toFixed(1)}x)`);
}

console.log(`\n== small GEMMs: matmulSync vs matmul on the thread pool (gemm() runs below ${gemmPolicy.syncBelowMacs} MACs synchronously)`);
for (const [m, n, k] of [[1, 64, 64], [1, 256, 256], [16, 256, 256], [1, 1024, 1024], [32, 256, 256], [64, 256, 256], [128, 256, 256], [128, 1024, 1024]]) {
  const a = randomTensor([m, k], 'f32', 1), b = randomTensor([n, k], 'bf16', 2);
  const runs = quick ? 5 : 201;
  const sync = await timeMs(() => matmulSync(a, b, { transB: true }), runs, 5);
  const pool = await timeMs(() => matmul(a, b, { transB: true }), runs, 5);
  console.log(`${m}x${n}x${k} (${m * n * k} MACs): sync ${(sync * 1000).toFixed(1)} us, async ${(pool * 1000).toFixed(1)} us (async - sync = ${((pool - sync) * 1000).toFixed(1)} us)`);
}
