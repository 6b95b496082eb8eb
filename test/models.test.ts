// Whole models on the CPU against the float64 reference: an MLP described by its safetensors metadata, and
// a small Llama (2 layers, hidden 64, 4 heads, 2 KV heads, vocab 97) in f32 and bf16, single-file and
// sharded; KV-cache decoding against recomputing the sequence; the GEMM list the tuner uses against what
// runs (with q/k/v and gate/up fused). The same on a GPU: models_device.test.ts.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Checkpoint, type DType, type GemmShape, type LlamaModel, type MlpModel, MLP_METADATA_KEY, type Tensor, createKVCache, forward, generate,
  loadModel, modelGemmShapes, saveSafetensors, writeRandomLlamaCheckpoint,
} from '../src/index.js';
import { linearInputDtype, observeLinear } from '../src/models/layers.js';
import { randTensor, values } from './helpers.js';
import { type RefLlamaConfig, type RefWeights, refActivation, refLayerNorm, refLinear, refLlama, refRmsNorm, refSoftmax } from './model-reference.js';

const dir = mkdtempSync(join(tmpdir(), 'gemmkit-models-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Largest |got - want| over the largest |want|: the normwise relative error. */
function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let err = 0, mag = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    mag = Math.max(mag, Math.abs(want[i]));
  }
  return err / mag;
}

function expectRelError(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, label: string): number {
  expect(got.length, `${label}: length`).toBe(want.length);
  const e = relError(got, want);
  if (!(e <= tol)) throw new Error(`${label}: normwise relative error ${e.toExponential(2)} > ${tol.toExponential(2)}`);
  return e;
}

function refWeights(path: string): RefWeights {
  const ck = Checkpoint.open(path);
  try {
    return new Map(ck.names().map((n) => [n, values(ck.tensor(n))]));
  } finally {
    ck.close();
  }
}

// The dtype a bf16 weight's GEMM reads its input in on this CPU (bf16 where it has bf16 kernels), and the
// tolerance against a reference that rounds the same inputs: the model's f32 activations and the
// reference's f64 ones sit on different sides of a bf16 rounding boundary now and then (one bf16 step,
// 2^-8 relative, on that input).
const BF16_IN = linearInputDtype('bf16');
const BF16_IN_TOL = 2 ** -10;

// --- MLP ---------------------------------------------------------------------------------------------

