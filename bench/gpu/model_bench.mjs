// The model section of the device check scripts, gemmkit's side (plain JavaScript over the built dist/, so
// it runs with a carried node binary and no TypeScript tooling; bench/gpu/carry-node.sh):
//   node bench/gpu/model_bench.mjs write DIR [--tiny]
//       writes a random Llama-style bf16 checkpoint (writeRandomLlamaCheckpoint): hidden 2048, 22 layers,
//       32 heads / 4 KV heads, intermediate 5632, vocab 32000 (about 1.1 B parameters); --tiny: a small one
//       for dry runs.
//   node bench/gpu/model_bench.mjs run DIR --device cuda:0 --out OUT.json [--logits LOGITS.f32] [--tiny]
//       loads it on the device and measures prefill tokens/s at 512 and 2048 tokens (one sequence, logits of
//       the last token) and decode tokens/s at batch 1, 8 and 32 (greedy steps, nextTokenIds: what generate()
//       runs; tokens/s = batch / step time), medians; the weight bytes a decode step reads (modelGemmShapes),
//       and the next-token logits of a fixed prompt (f32, raw) for torch_llama.py to compare with.
// GEMMKIT_MODEL_BENCH_SRC=1 (under tsx) imports src/ instead of dist/, and --stand-in runs it on the
// stand-in GPU addon of the tests (test/gpu_emulator.ts), for a dry run on a machine without a GPU.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const lib = process.env.GEMMKIT_MODEL_BENCH_SRC ? '../../src' : '../../dist';
const gemmkit = await import(`${lib}/index.js`);
const models = await import(`${lib}/models/index.js`);

const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: {
    device: { type: 'string', default: 'auto' },
    out: { type: 'string' },
    logits: { type: 'string' },
    tiny: { type: 'boolean', default: false },
    'stand-in': { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
  },
});
const [command, dir] = positionals;
if (!dir || (command !== 'write' && command !== 'run')) {
  console.error('usage: model_bench.mjs write DIR [--tiny] | run DIR --device cuda:0 --out OUT.json [--logits FILE] [--tiny] [--stand-in]');
  process.exit(2);
}
const tiny = args.tiny;

const CONFIG = tiny
  ? { hidden_size: 256, intermediate_size: 704, num_attention_heads: 8, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 512, max_position_embeddings: 256 }
  : { hidden_size: 2048, intermediate_size: 5632, num_attention_heads: 32, num_key_value_heads: 4, num_hidden_layers: 22, vocab_size: 32000, max_position_embeddings: 4096 };
const PREFILLS = tiny ? [32, 64] : [512, 2048];
const BATCHES = tiny ? [1, 2, 4] : [1, 8, 32];
const DECODE_PROMPT = tiny ? 16 : 128;
const DECODE_STEPS = tiny ? 4 : 32;
/** The prompt whose next-token logits both engines write: ids 1..16 (the same in torch_llama.py). */
const CHECK_PROMPT = Array.from({ length: 16 }, (_, i) => (i * 97 + 1) % CONFIG.vocab_size);

const ids = (n, seed) => Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + 13) % CONFIG.vocab_size);
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

if (command === 'write') {
  const t0 = performance.now();
  gemmkit.writeRandomLlamaCheckpoint(dir, { ...CONFIG, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false }, { dtype: 'bf16', seed: 1, shards: tiny ? 1 : 4 });
  console.log(`model_bench: wrote ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  process.exit(0);
}

if (args['stand-in']) {
  // A dry run: the tests' stand-in GPU addon (host memory, the CPU addon's GEMMs and ops) as cuda.
  const { EmulatedGpu } = await import('../../test/gpu_emulator.ts');
  const native = await import(`${lib}/native.js`);
  native.setGpuAddonForTesting('cuda', new EmulatedGpu('cuda', 1, 8 * 2 ** 30));
}

const runs = Number(args.runs);
const t0 = performance.now();
const model = await gemmkit.loadModel(dir, { device: args.device });
const loadS = (performance.now() - t0) / 1000;
const device = model.device;
const shapes = await gemmkit.modelGemmShapes(dir, [1], { device });
const weightBytes = shapes.reduce((sum, g) => sum + g.count * g.n * g.k * gemmkit.dtypeSize(g.dtype), 0);
console.log(`model_bench: ${dir} on ${device}, loaded in ${loadS.toFixed(1)} s; ${(weightBytes / 1e9).toFixed(2)} GB of GEMM weights read per decode step`);

// The same next-token logits torch_llama.py computes.
const check = await gemmkit.forward(model, CHECK_PROMPT, { logits: 'last' });
const checkHost = check.to('cpu').toFloat32();
check.dispose();
if (args.logits) writeFileSync(args.logits, Buffer.from(checkHost.buffer, checkHost.byteOffset, checkHost.byteLength));

const prefill = {};
for (const n of PREFILLS) {
  const cache = gemmkit.createKVCache(model, 1, n);
  const prompt = ids(n, 1);
  const times = [];
  for (let r = 0; r < runs + 1; r++) {
    cache.reset();
    const t = performance.now();
    const logits = await gemmkit.forward(model, prompt, { cache, logits: 'last' }); // settles once the logits are written
    const ms = performance.now() - t;
    logits.dispose();
    if (r > 0) times.push(ms); // the first call warms up (and builds the step's buffers)
  }
  cache.dispose();
  prefill[n] = { ms: median(times), tokensPerS: n / (median(times) / 1000) };
  console.log(`model_bench: prefill ${n}: ${prefill[n].ms.toFixed(1)} ms = ${prefill[n].tokensPerS.toFixed(0)} tokens/s`);
}

const decode = {};
for (const batch of BATCHES) {
  const cache = gemmkit.createKVCache(model, batch, DECODE_PROMPT + DECODE_STEPS + 2);
  let next = await models.nextTokenIds(model, Array.from({ length: batch }, (_, b) => ids(DECODE_PROMPT, b + 2)), { cache });
  const times = [];
  for (let s = 0; s <= DECODE_STEPS; s++) {
    const t = performance.now();
    next = await models.nextTokenIds(model, Array.from(next, (id) => [id]), { cache });
    if (s > 0) times.push(performance.now() - t);
  }
  cache.dispose();
  decode[batch] = { msPerStep: median(times), tokensPerS: batch / (median(times) / 1000) };
  console.log(`model_bench: decode batch ${batch}: ${decode[batch].msPerStep.toFixed(2)} ms/step = ${decode[batch].tokensPerS.toFixed(1)} tokens/s`);
}
model.dispose();

const result = { engine: 'gemmkit', device, config: CONFIG, loadS, weightBytesPerStep: weightBytes, prefill, decode, decodePrompt: DECODE_PROMPT, decodeSteps: DECODE_STEPS };
if (args.out) writeFileSync(args.out, `${JSON.stringify(result, null, 2)}\n`);
