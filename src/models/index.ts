// Models: loadModel(path, { device }), forward(model, input), createKVCache(model, slots, capacity),
// nextTokenIds (greedy steps that bring back only the chosen ids), and modelGemmShapes(path, batchSizes,
// { device }), the exact weight GEMMs forward runs on that device (what `npm run tune -- --model` tunes).
// Generation on top of forward and nextTokenIds is src/generate.ts.
//
// A path is either a .safetensors file whose __metadata__ holds a gemmkit MLP spec (see mlp.ts), or a
// Hugging Face Llama checkpoint: a directory with config.json and model.safetensors or a sharded
// model.safetensors.index.json (or a .safetensors file with config.json beside it).
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Device, parseDevice } from '../device.js';
import type { DType } from '../dtype.js';
import type { Activation } from '../matmul.js';
import { Checkpoint, type SafetensorsOpenOptions, preview, readJsonFile } from '../safetensors.js';
import type { Tensor } from '../tensor.js';
import { KVCache, type LlamaConfig, LlamaModel, cacheSlots, checkLlamaTensors, fusedDtype, loadLlama, parseLlamaConfig, tokenBatch } from './llama.js';
import { llamaForward, llamaNextIds } from './llama_forward.js';
import { MLP_METADATA_KEY, MlpModel, type MlpSpec, checkMlpTensors, loadMlp, mlpForward, parseMlpSpec } from './mlp.js';
import { linearInputDtype } from './layers.js';
import { isOutOfMemory, outOfMemory, resolveDevice } from './resources.js';

export type Model = MlpModel | LlamaModel;
export type TokenIds = number[] | number[][] | Int32Array;
export { KVCache, type LlamaConfig, LlamaModel, MlpModel, type MlpSpec, MLP_METADATA_KEY };
export { Linear, prepareWeight, linearForward, linearInputDtype, observeLinear, type LinearCall, type PreparedWeight } from './layers.js';
export { parseLlamaConfig, llamaTensorShapes, LLAMA_MAX_POSITIONS } from './llama.js';
export { writeRandomLlamaCheckpoint, type RandomLlamaOptions } from './random.js';

type Described =
  | { kind: 'mlp'; ck: Checkpoint; spec: MlpSpec; plan: ReturnType<typeof checkMlpTensors> }
  | { kind: 'llama'; ck: Checkpoint; config: LlamaConfig };

// Opens the checkpoint (headers only), decides which kind of model it holds and checks every tensor the
// model will read against the spec or config.json: nothing is read or allocated before that passed.
function describe(path: string, opts: SafetensorsOpenOptions): Described {
  const ck = Checkpoint.open(path, opts);
  try {
    const specText = ck.metadata[MLP_METADATA_KEY];
    if (specText !== undefined) {
      const spec = parseMlpSpec(path, specText);
      return { kind: 'mlp', ck, spec, plan: checkMlpTensors(ck, spec) };
    }
    let rawConfig = ck.config;
    let configPath = join(path, 'config.json');
    if (!rawConfig && !statSync(path).isDirectory()) {
      configPath = join(dirname(path), 'config.json');
      rawConfig = readJsonFile(configPath, false);
    }
    if (!rawConfig) {
      throw new TypeError(`loadModel: ${path} is neither a gemmkit MLP (no __metadata__["${MLP_METADATA_KEY}"]) nor a checkpoint with a config.json`);
    }
    const config = parseLlamaConfig(configPath, rawConfig);
    checkLlamaTensors(ck, config);
    return { kind: 'llama', ck, config };
  } catch (e) {
    ck.close();
    throw e;
  }
}

export interface LoadModelOptions extends SafetensorsOpenOptions {
  /**
   * Where the model's weights live and where it runs: 'cpu' (default), 'cuda:<n>', 'hip:<n>', or 'auto' (the
   * first GPU there is, else the CPU). A device that is not there is an error naming it.
   */
  device?: Device | 'auto';
}

const LOAD_KEYS = new Set(['device', 'wholeFileLimit']);

/**
 * Loads a model onto `opts.device`: its weights are read once, copied there in their stored dtype and kept
 * resident in the engine's form (see prepareWeight) until dispose(). Out of device memory is an Error with
 * code GEMMKIT_OUT_OF_MEMORY, after which nothing of the model stays allocated and the device keeps working.
 */