describe('MLP from a safetensors file with its spec in __metadata__', () => {
  const spec = {
    type: 'mlp',
    layers: [
      { op: 'linear', weight: 'fc1.weight', bias: 'fc1.bias', activation: 'relu' },
      { op: 'layernorm', weight: 'ln.weight', bias: 'ln.bias', eps: 1e-5 },
      { op: 'linear', weight: 'fc2.weight', bias: 'fc2.bias', activation: 'gelu' },
      { op: 'rmsnorm', weight: 'rms.weight', eps: 1e-6 },
      { op: 'silu' },
      { op: 'linear', weight: 'fc3.weight' },
      { op: 'softmax' },
    ],
  };
  function writeMlp(dtype: DType): string {
    const path = join(dir, `mlp-${dtype}.safetensors`);
    saveSafetensors(path, {
      'fc1.weight': randTensor([45, 64], dtype, 1), 'fc1.bias': randTensor([45], dtype, 2),
      'ln.weight': randTensor([45], 'f32', 3), 'ln.bias': randTensor([45], 'f32', 4),
      'fc2.weight': randTensor([33, 45], dtype, 5), 'fc2.bias': randTensor([33], dtype, 6),
      'rms.weight': randTensor([33], 'f32', 7),
      'fc3.weight': randTensor([10, 33], dtype, 8),
    }, { [MLP_METADATA_KEY]: JSON.stringify(spec) });
    return path;
  }
  function refMlp(w: RefWeights, x: Float64Array, rows: number, round: boolean): Float64Array {
    const g = (n: string) => w.get(n)!;
    let h = refLinear(x, rows, g('fc1.weight'), 45, g('fc1.bias'), 'relu', round);
    h = refLayerNorm(h, 45, g('ln.weight'), g('ln.bias'), 1e-5);
    h = refLinear(h, rows, g('fc2.weight'), 33, g('fc2.bias'), 'gelu', round);
    h = refActivation(refRmsNorm(h, 33, g('rms.weight'), 1e-6), 'silu');
    return refSoftmax(refLinear(h, rows, g('fc3.weight'), 10, undefined, 'none', round), 10);
  }
  for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
    it(`${dtype} weights: forward equals the reference, for 1 and 7 rows and bf16 input`, async () => {
      const path = writeMlp(dtype);
      const model = (await loadModel(path)) as MlpModel;
      expect(model.kind).toBe('mlp');
      expect(model.inputFeatures).toBe(64);
      expect(model.outputFeatures).toBe(10);
      const w = refWeights(path);
      // bf16 weights read bf16 inputs where the CPU has bf16 kernels: the reference rounds them too.
      const round = linearInputDtype(dtype) === 'bf16';
      const tol = round ? BF16_IN_TOL : 2e-6;
      for (const rows of [1, 7]) {
        const x = randTensor([rows, 64], 'f32', 40 + rows);
        const y = await forward(model, x);
        expect(y.shape).toEqual([rows, 10]);
        expectRelError(y.toFloat32(), refMlp(w, values(x), rows, round), tol, `MLP ${dtype} rows=${rows}`);
      }
      const xb = randTensor([3, 64], 'bf16', 9);
      expectRelError((await forward(model, xb)).toFloat32(), refMlp(w, values(xb), 3, round), tol, `MLP ${dtype} bf16 input`);
    });
  }
  it('bad specs and inputs are clear errors', async () => {
    const path = writeMlp('f32');
    const model = await loadModel(path);
    await expect(forward(model as MlpModel, randTensor([2, 63], 'f32', 1))).rejects.toThrow(/input is \[2, 63\] but the model takes \[batch, 64\]/);
    await expect(forward(model as MlpModel, [1, 2] as never)).rejects.toThrow(/an MLP takes a Tensor/);
    const bad = (layers: unknown, tensors: Record<string, Tensor> = { 'fc1.weight': randTensor([4, 3], 'f32', 1) }) => {
      const p = join(dir, `bad-${Math.random().toString(36).slice(2)}.safetensors`);
      saveSafetensors(p, tensors, { [MLP_METADATA_KEY]: typeof layers === 'string' ? layers : JSON.stringify({ type: 'mlp', layers }) });
      return loadModel(p);
    };
    await expect(bad('{oops')).rejects.toThrow(/is not valid JSON/);
    await expect(bad([])).rejects.toThrow(/at least one layer/);
    await expect(bad([{ op: 'conv' }])).rejects.toThrow(/layer 0: unknown op "conv"/);
    await expect(bad([{ op: 'linear' }])).rejects.toThrow(/layer 0 \(linear\) needs "weight"/);
    await expect(bad([{ op: 'linear', weight: 'fc1.weight', activation: 'tanh' }])).rejects.toThrow(/activation must be one of/);
    await expect(bad([{ op: 'linear', weight: 'nope' }])).rejects.toThrow(/tensor 'nope': no such tensor/);
    await expect(bad([{ op: 'linear', weight: 'fc1.weight' }, { op: 'linear', weight: 'fc1.weight' }])).rejects.toThrow(/layer 1 \(linear\): 'fc1.weight' is \[4, 3\] but its input has 4 features/);
    await expect(bad([{ op: 'linear', weight: 'fc1.weight' }, { op: 'layernorm', weight: 'fc1.weight' }])).rejects.toThrow(/weight 'fc1.weight' is \[4, 3\], expected \[4\]/);
    await expect(bad([{ op: 'rmsnorm', weight: 'fc1.weight', eps: -1 }])).rejects.toThrow(/eps must be a positive number/);
    await expect(bad([{ op: 'rmsnorm', weight: 'fc1.weight', eps: 1e39 }])).rejects.toThrow(/eps must be a positive number within f32's range/); // the op computes in f32
    const noSpec = join(dir, 'nospec.safetensors');
    saveSafetensors(noSpec, { x: randTensor([2], 'f32', 1) });
    await expect(loadModel(noSpec)).rejects.toThrow(/neither a gemmkit MLP .* nor a checkpoint with a config.json/);
  });
});

