// Loading and running models as a hostile caller would: sizes that would hang or exhaust memory (run in a
// child process with a time limit, so a hang or an abort fails the test instead of the suite), concurrent
// use of one KV cache, generate() and the event loop, dispose() and memory, and the small argument errors.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Checkpoint, type LlamaModel, MLP_METADATA_KEY, type MlpModel, SafetensorsError, SafetensorsFile, createKVCache, forward, generate, loadModel,
  loadSafetensors, readSafetensorsHeader, saveSafetensors, writeRandomLlamaCheckpoint,
} from '../src/index.js';
import { memoryPolicy } from '../src/models/resources.js';
import { randTensor } from './helpers.js';

const root = new URL('..', import.meta.url);
const dir = mkdtempSync(join(tmpdir(), 'gemmkit-robust-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HF = {
  hidden_size: 64, intermediate_size: 160, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2,
  rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: 97, tie_word_embeddings: false,
};

/**
 * Runs an ES module (as text, importing './src/index.ts') in a fresh Node process with a time limit; the
 * test reads what it printed. A hang is a timeout and an abort a non-zero status: both fail the caller.
 */
function runIsolated(code: string, timeoutMs: number, nodeArgs: string[] = []): { status: number | null; signal: string | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...nodeArgs, '--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: root, env: { ...process.env, ROBUST_DIR: dir }, encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL',
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** The JSON the isolated script printed last; fails with its output when it did not finish cleanly. */
function isolatedResult<T>(r: ReturnType<typeof runIsolated>, what: string): T {
  if (r.status !== 0) {
    throw new Error(`${what}: the child process ${r.signal ? `was killed (${r.signal}: it hung past its time limit)` : `exited with status ${r.status}`}\n${r.stderr.slice(-2000)}`);
  }
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}

/** A safetensors file written byte for byte from a header (for shapes the writer refuses to make). */
function rawSafetensors(path: string, header: unknown, dataBytes = 0): void {
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.byteLength));
  writeFileSync(path, Buffer.concat([prefix, json, Buffer.alloc(dataBytes)]));
}

// --- sizes that would hang -------------------------------------------------------------------------------

