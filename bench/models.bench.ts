// npm run bench:models: the figures of issue 6, measured in one run.
//  1. the machine's ceilings (bench/ceilings): streaming read bandwidth, the bound for decoding, which
//     reads every weight once per token; the peak of the unit the weight GEMMs run on (AVX512-BF16 or AMX
//     for bf16 x bf16 where the CPU has it, else f32 FMA), the bound for prefill;
//  2. digits: accuracy on the held-out 30%, single-image latency p50/p99, predictions/s at batch 256;
//  3. a Llama-style model with random bf16 weights (hidden 1024, 8 layers, intermediate 2816, 16 heads,
//     4 KV heads, vocab 32000; written to a temp dir and loaded with loadModel): prefill tokens/s for a
//     128-token prompt and decode tokens/s at batch 1, next to the bound bandwidth sets (weight bytes read
//     per token / measured bandwidth);
//  4. the choices inside: the attention op vs plain loops; small GEMMs sync vs on the thread pool.
// Medians; run it alone on the machine (`flock -x /tmp/gemmkit-cpu.lock npm run bench:models`).
// --quick: a small model and short runs, as a smoke test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type LlamaModel, createKVCache, dtypeSize, forward, info, loadModel, matmul, matmulSync, modelGemmShapes, writeRandomLlamaCheckpoint } from '../src/index.js';
import { attention as attentionOp, tensor } from '../src/index.js';
import { gemmPolicy, linearInputDtype } from '../src/models/layers.js';
import { softmaxRows } from './legacy_models.js';
import { measureSpeed, runDigits } from '../examples/digits/digits.js';
import { randomTensor } from './inputs.js';
import { measureCeilings } from './peers/index.js';
import { median, timeAsync } from './timing.js';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const quick = args.quick;

/** Median ms of `runs` awaited calls of fn after `warmup` untimed ones. */
const timeMs = (fn: () => unknown, runs: number, warmup = 1) => timeAsync(fn, { warmup, minRuns: runs });

const inf = info();
console.log(`gemmkit ${inf.version} on ${inf.cpu.model} (${inf.cpu.features.join(' ')}), pool of ${inf.threads} threads${quick ? ' [--quick]' : ''}`);
const tmp = mkdtempSync(join(tmpdir(), 'gemmkit-bench-models-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true })); // also when a step throws

// --- 1. the machine's ceilings (bench/ceilings via bench/peers: best of several runs) ------------------------
const ceilings = await measureCeilings(inf.threads, { readMiB: quick ? 64 : 1024 });
if (ceilings.note) console.log(`ceilings: ${ceilings.note}`);
const bandwidth = ceilings.readGBps;
console.log(`\n== ceilings on ${inf.threads} threads: streaming read ${bandwidth.toFixed(1)} GB/s (median ${ceilings.readMedianGBps?.toFixed(1) ?? '?'}), f32 FMA ${ceilings.fmaF32Gflops.toFixed(0)} GFLOP/s, AVX512-BF16 ${ceilings.avx512Bf16Gflops?.toFixed(0) ?? 'n/a'}, AMX-BF16 ${ceilings.amxBf16Gflops?.toFixed(0) ?? 'n/a'}`);

// --- 2. digits -------------------------------------------------------------------------------------------
{
  const r = await runDigits(join(tmp, 'digits.safetensors'));
  const s = await measureSpeed(r.model, r.test, quick ? 1 : 10, 256, quick ? 20 : 400);
  console.log(`\n== digits (64-64-10 MLP, trained in ${(r.trainMs / 1000).toFixed(2)} s on ${r.train.count} images)`);
  console.log(`accuracy on the ${r.test.count} held-out images: ${(100 * r.accuracy).toFixed(2)}%`);
  console.log(`single-image latency: p50 ${(s.p50Ms * 1000).toFixed(1)} us, p99 ${(s.p99Ms * 1000).toFixed(1)} us`);
  console.log(`throughput at batch 256: ${Math.round(s.predictionsPerSecond).toLocaleString('en-US')} predictions/s`);
}

// --- 3. Llama-style decoder ----------------------------------------------------------------------------------
const hf = quick
  ? { hidden_size: 256, intermediate_size: 704, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 4096 }
  : { hidden_size: 1024, intermediate_size: 2816, num_attention_heads: 16, num_key_value_heads: 4, num_hidden_layers: 8, vocab_size: 32000 };
const config = { ...hf, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, model_type: 'llama' };
const dir = join(tmp, 'llama');
let t0 = process.hrtime.bigint();
writeRandomLlamaCheckpoint(dir, config, { dtype: 'bf16', seed: 1 });
const writeS = Number(process.hrtime.bigint() - t0) / 1e9;
t0 = process.hrtime.bigint();
const model = (await loadModel(dir)) as LlamaModel;
const loadS = Number(process.hrtime.bigint() - t0) / 1e9;
const c = model.config;
// The weight GEMMs forward runs: every one reads its whole weight once per decode step.
const gemms = await modelGemmShapes(dir, [1]);
const gemmWeights = gemms.reduce((sum, g) => sum + g.count * g.n * g.k, 0);
const bytesPerToken = gemms.reduce((sum, g) => sum + g.count * g.n * g.k * dtypeSize(g.dtype), 0);
console.log(`\n== Llama-style decoder: hidden ${c.hiddenSize}, ${c.numHiddenLayers} layers, intermediate ${c.intermediateSize}, ${c.numAttentionHeads} heads / ${c.numKeyValueHeads} KV heads, vocab ${c.vocabSize}, bf16 random weights`);
console.log(`weights in GEMMs: ${(gemmWeights / 1e6).toFixed(1)} M (${(bytesPerToken / 1e6).toFixed(0)} MB per token); written in ${writeS.toFixed(1)} s, loaded in ${loadS.toFixed(2)} s`);

const promptLen = quick ? 32 : 128;
const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919) % c.vocabSize);
const prefillMs = await timeMs(() => forward(model, prompt, { cache: createKVCache(model, 1, promptLen), logits: 'last' }), quick ? 2 : 5);
const prefillFlops = 2 * promptLen * (gemmWeights - c.vocabSize * c.hiddenSize) + 2 * c.vocabSize * c.hiddenSize; // LM head on the last token only
// The weight GEMMs run in the dtype the model feeds them (bf16 x bf16 where the CPU has bf16 kernels): the
// bound is that unit's peak.
const gemmInput = linearInputDtype('bf16');
const [peakName, peak] = gemmInput === 'bf16'
  ? ceilings.amxBf16Gflops ? ['AMX-BF16', ceilings.amxBf16Gflops] : ['AVX512-BF16', ceilings.avx512Bf16Gflops ?? NaN]
  : ['f32 FMA', ceilings.fmaF32Gflops];