// --- Llama -------------------------------------------------------------------------------------------

const HF = {
  hidden_size: 64, intermediate_size: 160, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2,
  rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: 97, tie_word_embeddings: false,
};
const refConfig = (tied: boolean, roundInputs = false): RefLlamaConfig => ({ hidden: 64, intermediate: 160, heads: 4, kvHeads: 2, layers: 2, vocab: 97, eps: 1e-5, theta: 10000, tied, roundInputs });
const PROMPTS = [[5, 17, 96, 0, 42, 42, 7], [1, 2, 3, 4, 5, 6, 95]];

describe('Llama decoder against the float64 reference', () => {
  const paths: Record<string, string> = {};
  beforeAll(() => {
    paths.f32 = join(dir, 'llama-f32');
    writeRandomLlamaCheckpoint(paths.f32, HF, { dtype: 'f32', seed: 1 });
    paths.bf16 = join(dir, 'llama-bf16-sharded');
    writeRandomLlamaCheckpoint(paths.bf16, HF, { dtype: 'bf16', seed: 1, shards: 3 }); // the same values, rounded
    paths.tied = join(dir, 'llama-tied-f16');
    writeRandomLlamaCheckpoint(paths.tied, { ...HF, tie_word_embeddings: true }, { dtype: 'f16', seed: 2 });
  });

  for (const [which, tied, round] of [['f32', false, false], ['bf16', false, BF16_IN === 'bf16'], ['tied', true, false]] as const) {
    it(`${which}: logits of a batch of two sequences equal the reference computed from the stored weights`, async () => {
      const model = (await loadModel(paths[which])) as LlamaModel;
      expect(model.kind).toBe('llama');
      const logits = await forward(model, PROMPTS);
      expect(logits.shape).toEqual([2, 7, 97]);
      const w = refWeights(paths[which]);
      const all = logits.toFloat32();
      PROMPTS.forEach((ids, b) => {
        // On the stored weights, with the GEMM inputs rounded to bf16 where the model does: the error is f32
        // rounding along the way (and, with bf16 inputs, the odd input that lands on the other side of a
        // bf16 rounding boundary).
        expectRelError(all.subarray(b * 7 * 97, (b + 1) * 7 * 97), refLlama(refConfig(tied, round), w, ids), round ? BF16_IN_TOL : 2e-6, `${which} sequence ${b}`);
      });
    });
  }

  it('bf16 weights: within bf16 rounding of the f32 model\'s reference (dtype-aware tolerance)', async () => {
    const model = (await loadModel(paths.bf16)) as LlamaModel;
    const exact = refLlama(refConfig(false), refWeights(paths.f32), PROMPTS[0]);
    const got = (await forward(model, PROMPTS[0])).toFloat32();
    const e = expectRelError(got, exact, 4 * 2 ** -8, 'bf16 model vs f32 reference');
    expect(e).toBeGreaterThan(2 ** -14); // the weights really were rounded to bf16
    const f32Model = (await loadModel(paths.f32)) as LlamaModel;
    expectRelError((await forward(f32Model, PROMPTS[0])).toFloat32(), exact, 2e-6, 'f32 model vs f32 reference');
  });

  it('a file path with config.json beside it loads too, and logits: "last" gives each sequence\'s last row', async () => {
    const model = (await loadModel(join(paths.f32, 'model.safetensors'))) as LlamaModel;
    const all = await forward(model, PROMPTS);
    const last = await forward(model, PROMPTS, { logits: 'last' });
    expect(last.shape).toEqual([2, 97]);
    const a = all.toFloat32(), l = last.toFloat32();
    for (let b = 0; b < 2; b++) expectRelError(l.subarray(b * 97, (b + 1) * 97), a.subarray((b * 7 + 6) * 97, (b * 7 + 7) * 97), 1e-6, `last row of ${b}`);
    const single = await forward(model, PROMPTS[1], { logits: 'last' });
    expect(single.shape).toEqual([97]);
  });
});