export async function loadModel(path: string, opts: LoadModelOptions = {}): Promise<Model> {
  if (typeof path !== 'string') throw new TypeError('loadModel: path must be a string');
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw new TypeError(`loadModel: options must be an object, got ${preview(opts)}`);
  for (const key of Object.keys(opts)) {
    if (!LOAD_KEYS.has(key)) throw new TypeError(`loadModel: unknown option '${key}' (known: ${[...LOAD_KEYS].join(', ')})`);
  }
  const { device: wanted, ...open } = opts;
  const device = resolveDevice('loadModel', wanted);
  // Tensor by tensor (unless asked otherwise): the weights the model keeps are then arrays of their own,
  // and the parts of fused weights go once they are stacked.
  const d = describe(path, { wholeFileLimit: 0, ...open });
  try {
    return d.kind === 'mlp' ? loadMlp(d.ck, d.spec, d.plan, device) : loadLlama(d.ck, d.config, device);
  } catch (e) {
    if (isOutOfMemory(e)) throw outOfMemory('loadModel', `the weights of ${path} on ${device}`, e);
    throw e;
  } finally {
    d.ck.close();
  }
}

export interface ForwardOptions {
  /**
   * Llama: continue from this cache and append the new keys and values: sequence b runs on cache slot
   * slots[b] at that slot's positions (cache.lengths[slot], ...). One call at a time per cache: a call while
   * another on the same cache is running is an Error.
   */
  cache?: KVCache;
  /**
   * Llama, with a cache: the cache slot of each sequence (distinct, one per row); default 0..batch-1. Slots
   * may hold different lengths: one forward then advances sequences that started at different times.
   */
  slots?: number[] | Int32Array;
  /** Llama: logits of every token (default) or only of each sequence's last token. */
  logits?: 'all' | 'last';
}

const FORWARD_KEYS = new Set(['cache', 'slots', 'logits']);

function checkForwardOptions(opts: unknown): ForwardOptions {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw new TypeError(`forward: options must be an object ({ cache, slots, logits }), got ${opts === null ? 'null' : Array.isArray(opts) ? 'an array' : typeof opts}`);
  }
  for (const key of Object.keys(opts)) {
    if (!FORWARD_KEYS.has(key)) throw new TypeError(`forward: unknown option '${key}' (known: ${[...FORWARD_KEYS].join(', ')})`);
  }
  const o = opts as ForwardOptions;
  if (o.logits !== undefined && o.logits !== 'all' && o.logits !== 'last') {
    throw new TypeError(`forward: logits must be 'all' or 'last', got ${preview(o.logits)}`);
  }
  if (o.cache !== undefined && !(o.cache instanceof KVCache)) throw new TypeError('forward: cache must be a KVCache (from createKVCache)');
  if (o.slots !== undefined && o.cache === undefined) throw new TypeError('forward: slots needs a cache (createKVCache) to pick slots from');
  return o;
}

function checkModel(where: string, model: unknown): Model {
  if (!(model instanceof MlpModel) && !(model instanceof LlamaModel)) throw new TypeError(`${where}: model must come from loadModel()`);
  return model;
}

/**
 * MLP: input [batch, features] (on any device) -> [batch, outputs] (f32).
 * Llama: token ids number[] (one sequence) or number[][] (a batch of equal lengths) -> logits f32
 * [tokens, vocab] or [batch, tokens, vocab]; with logits: 'last', [vocab] or [batch, vocab].
 * The result is on the model's device (copy it with .to('cpu') to read it on a GPU model's host).
 */
export async function forward(model: Model, input: Tensor | TokenIds, opts?: ForwardOptions): Promise<Tensor> {
  const m = checkModel('forward', model);
  const o = checkForwardOptions(opts);
  m.lifetime.enter('forward');
  try {
    if (m.kind === 'mlp') {
      if (o.cache !== undefined || o.slots !== undefined || o.logits !== undefined) throw new TypeError('forward: cache, slots and logits are options of Llama models, not of an MLP');
      return await mlpForward(m, input as Tensor);
    }
    const { ids, batch, tokens, nested } = tokenBatch('forward', m, input);
    const last = o.logits === 'last';
    const logits = await onCache('forward', m, o.cache, o.slots, batch, tokens, (cache, slots) => llamaForward(m, ids, batch, tokens, cache, slots, last));
    const vocab = m.config.vocabSize;
    if (last) return logits.reshape(nested ? [batch, vocab] : [vocab]);
    return logits.reshape(nested ? [batch, tokens, vocab] : [tokens, vocab]);
  } finally {
    m.lifetime.exit();
  }
}