const prefillBound = (peak * 1e9 * promptLen) / prefillFlops;
console.log(`prefill ${promptLen} tokens: ${prefillMs.toFixed(1)} ms = ${(promptLen / (prefillMs / 1000)).toFixed(0)} tokens/s (${(prefillFlops / prefillMs / 1e6).toFixed(1)} GFLOP/s in weight GEMMs)`);
console.log(`compute bound: ${(prefillFlops / promptLen / 1e9).toFixed(3)} GFLOP per token at ${peak.toFixed(0)} GFLOP/s (${peakName}: the weight GEMMs read ${gemmInput} inputs) = ${prefillBound.toFixed(0)} tokens/s; prefill reaches ${((100 * promptLen) / (prefillMs / 1000) / prefillBound).toFixed(0)}% of it`);

const decodeSteps = quick ? 8 : 32;
const cache = createKVCache(model, 1, promptLen + decodeSteps + 1);
await forward(model, prompt, { cache, logits: 'last' });
const stepTimes: number[] = [];
let next = 1;
for (let s = 0; s < decodeSteps; s++) {
  const t = process.hrtime.bigint();
  const logits = (await forward(model, [next], { cache, logits: 'last' })).data as Float32Array;
  stepTimes.push(Number(process.hrtime.bigint() - t) / 1e6);
  next = logits.indexOf(Math.max(...logits));
}
const decodeMs = median(stepTimes);
const boundTokS = (bandwidth * 1e9) / bytesPerToken;
console.log(`decode at batch 1 (positions ${promptLen}..${promptLen + decodeSteps - 1}): ${decodeMs.toFixed(2)} ms/token = ${(1000 / decodeMs).toFixed(1)} tokens/s`);
console.log(`bandwidth bound: ${(bytesPerToken / 1e6).toFixed(0)} MB / ${bandwidth.toFixed(1)} GB/s = ${boundTokS.toFixed(1)} tokens/s; decode reaches ${((100 * (1000 / decodeMs)) / boundTokS).toFixed(0)}% of it (${((bytesPerToken / (decodeMs / 1000)) / 1e9).toFixed(1)} GB/s of weights)`);

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