describe('KV cache: decoding step by step equals recomputing the whole sequence', () => {
  let path: string;
  beforeAll(() => {
    path = join(dir, 'llama-cache');
    writeRandomLlamaCheckpoint(path, HF, { dtype: 'bf16', seed: 3 });
  });

  it('generate() picks the argmax of the full-sequence logits at every step', async () => {
    const model = (await loadModel(path)) as LlamaModel;
    const prompt = PROMPTS[0].slice(0, 5);
    const seq = await generate(model, prompt, { maxNewTokens: 9 });
    expect(seq.length).toBe(14);
    expect(seq.slice(0, 5)).toEqual(prompt);
    const full = (await forward(model, seq.slice(0, -1))).toFloat32(); // [13, 97]
    for (let t = 4; t < 13; t++) {
      const row = full.subarray(t * 97, (t + 1) * 97);
      let best = 0;
      for (let i = 1; i < 97; i++) if (row[i] > row[best]) best = i;
      expect(seq[t + 1], `token ${t + 1}`).toBe(best);
    }
    // The same continuation through the reference.
    const w = refWeights(path);
    const ref = refLlama(refConfig(false, BF16_IN === 'bf16'), w, seq.slice(0, -1));
    expectRelError(full, ref, BF16_IN === 'bf16' ? BF16_IN_TOL : 2e-6, 'full sequence vs reference');
  });

  it('logits with the cache equal the full recomputation at every position', async () => {
    const model = (await loadModel(path)) as LlamaModel;
    const seq = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26];
    const full = (await forward(model, seq)).toFloat32();
    const cache = createKVCache(model, 1, seq.length);
    const first = (await forward(model, seq.slice(0, 4), { cache })).toFloat32();
    expect(cache.length).toBe(4);
    expectRelError(first, full.subarray(0, 4 * 97), 1e-6, 'prefill of 4');
    for (let t = 4; t < seq.length; t++) {
      const step = (await forward(model, [seq[t]], { cache })).toFloat32();
      expectRelError(step, full.subarray(t * 97, (t + 1) * 97), 1e-6, `decode step at position ${t}`);
    }
    expect(cache.length).toBe(seq.length);
    await expect(forward(model, [1], { cache })).rejects.toThrow(/12 cached \+ 1 new positions exceed the cache capacity of 12/);
  });

  it('a batch decodes like its sequences one by one; eosTokenId stops a sequence', async () => {
    const model = (await loadModel(path)) as LlamaModel;
    const both = await generate(model, PROMPTS, { maxNewTokens: 5 });
    expect(both).toEqual([await generate(model, PROMPTS[0], { maxNewTokens: 5 }), await generate(model, PROMPTS[1], { maxNewTokens: 5 })]);
    const eos = both[0][8]; // the second generated token of sequence 0
    const stopped = await generate(model, PROMPTS[0], { maxNewTokens: 5, eosTokenId: eos });
    expect(stopped).toEqual(both[0].slice(0, both[0].indexOf(eos, 7) + 1));
    expect(await generate(model, [1, 2], { maxNewTokens: 0 })).toEqual([1, 2]);
  });
});