// Runs `run` holding the cache (the one given, checked to be the model's, or a temporary one freed after)
// on the checked slots.
async function onCache<T>(where: string, m: LlamaModel, given: KVCache | undefined, slotsIn: unknown, batch: number, tokens: number,
  run: (cache: KVCache, slots: Int32Array) => Promise<T>): Promise<T> {
  if (given !== undefined && given.owner !== m.lifetime) {
    throw new TypeError(`${where}: the cache was made for another model (a KV cache holds one model's keys and values; make one with createKVCache(model, ...))`);
  }
  if (given !== undefined && given.disposed) throw new TypeError(`${where}: the KV cache was disposed`);
  const cache = given ?? new KVCache(m, batch, tokens, where);
  try {
    const slots = cacheSlots(where, cache, batch, slotsIn);
    cache.acquire(where);
    try {
      return await run(cache, slots);
    } finally {
      cache.release();
    }
  } finally {
    if (given === undefined) cache.dispose();
  }
}

/**
 * One greedy step on a Llama model: token ids (as forward takes them) run on `opts.cache` (slots as in
 * forward), and each sequence's next id, the argmax of its last token's logits, computed where the model
 * is. Only those ids come back to the host: generate()'s greedy steps on a GPU move nothing else.
 */
export async function nextTokenIds(model: Model, input: TokenIds, opts: { cache: KVCache; slots?: number[] | Int32Array }): Promise<Int32Array> {
  const m = llamaOnly('nextTokenIds', model);
  if (opts === null || typeof opts !== 'object' || !(opts.cache instanceof KVCache)) throw new TypeError('nextTokenIds: options { cache } (a KVCache) are required');
  m.lifetime.enter('nextTokenIds');
  try {
    const { ids, batch, tokens } = tokenBatch('nextTokenIds', m, input);
    return await onCache('nextTokenIds', m, opts.cache, opts.slots, batch, tokens, (cache, slots) => llamaNextIds(m, ids, batch, tokens, cache, slots));
  } finally {
    m.lifetime.exit();
  }
}

/**
 * A KV cache of `batch` slots (one sequence each) of up to `capacity` positions on the model's device, for
 * forward(model, ids, { cache, slots }). capacity is at most the model's max_position_embeddings
 * (LLAMA_MAX_POSITIONS without one), and the cache must fit in the memory there: a RangeError saying how
 * much it needs when that is more than is available (the CPU) or than the device has; an Error with code
 * GEMMKIT_OUT_OF_MEMORY when the device has too little free.
 */
export function createKVCache(model: Model, batch: number, capacity: number): KVCache {
  return new KVCache(llamaOnly('createKVCache', model), batch, capacity, 'createKVCache');
}

export function llamaOnly(where: string, model: Model): LlamaModel {
  if (!(model instanceof LlamaModel)) {
    throw new TypeError(`${where}: model must be a Llama model from loadModel(), got ${model && typeof model === 'object' ? `a ${String((model as { kind?: unknown }).kind)} model` : String(model)}`);
  }
  return model;
}

// --- the GEMMs forward runs ------------------------------------------------------------------------------

/**
 * One weight GEMM of forward: C[m, n] = act(A[m, k] @ W[n, k]^T + bias) (+ C when beta = 1).
 * A (activations) in linearInputDtype(dtype, device), C f32; `dtype` is the weight's.
 */
export interface GemmShape {
  /**
   * The weight (for Llama, with the layer index as '*', and fused weights named by their parts:
   * model.layers.*.self_attn.{q,k,v}_proj).
   */
  name: string;
  m: number;
  n: number;
  k: number;
  transB: true;
  /** The weight's dtype (B); a fused weight's parts in different dtypes are held in f32. */
  dtype: DType;
  bias: boolean;
  activation: Activation;
  /** The dtype the GEMM reads its input in (A: linearInputDtype(dtype, device)) and the result's (C: f32). */
  dtypeA: DType;
  dtypeC: DType;
  /** 1 when the product is added into C (the residual add fused into o_proj and down_proj), else 0. */
  beta: 0 | 1;
  /** How many times one forward runs this GEMM (Llama: once per layer). */
  count: number;
  /** The weight is a prepack()ed one (on the CPU), else a plain tensor on the device (a GPU). */
  prepacked: boolean;
}

