// Models on every device: the same small Llamas and MLP on the CPU and on a GPU (the stand-in GPU addon of
// test/gpu_emulator.ts, whose GEMMs and ops run on the CPU addon over emulated device memory), each against
// the float64 reference with the GEMM inputs rounded as that device rounds them; greedy ids across devices;
// batches, cache slots at different lengths, prompts crossing the attention tiles, GQA 1/4/8; what a step
// brings back to the host; tuned dispatch of the GEMMs forward runs there; and the error paths (devices that
// are not there, caches of another model, out of device memory, dispose).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  Checkpoint, type DType, type Device, type LlamaModel, MLP_METADATA_KEY, type MlpModel, type Model, type Tensor, createKVCache, forward, generate,
  loadModel, modelGemmShapes, saveSafetensors, setTunedFile, writeRandomLlamaCheckpoint,
} from '../src/index.js';
import { linearInputDtype, observeLinear } from '../src/models/layers.js';
import { OP_KINDS, cpuNative, gpuAddonStatus, setGpuAddonForTesting } from '../src/native.js';
import { kernelOfConfig } from '../src/tuner/key.js';
import { modelShapes } from '../src/tuner/shapes.js';
import { currentValidators, formatTunedFile } from '../src/tuner/tuned_file.js';
import { tune } from '../src/tuner/tune.js';
import { EmulatedGpu } from './gpu_emulator.js';
import { randTensor, values } from './helpers.js';
import { type RefRounding, type RefWeights, refActivation, refLinear, refLlama, refRmsNorm, refSoftmax } from './model-reference.js';
import { QUICK } from './tuner_helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'gemmkit-models-device-'));
let gpu: EmulatedGpu;
beforeAll(() => {
  gpu = new EmulatedGpu('cuda', 1, 256 << 20);
  setGpuAddonForTesting('cuda', gpu);
});
afterAll(() => {
  setGpuAddonForTesting('cuda', undefined);
  rmSync(dir, { recursive: true, force: true });
});

const DEVICES: Device[] = ['cpu', 'cuda:0'];

/** The normwise relative error max |got - want| / max |want|. */
function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let err = 0, mag = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    mag = Math.max(mag, Math.abs(want[i]));
  }
  return err / mag;
}

// The largest error seen per device and case, printed at the end (the parity the README and report quote).
const observed = new Map<string, number>();
afterAll(() => {
  const lines = [...observed].map(([k, v]) => `  ${k}: ${v.toExponential(2)}`);
  console.log(`largest normwise errors against the float64 reference:\n${lines.join('\n')}`);
});

function expectRel(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, label: string, record?: string): number {
  expect(got.length, `${label}: length`).toBe(want.length);
  const e = relError(got, want);
  if (record) observed.set(record, Math.max(observed.get(record) ?? 0, e));
  if (!(e <= tol)) throw new Error(`${label}: normwise relative error ${e.toExponential(2)} > ${tol.toExponential(2)}`);
  return e;
}

/** The values of a result on the host; a device result is freed once copied. */
function host(t: Tensor): Float32Array {
  const out = t.to('cpu').toFloat32();
  if (t.device !== 'cpu') t.dispose();
  return out;
}

function refWeights(path: string): RefWeights {
  const ck = Checkpoint.open(path);
  try {
    return new Map(ck.names().map((n) => [n, values(ck.tensor(n))]));
  } finally {
    ck.close();
  }
}

// The rounding a device applies to a GEMM input for weights of `dtype`, and the tolerance against a
// reference that rounds the same: f32 rounding along the way, and with 16-bit inputs the odd input that the
// model's f32 activations and the reference's f64 ones put on two sides of a rounding boundary (one step of
// the 16-bit format on that input).
function rounding(dtype: DType, device: Device): { round: RefRounding; tol: number } {
  const input = linearInputDtype(dtype, device);
  return input === 'f32' ? { round: false, tol: 4e-6 } : { round: input, tol: 2 ** -10 };
}