describe('Llama errors', () => {
  let path: string;
  beforeAll(() => {
    path = join(dir, 'llama-errors');
    writeRandomLlamaCheckpoint(path, HF, { dtype: 'f32', seed: 4 });
  });
  it('token ids and options', async () => {
    const model = (await loadModel(path)) as LlamaModel;
    await expect(forward(model, [1, 97])).rejects.toThrow(/token 1 of sequence 0 is 97; ids are integers in \[0, 97\)/);
    await expect(forward(model, [1.5])).rejects.toThrow(/token 0 of sequence 0 is 1.5/);
    await expect(forward(model, [[1, 2], [3]])).rejects.toThrow(/sequence 1 has 1 tokens but sequence 0 has 2/);
    await expect(forward(model, [])).rejects.toThrow(/needs at least one token/);
    await expect(forward(model, 'hello' as never)).rejects.toThrow(/takes token ids/);
    await expect(forward(model, [1], { logits: 'first' as never })).rejects.toThrow(/logits must be 'all' or 'last'/);
    await expect(forward(model, [[1], [2]], { cache: createKVCache(model, 1, 4) })).rejects.toThrow(/the cache holds 1 sequences but the input has 2/);
    await expect(generate(model, [1], { maxNewTokens: -1 })).rejects.toThrow(/maxNewTokens must be a non-negative integer/);
    await expect(generate(model, [1], undefined as never)).rejects.toThrow(/options \{ maxNewTokens \} are required/);
    await expect(forward({ kind: 'x' } as never, [1])).rejects.toThrow(/model must come from loadModel/);
    expect(() => createKVCache(model, 0, 4)).toThrow(/batch must be a positive integer/);
    await expect(generate({ kind: 'mlp' } as never, [1], { maxNewTokens: 1 })).rejects.toThrow(/generate: model must be a Llama model from loadModel\(\), got a mlp model/);
    expect(() => createKVCache({ kind: 'mlp' } as never, 1, 4)).toThrow(/createKVCache: model must be a Llama model/);
  });
  it('config.json and tensors that do not fit', async () => {
    const variant = (name: string, config: Record<string, unknown>, tweak?: (d: string) => void) => {
      const d = join(dir, name);
      writeRandomLlamaCheckpoint(d, HF, { dtype: 'f32', seed: 5 });
      writeFileSync(join(d, 'config.json'), JSON.stringify(config));
      tweak?.(d);
      return loadModel(d);
    };
    await expect(variant('c1', { ...HF, num_key_value_heads: 3 })).rejects.toThrow(/num_attention_heads \(4\) is not a multiple of num_key_value_heads \(3\)/);
    await expect(variant('c2', { ...HF, rope_scaling: { type: 'llama3' } })).rejects.toThrow(/rope_scaling .* is not supported/);
    await expect(variant('c3', { ...HF, model_type: 'gpt2' })).rejects.toThrow(/model_type is "gpt2"/);
    await expect(variant('c4', { ...HF, hidden_size: undefined })).rejects.toThrow(/hidden_size must be a positive integer/);
    await expect(variant('c5', { ...HF, intermediate_size: 128 })).rejects.toThrow(/tensor 'model.layers.0.mlp.gate_proj.weight' is \[160, 64\] but config.json makes it \[128, 64\]/);
    await expect(variant('c6', { ...HF, num_hidden_layers: 3 })).rejects.toThrow(/no tensor 'model.layers.2.input_layernorm.weight'/);
    await expect(variant('c7', { ...HF, hidden_act: 'gelu' })).rejects.toThrow(/hidden_act is "gelu"/);
    await expect(variant('c7b', { ...HF, rms_norm_eps: 3.5e38 })).rejects.toThrow(/rms_norm_eps must be a positive number within f32's range/);
    await expect(variant('c8', { ...HF }, (d) => writeFileSync(join(d, 'config.json'), '{'))).rejects.toThrow(/config.json: not valid JSON/);
    await expect(loadModel(join(dir, 'c8', 'model.safetensors'))).rejects.toThrow(/c8\/config.json: not valid JSON/);
    const noHead = join(dir, 'nohead');
    mkdirSync(noHead);
    writeRandomLlamaCheckpoint(noHead, { ...HF, tie_word_embeddings: true }, { dtype: 'f32', seed: 6 });
    writeFileSync(join(noHead, 'config.json'), JSON.stringify(HF));
    await expect(loadModel(noHead)).rejects.toThrow(/no tensor 'lm_head.weight' \(or set tie_word_embeddings: true/);
  });
});

// --- what the tuner tunes is what forward runs --------------------------------------------------------

function runKey(g: Pick<GemmShape, 'm' | 'n' | 'k' | 'dtype' | 'dtypeA' | 'bias' | 'activation' | 'beta'>): string {
  return `${g.m}x${g.n}x${g.k} ${g.dtypeA}*${g.dtype} bias=${g.bias} ${g.activation} beta=${g.beta}`;
}

async function recordGemms(run: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  observeLinear((c) => seen.push(runKey({
    m: c.x.shape[0], n: c.weight.outFeatures, k: c.weight.inFeatures, dtype: c.weight.dtype, dtypeA: c.x.dtype,
    bias: c.bias !== undefined, activation: c.activation, beta: c.residual ? 1 : 0,
  })));
  try {
    await run();
  } finally {
    observeLinear(undefined);
  }
  return seen.sort();
}

const expand = (shapes: GemmShape[]) => shapes.flatMap((s) => Array<string>(s.count).fill(runKey(s))).sort();

describe('modelGemmShapes lists exactly the weight GEMMs forward runs', () => {
  it('Llama: the fused q/k/v GEMM, o, the fused gate/up GEMM and down per layer, and the LM head; M = batch x tokens', async () => {
    const path = join(dir, 'llama-shapes');
    writeRandomLlamaCheckpoint(path, HF, { dtype: 'bf16', seed: 7, shards: 2 });
    const model = (await loadModel(path)) as LlamaModel;
    const shapes = await modelGemmShapes(path, [14]);
    expect(shapes.map((s) => s.name)).toEqual([
      'model.layers.*.self_attn.{q,k,v}_proj', 'model.layers.*.self_attn.o_proj', 'model.layers.*.mlp.{gate,up}_proj', 'model.layers.*.mlp.down_proj', 'lm_head',
    ]);
    // q: 4 heads x 16, k and v: 2 KV heads x 16 each, stacked; gate and up: 2 x 160; silu is the swiglu op's.
    expect(shapes[0]).toMatchObject({ m: 14, n: 64 + 32 + 32, k: 64, transB: true, dtype: 'bf16', dtypeA: BF16_IN, dtypeC: 'f32', count: 2, activation: 'none', bias: false, beta: 0, prepacked: true });
    expect(shapes[1]).toMatchObject({ n: 64, k: 64, beta: 1 });
    expect(shapes[2]).toMatchObject({ n: 320, k: 64, activation: 'none', beta: 0 });
    expect(shapes[3]).toMatchObject({ n: 64, k: 160, beta: 1 });
    expect(shapes[4]).toMatchObject({ n: 97, k: 64, count: 1 });
    expect(await recordGemms(() => forward(model, PROMPTS))).toEqual(expand(shapes)); // 2 x 7 tokens
    // A decode step runs M = 1 everywhere.
    const cache = createKVCache(model, 1, 8);
    await forward(model, [1, 2, 3], { cache });
    expect(await recordGemms(() => forward(model, [4], { cache }))).toEqual(expand(await modelGemmShapes(path, [1])));
    const both = await modelGemmShapes(path, [1, 128]);
    expect(both.length).toBe(10);
    expect(both[5]).toMatchObject({ m: 128 });
    // On a GPU the same GEMMs read the weights' own dtype and are not prepacked (see models_device.test.ts).
    expect((await modelGemmShapes(path, [1], { device: 'hip:3' }))[0]).toMatchObject({ dtypeA: 'bf16', prepacked: false });
    await expect(modelGemmShapes(path, [1], { device: 'gpu' as never })).rejects.toThrow(/modelGemmShapes: unknown device "gpu"/);
  });
  it('q/k/v in different dtypes are fused in f32 (what they widen to exactly); biases fused with zeros where a part has none', async () => {
    const path = join(dir, 'llama-mixed');
    writeRandomLlamaCheckpoint(path, HF, { dtype: 'f32', seed: 9 });
    const ck = Checkpoint.open(path);
    const tensors = new Map(ck.names().map((n) => [n, ck.tensor(n)]));
    ck.close();
    for (let l = 0; l < 2; l++) {
      const k = `model.layers.${l}.self_attn.k_proj.weight`;
      tensors.set(k, tensors.get(k)!.toDType('bf16'));
      tensors.set(`model.layers.${l}.self_attn.v_proj.bias`, randTensor([32], 'f16', l));
    }
    saveSafetensors(join(path, 'model.safetensors'), tensors);
    const shapes = await modelGemmShapes(path, [3]);
    expect(shapes[0]).toMatchObject({ n: 128, dtype: 'f32', dtypeA: 'f32', bias: true });
    const model = (await loadModel(path)) as LlamaModel;
    expect(model.blocks[0].qkv.weight.dtype).toBe('f32');
    expect(await recordGemms(() => forward(model, [1, 2, 3]))).toEqual(expand(shapes));
    const w = refWeights(path);
    expectRelError((await forward(model, PROMPTS[0])).toFloat32(), refLlama(refConfig(false), w, PROMPTS[0]), 2e-6, 'mixed dtypes and a v bias');
  });
  it('tied embeddings: the LM head is the embedding table', async () => {
    const path = join(dir, 'llama-shapes-tied');
    writeRandomLlamaCheckpoint(path, { ...HF, tie_word_embeddings: true }, { dtype: 'f16', seed: 8 });
    const shapes = await modelGemmShapes(path, [3]);
    expect(shapes.at(-1)).toMatchObject({ name: 'lm_head (tied: model.embed_tokens)', m: 3, n: 97, k: 64, dtype: 'f16' });
    const model = (await loadModel(path)) as LlamaModel;
    expect(await recordGemms(() => forward(model, [1, 2, 3]))).toEqual(expand(shapes));
  });
  it('MLP: one GEMM per Linear', async () => {
    const path = join(dir, 'mlp-shapes.safetensors');
    saveSafetensors(path, {
      'a.weight': randTensor([16, 8], 'bf16', 1), 'a.bias': randTensor([16], 'f32', 2), 'b.weight': randTensor([3, 16], 'f32', 3),
    }, { [MLP_METADATA_KEY]: JSON.stringify({ type: 'mlp', layers: [{ op: 'linear', weight: 'a.weight', bias: 'a.bias', activation: 'gelu' }, { op: 'softmax' }, { op: 'linear', weight: 'b.weight' }] }) });
    const shapes = await modelGemmShapes(path, [1, 256]);
    expect(shapes).toEqual([
      { name: 'a.weight', m: 1, n: 16, k: 8, transB: true, dtype: 'bf16', dtypeA: BF16_IN, dtypeC: 'f32', bias: true, activation: 'gelu', beta: 0, count: 1, prepacked: true },
      { name: 'b.weight', m: 1, n: 3, k: 16, transB: true, dtype: 'f32', dtypeA: 'f32', dtypeC: 'f32', bias: false, activation: 'none', beta: 0, count: 1, prepacked: true },
      { name: 'a.weight', m: 256, n: 16, k: 8, transB: true, dtype: 'bf16', dtypeA: BF16_IN, dtypeC: 'f32', bias: true, activation: 'gelu', beta: 0, count: 1, prepacked: true },
      { name: 'b.weight', m: 256, n: 3, k: 16, transB: true, dtype: 'f32', dtypeA: 'f32', dtypeC: 'f32', bias: false, activation: 'none', beta: 0, count: 1, prepacked: true },
    ]);
    const model = (await loadModel(path)) as MlpModel;
    expect(await recordGemms(() => forward(model, randTensor([256, 8], 'f32', 4)))).toEqual(expand(shapes.filter((s) => s.m === 256)));
    await expect(modelGemmShapes(path, [])).rejects.toThrow(/batchSizes must be a non-empty list of positive integers/);
    await expect(modelGemmShapes(path, [0])).rejects.toThrow(RangeError);
  });
});