describe('absurd dimensions are refused up front, never looped over', () => {
  it('empty weights with huge dimensions: the reader refuses dimensions over MAX_TENSOR_DIM, the loaders empty weights', () => {
    const spec = JSON.stringify({ type: 'mlp', layers: [{ op: 'linear', weight: 'w' }] });
    const cases: [string, number[]][] = [['a', [0, 2 ** 52]], ['b', [2 ** 52, 0]], ['c', [0, 2 ** 31 - 1]], ['d', [2 ** 31 - 1, 0]], ['e', [0, 2 ** 20, 2 ** 20]]];
    for (const [name, shape] of cases) {
      rawSafetensors(join(dir, `empty-${name}.safetensors`), { __metadata__: { [MLP_METADATA_KEY]: spec }, w: { dtype: 'F32', shape, data_offsets: [0, 0] } });
    }
    // A Llama checkpoint whose config.json asks for an enormous model over empty tensors of that size.
    const llama = join(dir, 'empty-llama');
    mkdirSync(llama, { recursive: true });
    const huge = 2 ** 31 - 1;
    writeFileSync(join(llama, 'config.json'), JSON.stringify({ ...HF, hidden_size: huge, num_attention_heads: 1, num_key_value_heads: 1, head_dim: 2, intermediate_size: huge, num_hidden_layers: 1, vocab_size: 1 }));
    const emptyTensors: Record<string, unknown> = {};
    for (const name of ['model.embed_tokens.weight', 'lm_head.weight']) emptyTensors[name] = { dtype: 'F32', shape: [0, huge], data_offsets: [0, 0] };
    rawSafetensors(join(llama, 'model.safetensors'), emptyTensors);
    const r = runIsolated(`
      import { loadModel, readSafetensorsHeader } from './src/index.ts';
      const dir = process.env.ROBUST_DIR;
      const out = {};
      for (const name of ['a', 'b', 'c', 'd', 'e', 'llama']) {
        const path = name === 'llama' ? dir + '/empty-llama' : dir + '/empty-' + name + '.safetensors';
        const t = performance.now();
        try { await loadModel(path); out[name] = 'loaded'; } catch (e) { out[name] = e.name + ': ' + e.message; }
        out[name + 'Ms'] = performance.now() - t;
      }
      try { readSafetensorsHeader(dir + '/empty-a.safetensors'); out.header = 'read'; } catch (e) { out.header = e.name + ': ' + e.message; }
      console.log(JSON.stringify(out));
    `, 60_000);
    const out = isolatedResult<Record<string, string>>(r, 'loading empty tensors with huge dimensions');
    expect(out.a).toMatch(/^SafetensorsError: .*tensor 'w': shape \[0, 4503599627370496\] has a dimension of 4503599627370496, more than the 2147483647 allowed/);
    expect(out.b).toMatch(/^SafetensorsError: .*more than the 2147483647 allowed/);
    expect(out.c).toMatch(/^RangeError: .*layer 0 \(linear\): 'w' is \[0, 2147483647\]; a model's weights need every dimension >= 1/);
    expect(out.d).toMatch(/^RangeError: .*'w' is \[2147483647, 0\]; a model's weights need every dimension >= 1/);
    expect(out.e).toMatch(/^RangeError: .*'w': a Linear weight must be \[out, in\], got \[0, 1048576, 1048576\]|^RangeError: .*every dimension >= 1/);
    expect(out.llama).toMatch(/^RangeError: .*tensor 'model.embed_tokens.weight' is \[0, 2147483647\] but config.json makes it \[1, 2147483647\]/);
    expect(out.header).toMatch(/^SafetensorsError: .*more than the 2147483647 allowed/);
  });

  it('the writer refuses shapes the reader would refuse', () => {
    expect(() => saveSafetensors(join(dir, 'w.safetensors'), { w: { dtype: 'F32', shape: [0, 2 ** 52], data: new Float32Array(0) } }))
      .toThrow(/saveSafetensors: tensor 'w' has shape \[0,4503599627370496\]; a shape is at most 64 integers in \[0, 2147483647\]/);
    expect(() => saveSafetensors(join(dir, 'w.safetensors'), { w: { dtype: 'F32', shape: Array<number>(65).fill(1), data: new Float32Array(1) } })).toThrow(RangeError);
  });
});

// --- sizes that would exhaust memory ---------------------------------------------------------------------

describe('config.json sizes are checked against the checkpoint before anything is allocated', () => {
  let base: string;
  beforeAll(() => {
    base = join(dir, 'oom-base');
    writeRandomLlamaCheckpoint(base, HF, { dtype: 'f32', seed: 1 });
  });

  it('num_hidden_layers: 1e9 is an error naming the first missing layer, quickly and in little memory', () => {
    const configs: Record<string, Record<string, unknown>> = {
      layers: { ...HF, num_hidden_layers: 1e9 },
      layersMax: { ...HF, num_hidden_layers: Number.MAX_SAFE_INTEGER },
      hidden: { ...HF, hidden_size: 2 ** 31 - 1, head_dim: 16 },
      hiddenOver: { ...HF, hidden_size: 2 ** 40 },
      vocab: { ...HF, vocab_size: 1e9 },
      intermediate: { ...HF, intermediate_size: 1e9 },
      heads: { ...HF, num_attention_heads: 2 ** 30, num_key_value_heads: 2 ** 30, head_dim: 2 },
      headDim: { ...HF, head_dim: 2 ** 30 },
      positions: { ...HF, max_position_embeddings: 1e15 },
    };
    for (const [name, config] of Object.entries(configs)) {
      const d = join(dir, `oom-${name}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'config.json'), JSON.stringify(config));
      copyFileSync(join(base, 'model.safetensors'), join(d, 'model.safetensors')); // the base checkpoint's weights
    }
    // --max-old-space-size: a billion-entry list of names would die here within seconds.
    const r = runIsolated(`
      import { loadModel, modelGemmShapes, createKVCache } from './src/index.ts';
      const dir = process.env.ROBUST_DIR;
      const out = {};
      for (const name of ${JSON.stringify(Object.keys(configs))}) {
        try { await loadModel(dir + '/oom-' + name); out[name] = 'loaded'; } catch (e) { out[name] = e.name + ': ' + e.message; }
      }
      try { await modelGemmShapes(dir + '/oom-layers', [1]); out.shapes = 'listed'; } catch (e) { out.shapes = e.name + ': ' + e.message; }
      const m = await loadModel(dir + '/oom-positions');
      out.positionsMax = m.config.maxPositionEmbeddings;
      try { createKVCache(m, 1, 1e12); out.cache = 'made'; } catch (e) { out.cache = e.name + ': ' + e.message; }
      console.log(JSON.stringify(out));
    `, 120_000, ['--max-old-space-size=256']);
    const out = isolatedResult<Record<string, string | number>>(r, 'num_hidden_layers: 1e9');
    expect(out.layers).toMatch(/^RangeError: .*no tensor 'model.layers.2.input_layernorm.weight' \(config.json num_hidden_layers is 1000000000; the checkpoint holds 2 layers \(highest index 1\)\)/);
    expect(out.layersMax).toMatch(/no tensor 'model.layers.2.input_layernorm.weight'/);
    expect(out.shapes).toMatch(/no tensor 'model.layers.2.input_layernorm.weight'/);
    expect(out.hidden).toMatch(/^RangeError: .*tensor 'model.embed_tokens.weight' is \[97, 64\] but config.json makes it \[97, 2147483647\]/);
    expect(out.hiddenOver).toMatch(/^RangeError: .*config.json field hidden_size must be an integer in \[1, 2147483647\], got 1099511627776/);
    expect(out.vocab).toMatch(/^RangeError: .*'model.embed_tokens.weight' is \[97, 64\] but config.json makes it \[1000000000, 64\]/);
    expect(out.intermediate).toMatch(/^RangeError: .*'model.layers.0.mlp.gate_proj.weight' is \[160, 64\] but config.json makes it \[1000000000, 64\]/);
    expect(out.heads).toMatch(/^RangeError: .*'model.layers.0.self_attn.q_proj.weight' is \[64, 64\] but config.json makes it \[2147483648, 64\]/);
    expect(out.headDim).toMatch(/^RangeError: .*'model.layers.0.self_attn.q_proj.weight' is \[64, 64\] but config.json makes it \[4294967296, 64\]/);
    expect(out.positionsMax).toBe(2 ** 24); // a claim past LLAMA_MAX_POSITIONS is held to it
    expect(out.cache).toMatch(/^RangeError: createKVCache: capacity 1000000000000 is more than the model's 16777216 positions/);
  });

  it('a weight the checkpoint holds in a dtype gemmkit does not load is refused before any weight is read', async () => {
    const d = join(dir, 'i64-bias');
    writeRandomLlamaCheckpoint(d, HF, { dtype: 'f32', seed: 2 });
    const ck = Checkpoint.open(d);
    const tensors = new Map(ck.names().map((n) => [n, ck.tensor(n)]));
    ck.close();
    const withBias: Record<string, unknown> = Object.fromEntries(tensors);
    withBias['model.layers.1.mlp.down_proj.bias'] = { dtype: 'I64', shape: [64], data: new BigInt64Array(64) };
    saveSafetensors(join(d, 'model.safetensors'), withBias as never);
    await expect(loadModel(d)).rejects.toThrow(/tensor 'model.layers.1.mlp.down_proj.bias': unsupported dtype I64/);
    withBias['model.layers.1.mlp.down_proj.bias'] = randTensor([63], 'f32', 1);
    saveSafetensors(join(d, 'model.safetensors'), withBias as never);
    await expect(loadModel(d)).rejects.toThrow(/tensor 'model.layers.1.mlp.down_proj.bias' is \[63\] but config.json makes it \[64\]/);
  });
});

// --- one KV cache, one call at a time -----------------------------------------------------------------------

describe('KV caches', () => {
  let path: string;
  let model: LlamaModel;
  beforeAll(async () => {
    path = join(dir, 'llama-cache');
    writeRandomLlamaCheckpoint(path, HF, { dtype: 'f32', seed: 3 });
    model = (await loadModel(path)) as LlamaModel;
  });

  it('a second forward on a cache while one is running is an Error; the cache stays right', async () => {
    const cache = createKVCache(model, 1, 8);
    await forward(model, [1, 2, 3], { cache });
    const first = forward(model, [4], { cache, logits: 'last' });
    const second = forward(model, [5], { cache, logits: 'last' });
    await expect(second).rejects.toThrow(/forward: the KV cache is in use by another forward\(\) that has not finished; await it first/);
    const firstLogits = (await first).toFloat32();
    expect(cache.length).toBe(4);
    const full = (await forward(model, [1, 2, 3, 4, 5], { logits: 'last' })).toFloat32();
    const step = (await forward(model, [5], { cache, logits: 'last' })).toFloat32();
    expect(cache.length).toBe(5);
    for (let i = 0; i < full.length; i++) expect(step[i]).toBeCloseTo(full[i], 5);
    expect(firstLogits.length).toBe(97);
  });

  it('a call that fails releases the cache; different caches run concurrently', async () => {
    const cache = createKVCache(model, 1, 4);
    await expect(forward(model, [1, 2, 3, 4, 5], { cache })).rejects.toThrow(/exceed the cache capacity of 4/);
    await expect(forward(model, [97], { cache })).rejects.toThrow(/ids are integers in \[0, 97\)/);
    await forward(model, [1, 2], { cache });
    expect(cache.length).toBe(2);
    const a = createKVCache(model, 1, 4), b = createKVCache(model, 1, 4);
    const [x, y] = await Promise.all([forward(model, [7, 8], { cache: a }), forward(model, [7, 8], { cache: b })]);
    expect([...x.toFloat32()]).toEqual([...y.toFloat32()]);
  });

  it('a cache of another model, and bad options, are TypeErrors naming them', async () => {
    const other = (await loadModel(path)) as LlamaModel; // the same weights, another model
    const cache = createKVCache(other, 1, 4);
    await expect(forward(model, [1], { cache })).rejects.toThrow(TypeError);
    await expect(forward(model, [1], { cache })).rejects.toThrow(/forward: the cache was made for another model/);
    expect(cache.length).toBe(0);
    await expect(forward(model, [1], null as never)).rejects.toThrow(/forward: options must be an object \(\{ cache, slots, logits \}\), got null/);
    await expect(forward(model, [1], 'last' as never)).rejects.toThrow(TypeError);
    await expect(forward(model, [1], { cache: {} as never })).rejects.toThrow(/forward: cache must be a KVCache/);
    await expect(forward(model, [1], { cahce: cache } as never)).rejects.toThrow(/forward: unknown option 'cahce'/);
    await expect(generate(model, [1], { maxNewTokens: 2, eosTokenId: 'x' as never })).rejects.toThrow(TypeError);
    await expect(generate(model, [1], { maxNewTokens: 2, eosTokenId: 'x' as never })).rejects.toThrow(/generate: eosTokenId must be a token id \(an integer in \[0, 97\)\), got "x"/);
    await expect(generate(model, [1], { maxNewTokens: 2, eosTokenId: 97 })).rejects.toThrow(RangeError);
    await expect(generate(model, [1], { maxNewTokens: 2, eosTokenId: 1.5 })).rejects.toThrow(/eosTokenId must be an integer in \[0, 97\), got 1.5/);
    await expect(generate(model, [1], { maxNewTokens: '3' as never })).rejects.toThrow(TypeError);
    await expect(generate(model, [1], { maxNewTokens: 2, eos: 3 } as never)).rejects.toThrow(/generate: unknown option 'eos'/);
    expect(() => createKVCache(model, 1, 0)).toThrow(/createKVCache: capacity must be a positive integer, got 0/);
    expect(() => createKVCache(model, 1.5, 4)).toThrow(/createKVCache: batch must be a positive integer/);
    const mlpPath = join(dir, 'tiny-mlp.safetensors');
    saveSafetensors(mlpPath, { w: randTensor([3, 4], 'f32', 1) }, { [MLP_METADATA_KEY]: JSON.stringify({ type: 'mlp', layers: [{ op: 'linear', weight: 'w' }] }) });
    const mlp = await loadModel(mlpPath);
    await expect(forward(mlp, randTensor([1, 4], 'f32', 2), { cache })).rejects.toThrow(/forward: cache, slots and logits are options of Llama models/);
    await expect(forward(mlp, randTensor([1, 4], 'f32', 2), null as never)).rejects.toThrow(/options must be an object/);
  });

  it('sizes past the model\'s positions or the memory available are RangeErrors saying so', async () => {
    expect(() => createKVCache(model, 1, 1e12)).toThrow(RangeError);
    expect(() => createKVCache(model, 1, 1e12)).toThrow(/createKVCache: capacity 1000000000000 is more than the model's 16777216 positions \(max_position_embeddings\)/);
    await expect(generate(model, [1], { maxNewTokens: 1e9 })).rejects.toThrow(/generate: 1 prompt tokens \+ maxNewTokens 1000000000 are more than the model's 16777216 positions/);
    // Within the positions but over the memory: the figure comes from memoryPolicy.
    const saved = memoryPolicy.availableBytes;
    memoryPolicy.availableBytes = () => 2 ** 20;
    try {
      // 2 layers x (keys + values) x 2 KV heads x 16 x 4 bytes = 512 bytes a position.
      expect(createKVCache(model, 1, 2048).capacity).toBe(2048); // exactly the 1 MiB available
      expect(() => createKVCache(model, 1, 2049)).toThrow(/createKVCache: a KV cache of 1 x 2049 positions \(2 layers x 2 KV heads x 16\) needs 1.0 MiB, more than the 1.0 MiB of memory available/);
      await expect(generate(model, [1], { maxNewTokens: 5000 })).rejects.toThrow(/generate: maxNewTokens 5000: a KV cache of 1 x 5001 positions .* needs 2.4 MiB, more than the 1.0 MiB of memory available/);
      await expect(forward(model, Array<number>(3000).fill(1))).rejects.toThrow(/forward: .* needs .* more than the 1.0 MiB of memory available/);
    } finally {
      memoryPolicy.availableBytes = saved;
    }
    // max_position_embeddings bounds caches, prompts and generation.
    const short = join(dir, 'llama-short');
    writeRandomLlamaCheckpoint(short, { ...HF, max_position_embeddings: 8 }, { dtype: 'f32', seed: 3 });
    const m = (await loadModel(short)) as LlamaModel;
    expect(createKVCache(m, 1, 8).capacity).toBe(8);
    expect(() => createKVCache(m, 1, 9)).toThrow(/capacity 9 is more than the model's 8 positions/);
    await expect(forward(m, Array<number>(9).fill(1))).rejects.toThrow(/forward: 9 tokens are more than the model's 8 positions/);
    await expect(generate(m, [1, 2, 3], { maxNewTokens: 6 })).rejects.toThrow(/3 prompt tokens \+ maxNewTokens 6 are more than the model's 8 positions/);
    expect((await generate(m, [1, 2, 3], { maxNewTokens: 5 })).length).toBe(8);
  });
});

// --- generate and the event loop -------------------------------------------------------------------------

describe('generate gives the event loop turns', () => {
  it('a 1 ms interval keeps firing during a long generate', async () => {
    const path = join(dir, 'llama-loop');
    writeRandomLlamaCheckpoint(path, HF, { dtype: 'bf16', seed: 4 });
    const model = await loadModel(path);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const start = performance.now();
    let seq: number[];
    try {
      seq = await generate(model, [1, 2, 3], { maxNewTokens: 300 });
    } finally {
      clearInterval(timer);
    }
    const ms = performance.now() - start;
    expect(seq.length).toBe(303);
    // Any turn at all fails the old behaviour (zero ticks); slices of a few ms give dozens.
    expect(ticks, `${ticks} ticks in ${ms.toFixed(0)} ms`).toBeGreaterThanOrEqual(5);
  });
});

// --- dispose and memory ----------------------------------------------------------------------------------

describe('dispose() and memory', () => {
  let path: string;
  let mlpPath: string;
  beforeAll(() => {
    path = join(dir, 'llama-dispose');
    writeRandomLlamaCheckpoint(path, HF, { dtype: 'bf16', seed: 5 });
    mlpPath = join(dir, 'mlp-dispose.safetensors');
    saveSafetensors(mlpPath, { w: randTensor([3, 4], 'f32', 1), n: randTensor([3], 'f32', 2) }, {
      [MLP_METADATA_KEY]: JSON.stringify({ type: 'mlp', layers: [{ op: 'linear', weight: 'w' }, { op: 'rmsnorm', weight: 'n' }] }),
    });
  });

  it('frees the packed weights now; later use, and the model\'s caches, are TypeErrors', async () => {
    const model = (await loadModel(path)) as LlamaModel;
    const cache = createKVCache(model, 1, 8);
    await forward(model, [1, 2], { cache });
    const packed = [model.lmHead.weight.packed!, ...model.blocks.flatMap((b) => [b.qkv, b.o, b.gateUp, b.down].map((l) => l.weight.packed!))];
    expect(packed.every((p) => !p.disposed)).toBe(true);
    model.dispose();
    expect(model.disposed).toBe(true);
    expect(packed.every((p) => p.disposed)).toBe(true);
    model.dispose(); // idempotent
    await expect(forward(model, [1])).rejects.toThrow(TypeError);
    await expect(forward(model, [3], { cache })).rejects.toThrow(/forward: the model was disposed/);
    await expect(generate(model, [1], { maxNewTokens: 1 })).rejects.toThrow(/generate: the model was disposed/);
    expect(() => createKVCache(model, 1, 4)).toThrow(/createKVCache: the model was disposed/);
    expect(() => model.blocks).toThrow(TypeError);
    expect(model.config.hiddenSize).toBe(64); // the description stays
    const mlp = (await loadModel(mlpPath)) as MlpModel;
    const mlpPacked = (mlp.layers[0] as { linear: { weight: { packed: { disposed: boolean } } } }).linear.weight.packed;
    mlp.dispose();
    expect(mlpPacked.disposed).toBe(true);
    await expect(forward(mlp, randTensor([1, 4], 'f32', 3))).rejects.toThrow(/forward: the model was disposed/);
  });

  it('dispose() during a forward or a generate lets the call in flight finish first', async () => {
    const model = (await loadModel(path)) as LlamaModel;
    const want = (await forward(model, [1, 2, 3])).toFloat32();
    const running = forward(model, [1, 2, 3]);
    model.dispose();
    expect([...(await running).toFloat32()]).toEqual([...want]);
    expect(() => model.lmHead).toThrow(TypeError); // freed once the call ended
  });

  it('dispose() during generate ends it with a TypeError after the step in flight', async () => {
    const model = (await loadModel(path)) as LlamaModel;
    const running = generate(model, [1, 2, 3], { maxNewTokens: 200 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    model.dispose();
    await expect(running).rejects.toThrow(/generate: the model was disposed after \d+ of 200 new tokens/);
  });

  it('nothing keeps a model alive: dropped models are collected (no dispose needed)', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, 'the suite runs with --expose-gc').toBeTypeOf('function');
    // Made and used in a function of its own, so that no frame of this test still holds one.
    const useOnce = async (): Promise<WeakRef<object>[]> => {
      const model = (await loadModel(path)) as LlamaModel;
      const cache = createKVCache(model, 1, 4);
      await forward(model, [1, 2], { cache });
      await generate(model, [1], { maxNewTokens: 2 });
      return [new WeakRef(model), new WeakRef(model.blocks[0].qkv.weight.packed!), new WeakRef(cache)];
    };
    const refs: WeakRef<object>[] = [];
    for (let i = 0; i < 3; i++) refs.push(...(await useOnce()));
    for (let i = 0; i < 5 && refs.some((r) => r.deref() !== undefined); i++) {
      await new Promise((resolve) => setImmediate(resolve));
      gc!();
    }
    expect(refs.map((r, i) => (r.deref() !== undefined ? i : -1)).filter((i) => i >= 0)).toEqual([]);
  });

  it('150 loadModel + forward in a loop that never waits on the event loop stay within bounded memory, with and without dispose()', async () => {
    const big = join(dir, 'llama-mem');
    writeRandomLlamaCheckpoint(big, { hidden_size: 256, intermediate_size: 688, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 1000 }, { dtype: 'bf16' });
    // Each model holds about 4 MiB of bf16 weights and as much packed: 150 of them kept would be 1.2 GiB.
    for (const [dispose, boundMiB] of [[false, 300], [true, 100]] as const) {
      const before = process.memoryUsage.rss();
      let peak = before;
      for (let i = 0; i < 150; i++) {
        const model = await loadModel(big);
        await forward(model, [1, 2, 3]);
        if (dispose) model.dispose();
        peak = Math.max(peak, process.memoryUsage.rss());
      }
      expect((peak - before) / 2 ** 20, `RSS growth in MiB, dispose: ${dispose}`).toBeLessThan(boundMiB);
    }
  });
});

// --- paths that are not files --------------------------------------------------------------------------

describe('paths that are not regular files', () => {
  it('a directory is a TypeError naming it (not a raw EISDIR)', () => {
    const d = join(dir, 'a-directory.safetensors');
    mkdirSync(d, { recursive: true });
    for (const fn of [() => SafetensorsFile.open(d), () => readSafetensorsHeader(d), () => loadSafetensors(d)]) {
      expect(fn).toThrow(TypeError);
      expect(fn).toThrow(`${d} is a directory, not a regular file`);
    }
    const ck = join(dir, 'dir-as-files');
    mkdirSync(join(ck, 'model.safetensors'), { recursive: true });
    mkdirSync(join(ck, 'config.json'), { recursive: true });
    expect(() => Checkpoint.open(ck)).toThrow(/config.json is a directory, not a regular file/);
    rmSync(join(ck, 'config.json'), { recursive: true });
    expect(() => Checkpoint.open(ck)).toThrow(/model.safetensors is a directory, not a regular file/);
    expect(() => SafetensorsFile.open(42 as never)).toThrow(/path must be a non-empty string, got 42/);
    expect(() => SafetensorsFile.open(join(dir, 'nope.safetensors'))).toThrow(SafetensorsError);
    expect(() => SafetensorsFile.open(join(dir, 'nope.safetensors'), null as never)).toThrow(/options must be an object/);
  });

  it('a FIFO (as the file, as config.json, as a shard) is a TypeError at once, never waited on', () => {
    const fifoDir = join(dir, 'fifos');
    mkdirSync(fifoDir, { recursive: true });
    const mk = spawnSync('mkfifo', [join(fifoDir, 'pipe.safetensors')]);
    if (mk.status !== 0) throw new Error(`mkfifo failed: ${mk.stderr}`);
    const ckDir = join(fifoDir, 'ck');
    writeRandomLlamaCheckpoint(ckDir, HF, { dtype: 'f32', seed: 6 });
    rmSync(join(ckDir, 'config.json'));
    spawnSync('mkfifo', [join(ckDir, 'config.json')]);
    const shardDir = join(fifoDir, 'sharded');
    mkdirSync(shardDir, { recursive: true });
    writeFileSync(join(shardDir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'pipe.safetensors' } }));
    spawnSync('mkfifo', [join(shardDir, 'pipe.safetensors')]);
    const r = runIsolated(`
      import { SafetensorsFile, loadModel, Checkpoint } from './src/index.ts';
      const dir = process.env.ROBUST_DIR + '/fifos';
      const out = {};
      const tryIt = async (name, fn) => { try { await fn(); out[name] = 'opened'; } catch (e) { out[name] = e.name + ': ' + e.message; } };
      await tryIt('file', () => SafetensorsFile.open(dir + '/pipe.safetensors'));
      await tryIt('model', () => loadModel(dir + '/pipe.safetensors'));
      await tryIt('config', () => loadModel(dir + '/ck'));
      await tryIt('shard', () => Checkpoint.open(dir + '/sharded'));
      console.log(JSON.stringify(out));
    `, 30_000);
    const out = isolatedResult<Record<string, string>>(r, 'opening FIFOs');
    expect(out.file).toMatch(/^TypeError: SafetensorsFile.open: .*pipe.safetensors is a FIFO \(named pipe\), not a regular file/);
    expect(out.model).toMatch(/^TypeError: .*pipe.safetensors is a FIFO/);
    expect(out.config).toMatch(/^TypeError: .*ck\/config.json is a FIFO/);
    expect(out.shard).toMatch(/^TypeError: .*sharded\/pipe.safetensors is a FIFO/);
  });
});