const base = { intermediate_size: 96, num_hidden_layers: 2, rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: 83 };
interface Variant { name: string; hf: Record<string, unknown>; dtype: DType; tied?: boolean }
// GQA groups of 1, 4 and 8 (query heads per KV head), head dims 16, 8 and 8; bf16 and f16 weights (the
// latter tied), a checkpoint with q/k/v and o biases.
const VARIANTS: Variant[] = [
  { name: 'gqa1-f32', hf: { ...base, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 4 }, dtype: 'f32' },
  { name: 'gqa4-f32', hf: { ...base, hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 2 }, dtype: 'f32' },
  { name: 'gqa8-f32', hf: { ...base, hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 1 }, dtype: 'f32' },
  { name: 'gqa2-bf16', hf: { ...base, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2 }, dtype: 'bf16' },
  { name: 'gqa2-f16-tied', hf: { ...base, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true }, dtype: 'f16', tied: true },
];

function refConfig(v: Variant, round: RefRounding) {
  const hf = v.hf as { hidden_size: number; num_attention_heads: number; num_key_value_heads: number };
  return {
    hidden: hf.hidden_size, intermediate: base.intermediate_size, heads: hf.num_attention_heads, kvHeads: hf.num_key_value_heads,
    layers: base.num_hidden_layers, vocab: base.vocab_size, eps: base.rms_norm_eps, theta: base.rope_theta, tied: v.tied ?? false, roundInputs: round,
  };
}

const paths = new Map<string, string>();
beforeAll(() => {
  VARIANTS.forEach((v, i) => {
    const p = join(dir, v.name);
    writeRandomLlamaCheckpoint(p, { ...v.hf, tie_word_embeddings: v.tied ?? false }, { dtype: v.dtype, seed: 10 + i });
    paths.set(v.name, p);
  });
});

async function load(name: string, device: Device): Promise<LlamaModel> {
  const model = (await loadModel(paths.get(name)!, { device })) as LlamaModel;
  expect(model.device).toBe(device);
  return model;
}

const PROMPTS = [[5, 17, 82, 0, 42, 42, 7], [1, 2, 3, 4, 5, 6, 81]];

describe('a Llama on the CPU and on a GPU against the float64 reference', () => {
  for (const v of VARIANTS) {
    it(`${v.name}: a batch of two sequences, every position's logits, on each device`, async () => {
      const w = refWeights(paths.get(v.name)!);
      for (const device of DEVICES) {
        const model = await load(v.name, device);
        const logits = await forward(model, PROMPTS);
        expect(logits.device).toBe(device);
        expect(logits.shape).toEqual([2, 7, base.vocab_size]);
        const all = host(logits); // (and frees the device's copy)
        const { round, tol } = rounding(v.dtype, device);
        PROMPTS.forEach((ids, b) => {
          const want = refLlama(refConfig(v, round), w, ids);
          expectRel(all.subarray(b * 7 * base.vocab_size, (b + 1) * 7 * base.vocab_size), want, tol, `${v.name} on ${device}, sequence ${b}`, `${device} ${v.dtype} weights`);
        });
        model.dispose();
      }
      expect(gpu.used).toBe(0); // dispose freed the weights and the rotary tables
    });
  }

  it('projection biases (q, k, v and o) are fused with their weights', async () => {
    const p = join(dir, 'biased');
    writeRandomLlamaCheckpoint(p, { ...base, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2 }, { dtype: 'f32', seed: 3 });
    const ck = Checkpoint.open(p);
    const tensors = new Map(ck.names().map((n) => [n, ck.tensor(n)]));
    ck.close();
    // Biases on q, v and o only (k has none: its block of the fused bias is zeros), of two dtypes.
    for (let l = 0; l < 2; l++) {
      tensors.set(`model.layers.${l}.self_attn.q_proj.bias`, randTensor([32], 'bf16', 100 + l));
      tensors.set(`model.layers.${l}.self_attn.v_proj.bias`, randTensor([16], 'f32', 200 + l));
      tensors.set(`model.layers.${l}.self_attn.o_proj.bias`, randTensor([32], 'f32', 300 + l));
    }
    saveSafetensors(join(p, 'model.safetensors'), tensors);
    const w = refWeights(p);
    const cfg = { hidden: 32, intermediate: 96, heads: 4, kvHeads: 2, layers: 2, vocab: 83, eps: 1e-5, theta: 10000, tied: false };
    for (const device of DEVICES) {
      const model = await loadModel(p, { device });
      expectRel(host(await forward(model, PROMPTS[0])), refLlama(cfg, w, PROMPTS[0]), 4e-6, `biased on ${device}`, `${device} f32 weights`);
      model.dispose();
    }
  });
});