export interface GemmShapeOptions {
  /** The device the model would run on: 'cpu' (default), 'cuda:<n>' or 'hip:<n>' (it need not be here). */
  device?: Device;
}

/**
 * The weight GEMMs forward(model, ...) runs on `opts.device`, for each M in `batchSizes` (M = rows of the
 * activation: the MLP's batch, or a Llama batch x tokens; generate's decode steps have M = batch). Read
 * from the headers and config only, without loading weights. Attention's products are not GEMMs here (the
 * attention op computes them).
 */
export async function modelGemmShapes(path: string, batchSizes: number[], opts: GemmShapeOptions = {}): Promise<GemmShape[]> {
  if (!Array.isArray(batchSizes) || batchSizes.length === 0 || !batchSizes.every((m) => Number.isSafeInteger(m) && m > 0)) {
    throw new RangeError(`modelGemmShapes: batchSizes must be a non-empty list of positive integers, got ${JSON.stringify(batchSizes)}`);
  }
  if (opts === null || typeof opts !== 'object') throw new TypeError(`modelGemmShapes: options must be an object, got ${preview(opts)}`);
  const device = opts.device ?? 'cpu';
  parseDevice('modelGemmShapes', device);
  const d = describe(path, {});
  try {
    type Gemm = Omit<GemmShape, 'm'>;
    const gemms: Gemm[] = [];
    const base = { transB: true as const, dtypeC: 'f32' as DType, prepacked: device === 'cpu' };
    const inputFor = (dtype: DType) => ({ dtype, dtypeA: linearInputDtype(dtype, device) }); // as prepareWeight makes it
    if (d.kind === 'mlp') {
      for (const l of d.spec.layers) {
        if (l.op !== 'linear') continue;
        const [n, k] = d.ck.info(l.weight).shape;
        gemms.push({ ...base, name: l.weight, n, k, ...inputFor(d.ck.loadedDtype(l.weight)), bias: l.bias !== undefined, activation: l.activation ?? 'none', beta: 0, count: 1 });
      }
    } else {
      const c = d.config;
      // Each GEMM of a block: its name, the projections it stacks, and whether it adds into the residual stream.
      const roles: [string, string[], 0 | 1][] = [
        ['self_attn.{q,k,v}_proj', ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], 0],
        ['self_attn.o_proj', ['self_attn.o_proj'], 1],
        ['mlp.{gate,up}_proj', ['mlp.gate_proj', 'mlp.up_proj'], 0],
        ['mlp.down_proj', ['mlp.down_proj'], 1],
      ];
      for (const [role, parts, beta] of roles) {
        // Layers normally share dtypes; a checkpoint that mixes them gets one entry per (dtype, bias).
        const groups = new Map<string, Gemm>();
        for (let i = 0; i < c.numHiddenLayers; i++) {
          const names = parts.map((part) => `model.layers.${i}.${part}`);
          const n = names.reduce((sum, name) => sum + d.ck.info(`${name}.weight`).shape[0], 0);
          const k = d.ck.info(`${names[0]}.weight`).shape[1];
          const dtype = fusedDtype(names.map((name) => d.ck.loadedDtype(`${name}.weight`)));
          const bias = names.some((name) => d.ck.has(`${name}.bias`));
          const key = `${dtype}/${bias}`;
          const g = groups.get(key);
          if (g) g.count++;
          else groups.set(key, { ...base, name: `model.layers.*.${role}`, n, k, ...inputFor(dtype), bias, activation: 'none', beta, count: 1 });
        }
        gemms.push(...groups.values());
      }
      const head = c.tieWordEmbeddings ? 'model.embed_tokens' : 'lm_head';
      gemms.push({ ...base, name: c.tieWordEmbeddings ? 'lm_head (tied: model.embed_tokens)' : 'lm_head', n: c.vocabSize, k: c.hiddenSize, ...inputFor(d.ck.loadedDtype(`${head}.weight`)), bias: !c.tieWordEmbeddings && d.ck.has('lm_head.bias'), activation: 'none', beta: 0, count: 1 });
    }
    return batchSizes.flatMap((m) => gemms.map((g) => ({ ...g, m })));
  } finally {
    d.ck.close();
  }
}