describe('the same greedy ids and cache behaviour on every device', () => {
  it('generate: a batch of two gives the same ids on the CPU and the GPU (f32 weights), and each sequence alone', async () => {
    const got: number[][][] = [];
    for (const device of DEVICES) {
      const model = await load('gqa4-f32', device);
      const both = await generate(model, PROMPTS, { maxNewTokens: 12 });
      expect(both.map((s) => s.length)).toEqual([19, 19]);
      expect(both).toEqual([await generate(model, PROMPTS[0], { maxNewTokens: 12 }), await generate(model, PROMPTS[1], { maxNewTokens: 12 })]);
      got.push(both);
      model.dispose();
    }
    expect(got[1]).toEqual(got[0]);
  });

  it('generate: bf16 weights give the same ids where both devices read bf16 inputs', async () => {
    if (linearInputDtype('bf16', 'cpu') !== 'bf16') return; // this CPU widens bf16 weights to f32 inputs: another rounding
    const ids = await Promise.all(DEVICES.map(async (device) => {
      const model = await load('gqa2-bf16', device);
      try {
        return await generate(model, PROMPTS, { maxNewTokens: 10 });
      } finally {
        model.dispose();
      }
    }));
    expect(ids[1]).toEqual(ids[0]);
  });

  it('prompts of 1, 63, 64, 65 and 129 tokens (around the attention tiles), then decode steps, against the reference', async () => {
    const v = VARIANTS[1]; // GQA 4
    const w = refWeights(paths.get(v.name)!);
    const long = Array.from({ length: 132 }, (_, i) => (i * 37 + 11) % base.vocab_size);
    for (const device of DEVICES) {
      const model = await load(v.name, device);
      for (const n of [1, 63, 64, 65, 129]) {
        const cache = createKVCache(model, 1, n + 3);
        const last = host(await forward(model, long.slice(0, n), { cache, logits: 'last' }));
        const ref = refLlama(refConfig(v, false), w, long.slice(0, n + 3));
        const row = (t: number) => ref.subarray(t * base.vocab_size, (t + 1) * base.vocab_size);
        expectRel(last, row(n - 1), 4e-6, `${device}: prefill of ${n}`, `${device} f32 weights`);
        for (let t = n; t < n + 3; t++) {
          expectRel(host(await forward(model, [long[t]], { cache, logits: 'last' })), row(t), 4e-6, `${device}: decode at position ${t}`, `${device} f32 weights`);
        }
        expect(cache.length).toBe(n + 3);
      }
      model.dispose();
    }
  });

  it('cache slots at different lengths: a batched step gives each sequence its logits alone, on each device', async () => {
    const prompts = [[3, 14, 15, 9, 26, 5, 35], [8, 9], [76, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [42]];
    const feed = [[1, 2, 3], [5, 6, 7], [9, 10, 11], [13, 14, 15]];
    const results: Float32Array[] = [];
    for (const device of DEVICES) {
      const model = await load('gqa4-f32', device);
      // What each sequence gets alone: after its prompt, then after each fed token.
      const alone = await Promise.all(prompts.map(async (p, i) => {
        const cache = createKVCache(model, 1, 32);
        const out = [host(await forward(model, p, { cache, logits: 'last' }))];
        for (const t of feed[i]) out.push(host(await forward(model, [t], { cache, logits: 'last' })));
        return out;
      }));
      const cache = createKVCache(model, 5, 32);
      const slotOf = [3, 0, 4, 1];
      const fed = [0, 0, 0, 0];
      for (const i of [0, 1, 2]) {
        expectRel(host(await forward(model, [prompts[i]], { cache, slots: [slotOf[i]], logits: 'last' })), alone[i][0], 1e-5, `${device}: prefill of ${i}`);
      }
      expect(Array.from(cache.lengths)).toEqual([2, 0, 0, 7, 13]);
      const step = async (seqs: number[]) => {
        const logits = host(await forward(model, seqs.map((i) => [feed[i][fed[i]]]), { cache, slots: seqs.map((i) => slotOf[i]), logits: 'last' }));
        seqs.forEach((i, b) => {
          fed[i]++;
          expectRel(logits.subarray(b * base.vocab_size, (b + 1) * base.vocab_size), alone[i][fed[i]], 1e-5, `${device}: sequence ${i} after ${fed[i]} fed tokens`);
        });
        results.push(logits);
      };
      await step([0, 2, 1]);
      cache.reset(slotOf[1]); // sequence 1 leaves; 3 takes its slot
      slotOf[3] = slotOf[1];
      expectRel(host(await forward(model, [prompts[3]], { cache, slots: [slotOf[3]], logits: 'last' })), alone[3][0], 1e-5, `${device}: prefill of 3 in a reused slot`);
      await step([3, 0, 2]);
      expect(Array.from(cache.lengths)).toEqual([2, 0, 0, 9, 15]);
      model.dispose();
    }
    // The two devices agree step for step.
    for (let i = 0; i < results.length / 2; i++) expectRel(results[results.length / 2 + i], results[i], 1e-5, `step ${i}: GPU vs CPU`);
  });
});

describe('a GPU step keeps its work on the device', () => {
  it('GEMM inputs are the weights\' dtype there (bf16 and f16 for the tensor cores, f32 for f32), written by the ops', async () => {
    for (const [name, dtype] of [['gqa2-bf16', 'bf16'], ['gqa2-f16-tied', 'f16'], ['gqa4-f32', 'f32']] as const) {
      expect(linearInputDtype(dtype, 'cuda:0')).toBe(dtype);
      const model = await load(name, 'cuda:0');
      const seen = new Set<string>();
      observeLinear((c) => seen.add(`${c.x.dtype}*${c.weight.dtype} on ${c.x.device}`));
      const before = gpu.opCalls.length;
      try {
        (await forward(model, [[1, 2, 3]])).dispose();
      } finally {
        observeLinear(undefined);
      }
      expect([...seen]).toEqual([`${dtype}*${dtype} on cuda:0`]);
      // The norms, attention and swiglu wrote the GEMM inputs in that dtype themselves (no cast op).
      const ops = gpu.opCalls.slice(before);
      expect(ops.some((o) => o.kind === OP_KINDS.cast)).toBe(false);
      for (const kind of [OP_KINDS.rmsNorm, OP_KINDS.attention, OP_KINDS.swiglu]) {
        expect(new Set(ops.filter((o) => o.kind === kind).map((o) => o.dtypeOut))).toEqual(new Set([dtype]));
      }
      model.dispose();
    }
  });

  it('generate brings back only the chosen ids: no download, one argmax per step', async () => {
    const model = await load('gqa4-f32', 'cuda:0');
    const downloaded = gpu.downloadedBytes, ops = gpu.opCalls.length;
    const seq = await generate(model, PROMPTS, { maxNewTokens: 6 });
    expect(seq[0].length).toBe(13);
    expect(gpu.downloadedBytes).toBe(downloaded);
    const argmaxes = gpu.opCalls.slice(ops).filter((o) => o.kind === OP_KINDS.argmax);
    expect(argmaxes.length).toBe(6);
    expect(argmaxes.every((o) => o.rows === 2 && o.idsOut instanceof Int32Array)).toBe(true);
    model.dispose();
    expect(gpu.used).toBe(0);
  });

  it('a sampled generation brings each step\'s last-token logits to the host, frees them, and draws what the CPU draws', async () => {
    const opts = { maxNewTokens: 5, temperature: 0.9, topP: 0.95, seed: 5 };
    const cpu = await load('gqa4-f32', 'cpu');
    const want = await generate(cpu, PROMPTS, opts);
    cpu.dispose();
    const model = await load('gqa4-f32', 'cuda:0');
    const downloaded = gpu.downloadedBytes;
    expect(await generate(model, PROMPTS, opts)).toEqual(want);
    // The prefill and 4 steps, each [2, vocab] f32 to the host, and nothing else.
    expect(gpu.downloadedBytes - downloaded).toBe(5 * 2 * base.vocab_size * 4);
    model.dispose();
    expect(gpu.used).toBe(0);
  });

  it('a decode step allocates no device memory and reuses its buffers (only its logits are new)', async () => {
    const model = await load('gqa4-f32', 'cuda:0');
    const cache = createKVCache(model, 2, 16);
    (await forward(model, PROMPTS.map((p) => p.slice(0, 3)), { cache, logits: 'last' })).dispose();
    (await forward(model, [[1], [2]], { cache, logits: 'last' })).dispose();
    const used = gpu.used;
    const logits = await forward(model, [[3], [4]], { cache, logits: 'last' });
    expect(gpu.used - used).toBe(2 * base.vocab_size * 4);
    logits.dispose();
    model.dispose();
  });
});

describe('the MLP on a device', () => {
  it('the same outputs on the GPU as on the CPU, within f32 rounding; the input is left alone', async () => {
    const spec = { type: 'mlp', layers: [
      { op: 'linear', weight: 'fc1.weight', bias: 'fc1.bias', activation: 'relu' },
      { op: 'layernorm', weight: 'ln.weight', bias: 'ln.bias', eps: 1e-5 },
      { op: 'linear', weight: 'fc2.weight', bias: 'fc2.bias', activation: 'gelu' },
      { op: 'rmsnorm', weight: 'rms.weight', eps: 1e-6 },
      { op: 'silu' },
      { op: 'linear', weight: 'fc3.weight' },
      { op: 'softmax' },
    ] };
    const p = join(dir, 'mlp.safetensors');
    saveSafetensors(p, {
      'fc1.weight': randTensor([45, 64], 'f32', 1), 'fc1.bias': randTensor([45], 'f32', 2), 'ln.weight': randTensor([45], 'bf16', 3),
      'ln.bias': randTensor([45], 'f32', 4), 'fc2.weight': randTensor([33, 45], 'f32', 5), 'fc2.bias': randTensor([33], 'f32', 6),
      'rms.weight': randTensor([33], 'f32', 7), 'fc3.weight': randTensor([10, 33], 'f32', 8),
    }, { [MLP_METADATA_KEY]: JSON.stringify(spec) });
    const w = refWeights(p);
    const g = (n: string) => w.get(n)!;
    const x = randTensor([7, 64], 'f32', 9);
    const xv = values(x);
    let h = refLinear(xv, 7, g('fc1.weight'), 45, g('fc1.bias'), 'relu');
    const mean = (r: number) => h.subarray(r * 45, (r + 1) * 45);
    h = Float64Array.from({ length: h.length }, (_, i) => {
      const row = mean(Math.floor(i / 45)), mu = row.reduce((s, v) => s + v, 0) / 45;
      const variance = row.reduce((s, v) => s + (v - mu) ** 2, 0) / 45;
      return ((h[i] - mu) / Math.sqrt(variance + 1e-5)) * g('ln.weight')[i % 45] + g('ln.bias')[i % 45];
    });
    h = refLinear(h, 7, g('fc2.weight'), 33, g('fc2.bias'), 'gelu');
    const want = refSoftmax(refLinear(refActivation(refRmsNorm(h, 33, g('rms.weight'), 1e-6), 'silu'), 7, g('fc3.weight'), 10), 10);
    for (const device of DEVICES) {
      const model = (await loadModel(p, { device })) as MlpModel;
      const y = await forward(model, x); // a host input: copied to the device
      expect(y.device).toBe(device);
      expect(y.shape).toEqual([7, 10]);
      expectRel(host(y), want, 4e-6, `MLP on ${device}`, `${device} MLP f32`);
      expect([...x.toFloat32()]).toEqual([...Float32Array.from(xv)]);
      const xOnDevice = x.to(device);
      const onDevice = await forward(model, xOnDevice); // a device input is used where it is, and left alone
      expectRel(host(onDevice), want, 4e-6, `MLP on ${device}, device input`);
      expect([...host(xOnDevice)]).toEqual([...Float32Array.from(xv)]);
      model.dispose();
    }
    expect(gpu.used).toBe(0);
  });
});

describe('tuning what forward runs on a GPU', () => {
  afterEach(() => setTunedFile(null));

  it('modelGemmShapes lists the fused GEMMs as plain device tensors with the weights\' dtype as input', async () => {
    const path = paths.get('gqa2-bf16')!;
    const shapes = await modelGemmShapes(path, [1, 8], { device: 'cuda:0' });
    expect(shapes.map((s) => s.name).slice(0, 5)).toEqual([
      'model.layers.*.self_attn.{q,k,v}_proj', 'model.layers.*.self_attn.o_proj', 'model.layers.*.mlp.{gate,up}_proj', 'model.layers.*.mlp.down_proj', 'lm_head',
    ]);
    expect(shapes.every((s) => !s.prepacked && s.dtype === 'bf16' && s.dtypeA === 'bf16' && s.dtypeC === 'f32')).toBe(true);
    expect(shapes[0]).toMatchObject({ m: 1, n: 64 + 2 * 32, k: 64, count: 2, beta: 0, activation: 'none' });
    expect(shapes[2]).toMatchObject({ n: 2 * 96, k: 64, activation: 'none' });
    expect(shapes[3]).toMatchObject({ n: 64, k: 96, beta: 1 });
    // What forward runs there, GEMM for GEMM.
    const model = await load('gqa2-bf16', 'cuda:0');
    const seen: string[] = [];
    observeLinear((c) => seen.push(`${c.x.shape[0]}x${c.weight.outFeatures}x${c.weight.inFeatures} ${c.x.dtype} beta=${c.residual ? 1 : 0}`));
    try {
      (await forward(model, [[1, 2, 3, 4, 5, 6, 7, 8]])).dispose();
    } finally {
      observeLinear(undefined);
    }
    const want = shapes.filter((s) => s.m === 8).flatMap((s) => Array<string>(s.count).fill(`${s.m}x${s.n}x${s.k} ${s.dtypeA} beta=${s.beta}`));
    expect(seen.sort()).toEqual(want.sort());
    // The tuner's shapes for --model --backend cuda: not prepacked.
    const specs = await modelShapes(path, [1], { dtype: 'f32', transA: false, transB: false, bias: false, activation: 'none' }, 'cuda:0');
    expect(specs.every((s) => s.prepacked === false && s.dtypeA === 'bf16')).toBe(true);
    model.dispose();
  });

  it('a model loaded after setTunedFile runs the rows of that file (a hand-made one, and one the tuner wrote)', async () => {
    const path = paths.get('gqa2-bf16')!;
    const shapes = await modelGemmShapes(path, [1, 3], { device: 'cuda:0' });
    const v = currentValidators(gpu, 'cuda');
    // One config name per shape, so each GEMM shows which row it ran.
    const configOf = (s: { m: number; n: number; k: number }) => `cuda.sm90.bf16.test.${s.m}x${s.n}x${s.k}`;
    const rows = shapes.map((s) => ({
      m: s.m, n: s.n, k: s.k, dtypeA: s.dtypeA, dtypeB: s.dtype, outDtype: s.dtypeC, transA: false, transB: true, prepacked: false,
      bias: s.bias, activation: s.activation, backend: 'cuda', arch: v.arch, kernel: kernelOfConfig(configOf(s)), config: configOf(s),
      medianUs: 5, tflops: 0.01, defaultUs: 6, speedup: 1.2, maxError: 1e-7, status: 'ok' as const,
    }));
    const file = join(dir, 'tuned-cuda-by-hand.csv');
    writeFileSync(file, formatTunedFile(v, rows));
    setTunedFile(file);
    const model = await load('gqa2-bf16', 'cuda:0');
    const cache = createKVCache(model, 1, 8);
    let from = gpu.calls.length;
    (await forward(model, [[1, 2, 3]], { cache })).dispose();
    const prefill = gpu.calls.slice(from);
    expect(prefill.length).toBe(4 * 2 + 1);
    expect(prefill.every((d) => d.config === configOf(d))).toBe(true);
    from = gpu.calls.length;
    (await forward(model, [4], { cache })).dispose(); // a decode step: the M = 1 rows
    expect(gpu.calls.slice(from).map((d) => d.config)).toEqual(gpu.calls.slice(from).map((d) => configOf({ ...d, m: 1 })));
    model.dispose();

    // The tuner on the GPU backend, from the model's shapes, writes rows dispatch then uses.
    const out = join(dir, 'tuned-cuda.csv');
    const specs = await modelShapes(path, [1], { dtype: 'f32', transA: false, transB: false, bias: false, activation: 'none' }, 'cuda:0');
    const summary = await tune({ backend: { name: 'cuda', native: gpu }, cpu: cpuNative(), shapes: specs, opts: QUICK, out });
    expect(summary.results.every((r) => r.row?.config === 'cuda.emulated')).toBe(true);
    setTunedFile(out);
    const tuned = await load('gqa2-bf16', 'cuda:0');
    from = gpu.calls.length;
    (await forward(tuned, [7])).dispose();
    expect(gpu.calls.slice(from).map((d) => d.config)).toEqual(Array(4 * 2 + 1).fill('cuda.emulated'));
    tuned.dispose();
  });
});

describe('devices that are not there, and device memory', () => {
  it('an unknown device, a backend that is not available and a device index it does not have are errors naming them', async () => {
    const path = paths.get('gqa4-f32')!;
    await expect(loadModel(path, { device: 'tpu:0' as never })).rejects.toThrow(/loadModel: unknown device "tpu:0" \(expected 'cpu', 'cuda:<n>', 'hip:<n>'/);
    await expect(loadModel(path, { device: 7 as never })).rejects.toThrow(TypeError);
    await expect(loadModel(path, { device: 'hip:0' })).rejects.toThrow(/loadModel: device hip:0: backend 'hip' is not available: /);
    await expect(loadModel(path, { device: 'cuda:1' })).rejects.toThrow(/loadModel: device cuda:1 does not exist; this machine has 1 CUDA device\(s\) \(cuda:0 to cuda:0\)/);
    await expect(loadModel(path, { devcie: 'cpu' } as never)).rejects.toThrow(/loadModel: unknown option 'devcie' \(known: device, wholeFileLimit\)/);
    await expect(loadModel(path, null as never)).rejects.toThrow(/loadModel: options must be an object/);
    // A GPU addon built before the ops cannot run models.
    const old = new EmulatedGpu('cuda', 1, 1 << 20);
    Object.defineProperty(old, 'opSync', { value: undefined });
    setGpuAddonForTesting('cuda', old);
    try {
      await expect(loadModel(path, { device: 'cuda:0' })).rejects.toThrow(/device cuda:0: the cuda addon has no ops beyond GEMM, which models need; rebuild it/);
      expect(old.used).toBe(0);
    } finally {
      setGpuAddonForTesting('cuda', gpu);
    }
  });

  it("'auto' picks the first GPU there is, else the CPU", async () => {
    const path = paths.get('gqa4-f32')!;
    const onGpu = await loadModel(path, { device: 'auto' });
    expect(onGpu.device).toBe('cuda:0');
    onGpu.dispose();
    setGpuAddonForTesting('cuda', new EmulatedGpu('cuda', 0)); // an addon without a device
    try {
      const onCpu = await loadModel(path, { device: 'auto' });
      // No HIP addon is built here: the CPU it is (unless this machine has one).
      if (!gpuAddonStatus('hip').devices) expect(onCpu.device).toBe('cpu');
    } finally {
      setGpuAddonForTesting('cuda', gpu);
    }
  });

  it('a cache of another model (another device) is a TypeError; a disposed cache too', async () => {
    const cpu = await load('gqa4-f32', 'cpu'), onGpu = await load('gqa4-f32', 'cuda:0');
    const cpuCache = createKVCache(cpu, 1, 8), gpuCache = createKVCache(onGpu, 1, 8);
    expect(cpuCache.device).toBe('cpu');
    expect(gpuCache.device).toBe('cuda:0');
    expect(gpuCache.keys[0].device).toBe('cuda:0');
    await expect(forward(onGpu, [1], { cache: cpuCache })).rejects.toThrow(/forward: the cache was made for another model/);
    await expect(forward(cpu, [1], { cache: gpuCache })).rejects.toThrow(TypeError);
    const used = gpu.used;
    gpuCache.dispose();
    expect(gpuCache.disposed).toBe(true);
    expect(gpu.used).toBeLessThan(used);
    await expect(forward(onGpu, [1], { cache: gpuCache })).rejects.toThrow(/forward: the KV cache was disposed/);
    cpu.dispose();
    onGpu.dispose();
    expect(gpu.used).toBe(0);
  });

  it('out of device memory: loading, a cache, activations: GEMMKIT_OUT_OF_MEMORY (or a RangeError over the device\'s size), nothing leaks, the device keeps working', async () => {
    const small = new EmulatedGpu('cuda', 1, 200_000);
    setGpuAddonForTesting('cuda', small);
    const code = async (p: Promise<unknown> | (() => unknown)) => {
      try {
        await (typeof p === 'function' ? p() : p);
      } catch (e) {
        return [(e as { code?: string }).code, (e as Error).message] as const;
      }
      return ['none', ''] as const;
    };
    try {
      // f32 weights: about 270 kB, more than the device has.
      const [c1, m1] = await code(loadModel(paths.get('gqa4-f32')!, { device: 'cuda:0' }));
      expect(c1).toBe('GEMMKIT_OUT_OF_MEMORY');
      expect(m1).toMatch(/^loadModel: out of memory for the weights of .*gqa4-f32 on cuda:0 \(Tensor.to: out of memory on cuda:0 for \d+ bytes/);
      expect(small.used).toBe(0); // everything copied so far was freed
      const model = (await loadModel(paths.get('gqa2-bf16')!, { device: 'cuda:0' })) as LlamaModel; // about 150 kB
      const weights = small.used;
      // 2 layers x (keys + values) x 2 KV heads x 16 x 4 bytes = 512 bytes a position.
      expect(() => createKVCache(model, 1, 1000)).toThrow(/createKVCache: a KV cache of 1 x 1000 positions \(2 layers x 2 KV heads x 16\) needs 512000 bytes, more than the 200000 bytes of memory cuda:0 has/);
      const [c2, m2] = await code(() => createKVCache(model, 1, 200)); // fits the device, not what is free
      expect(c2).toBe('GEMMKIT_OUT_OF_MEMORY');
      expect(m2).toMatch(/^createKVCache: out of memory for a KV cache of 1 x 200 positions .* on cuda:0 \(/);
      expect(small.used).toBe(weights);
      // Activations: a long prompt's buffers do not fit next to a cache that nearly fills the device.
      const cache = createKVCache(model, 1, 60);
      const [c3, m3] = await code(forward(model, Array.from({ length: 60 }, (_, i) => i % 83), { cache }));
      expect(c3).toBe('GEMMKIT_OUT_OF_MEMORY');
      expect(m3).toMatch(/^forward: out of memory for the activations of 1 x 60 tokens .* on cuda:0 \(/);
      expect(cache.length).toBe(0); // a refused forward changes no length
      // The device keeps working: a short prompt runs, and agrees with the CPU.
      const got = host(await forward(model, [1, 2, 3], { cache, logits: 'last' }));
      const cpuModel = await load('gqa2-bf16', 'cpu');
      expectRel(got, host(await forward(cpuModel, [1, 2, 3], { logits: 'last' })), 2 ** -8, 'after out of memory');
      cpuModel.dispose();
      model.dispose();
      expect(small.used).toBe(0);
    } finally {
      setGpuAddonForTesting('cuda', gpu);
    }
  });

  it('dispose() during generate on a GPU ends it with a TypeError and frees every buffer', async () => {
    const model = await load('gqa4-f32', 'cuda:0');
    const running = generate(model, [1, 2, 3], { maxNewTokens: 200 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    model.dispose();
    await expect(running).rejects.toThrow(/generate: the model was disposed after \d+ of 200 new tokens/);
    expect(gpu.used).toBe(0);
    await expect(forward(model as Model, [1])).rejects.toThrow(/forward: the model was disposed/);
  });
});
