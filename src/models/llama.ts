// A Llama-style decoder over Hugging Face Llama checkpoints (config.json + safetensors, tensor names as
// in transformers' LlamaForCausalLM): token embedding, N blocks of [RMSNorm -> grouped-query attention with
// rotary embeddings and a KV cache -> residual; RMSNorm -> SwiGLU MLP -> residual], a final RMSNorm and the
// LM head (tied to the embedding when tie_word_embeddings). This file holds the model, its config and
// checks, its loading and its KV cache; running it is llama_forward.ts.
//
// A model lives on one device ('cpu', 'cuda:<n>', 'hip:<n>'): its weights are copied there once, in their
// stored dtype, and stay resident. Each block's q, k and v projections are one GEMM (their weights stacked
// at load, [(heads + 2 kvHeads) headDim, hidden]), and so are gate and up ([2 intermediate, hidden]); o_proj
// and down_proj add into the residual stream in their epilogue.
import type { Device } from '../device.js';
import type { DType } from '../dtype.js';
import { formatShape } from '../errors.js';
import { ropeTables } from '../ops.js';
import { type Checkpoint, MAX_TENSOR_DIM, preview } from '../safetensors.js';
import { Tensor } from '../tensor.js';
import { Linear, allocateOn } from './layers.js';
import { MAX_ARRAY_ELEMENTS, ModelLifetime, checkMemory, deviceMemoryBytes, formatBytes, isOutOfMemory, outOfMemory } from './resources.js';

/** The most positions a Llama model takes when config.json has no max_position_embeddings (and the most it may say). */
export const LLAMA_MAX_POSITIONS = 2 ** 24;

export interface LlamaConfig {
  hiddenSize: number;
  intermediateSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  numHiddenLayers: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  /** The most positions a KV cache (and so a sequence) may have: max_position_embeddings, else LLAMA_MAX_POSITIONS. */
  maxPositionEmbeddings: number;
}

/** One decoder block's weights on the model's device. */
export interface LlamaBlock {
  /** [hidden], stored dtype */
  inputNorm: Tensor;
  postAttentionNorm: Tensor;
  /** q_proj, k_proj and v_proj as one GEMM: weight [(heads + 2 kvHeads) headDim, hidden] (and their biases, if any). */
  qkv: Linear;
  o: Linear;
  /** gate_proj and up_proj as one GEMM: weight [2 intermediate, hidden]; silu(gate) * up is the swiglu op. */
  gateUp: Linear;
  down: Linear;
}

interface LlamaWeights {
  /** [vocab, hidden] */
  embedTokens: Tensor;
  blocks: LlamaBlock[];
  /** [hidden] */
  norm: Tensor;
  lmHead: Linear;
}

/** The rotary tables on the model's device: cos and sin of position x inverse frequency, [positions, headDim / 2] f32. */
export interface RopeTables {
  positions: number;
  cos: Tensor;
  sin: Tensor;
}

/** A loaded Llama model (from loadModel). dispose() frees its weights now instead of at collection. */
export class LlamaModel {
  readonly kind = 'llama' as const;
  readonly config: LlamaConfig;
  /** Where its weights live and where it runs: 'cpu', 'cuda:<n>' or 'hip:<n>'. */
  readonly device: Device;
  /** @internal Shared with its KV caches: whether the weights are still there. */
  readonly lifetime = new ModelLifetime();
  /** @internal The rotary tables, grown on demand (ensureRope); undefined until first needed. */
  rope: RopeTables | undefined;
  /** @internal Tables ensureRope replaced, which a call in flight may still read: freed with the weights. */
  readonly retiredRope: RopeTables[] = [];
  #weights: LlamaWeights | undefined;

  /** @internal Use loadModel(). */
  constructor(config: LlamaConfig, weights: LlamaWeights, device: Device) {
    this.config = config;
    this.device = device;
    this.#weights = weights;
  }

  /** [vocab, hidden] */
  get embedTokens(): Tensor {
    return this.#live().embedTokens;
  }

  get blocks(): readonly LlamaBlock[] {
    return this.#live().blocks;
  }

  get norm(): Tensor {
    return this.#live().norm;
  }

  get lmHead(): Linear {
    return this.#live().lmHead;
  }

  /** True once dispose() was called. */
  get disposed(): boolean {
    return this.lifetime.disposed;
  }

  /**
   * Frees the weights (packed panels on the CPU, device memory on a GPU) and its KV caches, and lets go of
   * every tensor now (calls in flight finish first). Later forward, generate or createKVCache calls, and
   * its KV caches, are TypeErrors. Idempotent.
   */
  dispose(): void {
    this.lifetime.dispose(() => {
      const w = this.#weights;
      const tables = [...this.retiredRope, ...(this.rope ? [this.rope] : [])];
      this.#weights = undefined;
      this.rope = undefined;
      this.retiredRope.length = 0;
      if (w) disposeWeights(w);
      for (const t of tables) {
        t.cos.dispose();
        t.sin.dispose();
      }
    });
  }

  #live(): LlamaWeights {
    if (!this.#weights) throw new TypeError('LlamaModel: the model was disposed');
    return this.#weights;
  }
}

function disposeWeights(w: LlamaWeights): void {
  for (const b of w.blocks) {
    for (const l of [b.qkv, b.o, b.gateUp, b.down]) l.dispose();
    b.inputNorm.dispose();
    b.postAttentionNorm.dispose();
  }
  w.lmHead.dispose();
  w.embedTokens.dispose();
  w.norm.dispose();
}

// --- config ------------------------------------------------------------------------------------------

// A config.json integer: a TypeError when it is not a number, a RangeError when it is not an integer in
// [1, max]; errors name the file and the field.
function positiveInt(where: string, raw: Record<string, unknown>, key: string, max: number, fallback?: number): number {
  const v = raw[key] ?? fallback;
  if (v === undefined) throw new TypeError(`${where}: config.json field ${key} must be a positive integer; it is missing`);
  if (typeof v !== 'number') throw new TypeError(`${where}: config.json field ${key} must be a positive integer, got ${preview(raw[key])}`);
  if (!Number.isSafeInteger(v) || v <= 0 || v > max) {
    throw new RangeError(`${where}: config.json field ${key} must be an integer in [1, ${max}], got ${preview(raw[key] ?? v)}`);
  }
  return v;
}

// A positive config.json number; `f32`: one an f32 holds (the ops compute in f32), at most 3.4e38.
function positiveNumber(where: string, raw: Record<string, unknown>, key: string, fallback: number, f32 = false): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number') throw new TypeError(`${where}: config.json field ${key} must be a positive number, got ${preview(raw[key])}`);
  if (!Number.isFinite(v) || v <= 0 || (f32 && !Number.isFinite(Math.fround(v)))) {
    throw new RangeError(`${where}: config.json field ${key} must be a positive number${f32 ? ' within f32\'s range (the norms compute in f32)' : ''}, got ${preview(raw[key])}`);
  }
  return v;
}

/**
 * The fields of a Hugging Face Llama config.json gemmkit uses, checked; unsupported variants are errors.
 * Sizes are bounded here by MAX_TENSOR_DIM and then by the checkpoint's tensors (checkLlamaTensors), so no
 * field can size an allocation the checkpoint does not back.
 */
export function parseLlamaConfig(where: string, raw: Record<string, unknown>): LlamaConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new TypeError(`${where}: config.json must be a JSON object`);
  if (raw.model_type !== undefined && raw.model_type !== 'llama') {
    throw new RangeError(`${where}: config.json model_type is ${preview(raw.model_type)}; gemmkit runs 'llama' decoders`);
  }
  if (raw.hidden_act !== undefined && raw.hidden_act !== 'silu') {
    throw new RangeError(`${where}: config.json hidden_act is ${preview(raw.hidden_act)}; the Llama MLP here is SwiGLU (silu)`);
  }
  if (raw.rope_scaling !== undefined && raw.rope_scaling !== null) {
    throw new RangeError(`${where}: config.json rope_scaling ${preview(raw.rope_scaling)} is not supported (plain rotary embeddings only)`);
  }
  const hiddenSize = positiveInt(where, raw, 'hidden_size', MAX_TENSOR_DIM);
  const numAttentionHeads = positiveInt(where, raw, 'num_attention_heads', MAX_TENSOR_DIM);
  const numKeyValueHeads = positiveInt(where, raw, 'num_key_value_heads', MAX_TENSOR_DIM, numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw new RangeError(`${where}: config.json num_attention_heads (${numAttentionHeads}) is not a multiple of num_key_value_heads (${numKeyValueHeads})`);
  }
  if ((raw.head_dim === undefined || raw.head_dim === null) && hiddenSize % numAttentionHeads !== 0) {
    throw new RangeError(`${where}: config.json hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numAttentionHeads})`);
  }
  const headDim = positiveInt(where, raw, 'head_dim', MAX_TENSOR_DIM, hiddenSize / numAttentionHeads);
  if (headDim % 2 !== 0) throw new RangeError(`${where}: config.json head_dim: the head dimension ${headDim} must be even for rotary embeddings`);
  const tie = raw.tie_word_embeddings ?? false;
  if (typeof tie !== 'boolean') throw new TypeError(`${where}: config.json field tie_word_embeddings must be a boolean, got ${preview(tie)}`);
  return {
    hiddenSize,
    intermediateSize: positiveInt(where, raw, 'intermediate_size', MAX_TENSOR_DIM),
    numAttentionHeads,
    numKeyValueHeads,
    // Bounded by the layers the checkpoint holds (checkLlamaTensors stops at the first missing one).
    numHiddenLayers: positiveInt(where, raw, 'num_hidden_layers', Number.MAX_SAFE_INTEGER),
    headDim,
    rmsNormEps: positiveNumber(where, raw, 'rms_norm_eps', 1e-6, true),
    ropeTheta: positiveNumber(where, raw, 'rope_theta', 10000),
    vocabSize: positiveInt(where, raw, 'vocab_size', MAX_TENSOR_DIM),
    tieWordEmbeddings: tie,
    // A model may claim more; no cache here holds more than LLAMA_MAX_POSITIONS.
    maxPositionEmbeddings: Math.min(positiveInt(where, raw, 'max_position_embeddings', Number.MAX_SAFE_INTEGER, LLAMA_MAX_POSITIONS), LLAMA_MAX_POSITIONS),
  };
}

/** The tensors of block `i` with their shapes (the projections' optional biases are not listed). */
export function llamaLayerTensorShapes(c: LlamaConfig, i: number): [string, number[]][] {
  const q = c.numAttentionHeads * c.headDim, kv = c.numKeyValueHeads * c.headDim;
  const p = `model.layers.${i}`;
  return [
    [`${p}.input_layernorm.weight`, [c.hiddenSize]],
    [`${p}.self_attn.q_proj.weight`, [q, c.hiddenSize]],
    [`${p}.self_attn.k_proj.weight`, [kv, c.hiddenSize]],
    [`${p}.self_attn.v_proj.weight`, [kv, c.hiddenSize]],
    [`${p}.self_attn.o_proj.weight`, [c.hiddenSize, q]],
    [`${p}.post_attention_layernorm.weight`, [c.hiddenSize]],
    [`${p}.mlp.gate_proj.weight`, [c.intermediateSize, c.hiddenSize]],
    [`${p}.mlp.up_proj.weight`, [c.intermediateSize, c.hiddenSize]],
    [`${p}.mlp.down_proj.weight`, [c.hiddenSize, c.intermediateSize]],
  ];
}

/** The tensors outside the blocks with their shapes. */
function llamaOuterTensorShapes(c: LlamaConfig): [string, number[]][] {
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocabSize, c.hiddenSize]], ['model.norm.weight', [c.hiddenSize]]];
  if (!c.tieWordEmbeddings) out.push(['lm_head.weight', [c.vocabSize, c.hiddenSize]]);
  return out;
}

/**
 * Every weight a Llama checkpoint must hold, with its shape. For writing checkpoints; checking one goes
 * layer by layer (checkLlamaTensors), never through this list.
 */
export function llamaTensorShapes(c: LlamaConfig): [string, number[]][] {
  const [embed, ...rest] = llamaOuterTensorShapes(c);
  const out: [string, number[]][] = [embed];
  for (let i = 0; i < c.numHiddenLayers; i++) out.push(...llamaLayerTensorShapes(c, i));
  return [...out, ...rest];
}

// The layers a checkpoint holds (indices of model.layers.<i>.*), for the message when one is missing.
function layersHeld(ck: Checkpoint): string {
  let count = 0, max = -1;
  const seen = new Set<number>();
  for (const name of ck.names()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (!m) continue;
    const i = Number(m[1]);
    if (!seen.has(i)) {
      seen.add(i);
      count++;
      max = Math.max(max, i);
    }
  }
  return count === 0 ? 'no layers' : `${count} layers (highest index ${max})`;
}

/**
 * Checks, from the headers alone and before anything is allocated, that the checkpoint holds every weight
 * with the shape config.json gives it and a dtype gemmkit loads, and the projections' optional biases
 * with their shapes. Layers are checked one by one, so a num_hidden_layers larger than the checkpoint
 * stops at the first missing layer (an error naming it) after at most as many steps as it has tensors.
 */
export function checkLlamaTensors(ck: Checkpoint, c: LlamaConfig): void {
  const expect = (name: string, shape: number[], hint: () => string = () => '') => {
    if (!ck.has(name)) throw new RangeError(`${ck.path}: the checkpoint has no tensor '${name}'${hint()}`);
    const got = ck.info(name).shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new RangeError(`${ck.path}: tensor '${name}' is ${formatShape(got)} but config.json makes it ${formatShape(shape)}`);
    }
    ck.loadedDtype(name); // a SafetensorsError for a dtype gemmkit does not load
  };
  const bias = (linear: string, out: number) => {
    if (ck.has(`${linear}.bias`)) expect(`${linear}.bias`, [out]);
  };
  for (const [name, shape] of llamaOuterTensorShapes(c)) {
    expect(name, shape, () => (name === 'lm_head.weight' ? ' (or set tie_word_embeddings: true in config.json)' : ''));
  }
  if (!c.tieWordEmbeddings) bias('lm_head', c.vocabSize);
  const layersHint = () => ` (config.json num_hidden_layers is ${c.numHiddenLayers}; the checkpoint holds ${layersHeld(ck)})`;
  for (let i = 0; i < c.numHiddenLayers; i++) {
    for (const [name, shape] of llamaLayerTensorShapes(c, i)) {
      expect(name, shape, layersHint);
      if (name.endsWith('_proj.weight')) bias(name.slice(0, -'.weight'.length), shape[0]);
    }
  }
}


// --- loading ---------------------------------------------------------------------------------------------

/** The dtype weights fused into one GEMM are held in: their own when they share one, else f32 (which each widens to exactly). */
export function fusedDtype(dtypes: readonly DType[]): DType {
  return dtypes.every((d) => d === dtypes[0]) ? dtypes[0] : 'f32';
}

// The rows of weights [n_i, k] stacked into one [sum n_i, k] weight of `dtype` (fusedDtype of theirs).
function stackRows(parts: Tensor[], dtype: DType): Tensor {
  const k = parts[0].shape[1];
  const n = parts.reduce((sum, t) => sum + t.shape[0], 0);
  const data = dtype === 'f32' ? new Float32Array(n * k) : new Uint16Array(n * k);
  let at = 0;
  for (const t of parts) {
    const rows = t.dtype === dtype ? t.data : t.toFloat32(); // only when dtype is f32
    (data as Float32Array).set(rows as Float32Array, at);
    at += rows.length;
  }
  return new Tensor(dtype, [n, k], data);
}

/**
 * The weights of one fused GEMM: each part's weight, and its bias or zeros when some part has a bias
 * (as an f32 vector: a bias of any dtype widens to it exactly); parts = [name prefix, rows].
 */
function fusedLinear(ck: Checkpoint, parts: [string, number][], name: string, device: Device): Linear {
  const weights = parts.map(([p]) => ck.tensor(`${p}.weight`));
  const weight = stackRows(weights, fusedDtype(weights.map((w) => w.dtype)));
  let bias: Tensor | undefined;
  if (parts.some(([p]) => ck.has(`${p}.bias`))) {
    const values = new Float32Array(weight.shape[0]);
    let at = 0;
    for (const [p, rows] of parts) {
      if (ck.has(`${p}.bias`)) values.set(ck.tensor(`${p}.bias`).toFloat32(), at);
      at += rows;
    }
    bias = new Tensor('f32', [values.length], values);
  }
  return new Linear(name, weight, bias, 'none', device);
}

/**
 * The model from a checkpoint that checkLlamaTensors has passed (loadModel's describe() checks it), with
 * its weights on `device` (checked by resolveDevice). On a failure (out of device memory: an Error with
 * code GEMMKIT_OUT_OF_MEMORY) everything made so far is freed first.
 */
export function loadLlama(ck: Checkpoint, config: LlamaConfig, device: Device): LlamaModel {
  // Everything made so far, so that a failure part way frees it at once.
  const made: { dispose(): void }[] = [];
  const keep = <T extends { dispose(): void }>(x: T): T => {
    made.push(x);
    return x;
  };
  const onDevice = (name: string) => keep(ck.tensor(name).to(device));
  const linear = (name: string) => keep(new Linear(name, ck.tensor(`${name}.weight`), ck.has(`${name}.bias`) ? ck.tensor(`${name}.bias`) : undefined, 'none', device));
  const q = config.numAttentionHeads * config.headDim, kv = config.numKeyValueHeads * config.headDim;
  try {
    const blocks: LlamaBlock[] = [];
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const p = `model.layers.${i}`;
      blocks.push({
        inputNorm: onDevice(`${p}.input_layernorm.weight`),
        postAttentionNorm: onDevice(`${p}.post_attention_layernorm.weight`),
        qkv: keep(fusedLinear(ck, [[`${p}.self_attn.q_proj`, q], [`${p}.self_attn.k_proj`, kv], [`${p}.self_attn.v_proj`, kv]], `${p}.self_attn.{q,k,v}_proj`, device)),
        o: linear(`${p}.self_attn.o_proj`),
        gateUp: keep(fusedLinear(ck, [[`${p}.mlp.gate_proj`, config.intermediateSize], [`${p}.mlp.up_proj`, config.intermediateSize]], `${p}.mlp.{gate,up}_proj`, device)),
        down: linear(`${p}.mlp.down_proj`),
      });
    }
    const embedTokens = onDevice('model.embed_tokens.weight');
    const norm = onDevice('model.norm.weight');
    const lmHead = config.tieWordEmbeddings ? keep(new Linear('lm_head (tied)', embedTokens, undefined, 'none', device)) : linear('lm_head');
    return new LlamaModel(config, { embedTokens, blocks, norm, lmHead }, device);
  } catch (e) {
    for (const x of made) x.dispose();
    throw e;
  }
}

// --- KV cache --------------------------------------------------------------------------------------------

/** Something a cache keeps for the calls on it (llama_forward.ts: buffers reused from step to step). */
export interface CacheScratch {
  readonly key: string;
  readonly bytes: number;
  dispose(): void;
}

/** How much reusable scratch a KV cache keeps between calls: at most this many, none larger than maxBytes. */
export const scratchPolicy = { keep: 4, maxBytes: 256 * 2 ** 20 };

/**
 * Keys and values per block on the model's device, [slots, kvHeads, capacity, headDim] f32 each: `slots`
 * sequences, each with its own length. forward(model, ids, { cache, slots }) runs row b of ids on slot
 * slots[b] at that slot's positions and appends to it; a finished sequence's slot is emptied with
 * reset(slot) and reused.
 */
export class KVCache {
  /** How many sequences it holds (one per slot). */
  readonly slots: number;
  readonly capacity: number;
  /** Where its memory is: the model's device. */
  readonly device: Device;
  /** Positions cached in each slot: slot s continues at position lengths[s]. forward advances it; read only. */
  readonly lengths: Int32Array;
  /** [slots, kvHeads, capacity, headDim] f32 per block. */
  readonly keys: Tensor[];
  readonly values: Tensor[];
  /** @internal The lifetime of the model it was made for: forward takes it only with that model. */
  readonly owner: ModelLifetime;
  #busy = false;
  #disposed = false;
  // Scratch kept from the last calls, most recent last (see scratchPolicy).
  #scratch: CacheScratch[] = [];

  /**
   * A cache of `slots` sequences (one per slot) of up to `capacity` positions: at most the model's
   * maxPositionEmbeddings, and only when its memory is there: on the CPU a RangeError says how much it
   * needs when that is more than is available; on a GPU, more than the device has is a RangeError and
   * more than it has free an Error with code GEMMKIT_OUT_OF_MEMORY (nothing stays allocated).
   */
  constructor(model: LlamaModel, slots: number, capacity: number, where = 'KVCache') {
    if (!(model instanceof LlamaModel)) throw new TypeError(`${where}: model must be a Llama model from loadModel()`);
    model.lifetime.check(where);
    for (const [name, value] of [['batch', slots], ['capacity', capacity]] as const) {
      if (typeof value !== 'number') throw new TypeError(`${where}: ${name} must be a positive integer, got ${preview(value)}`);
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${where}: ${name} must be a positive integer, got ${value}`);
    }
    const c = model.config;
    if (capacity > c.maxPositionEmbeddings) {
      throw new RangeError(`${where}: capacity ${capacity} is more than the model's ${c.maxPositionEmbeddings} positions (max_position_embeddings)`);
    }
    const size = slots * c.numKeyValueHeads * capacity * c.headDim; // elements of each layer's keys (and values)
    const what = `a KV cache of ${slots} x ${capacity} positions (${c.numHiddenLayers} layers x ${c.numKeyValueHeads} KV heads x ${c.headDim})`;
    const bytes = 2 * c.numHiddenLayers * size * 4;
    if (model.device === 'cpu') checkMemory(where, what, bytes, size);
    else {
      const has = deviceMemoryBytes(model.device);
      if (!(bytes <= has)) throw new RangeError(`${where}: ${what} needs ${formatBytes(bytes)}, more than the ${formatBytes(has)} of memory ${model.device} has`);
    }
    this.owner = model.lifetime;
    this.device = model.device;
    this.slots = slots;
    this.capacity = capacity;
    this.lengths = new Int32Array(slots);
    const shape = [slots, c.numKeyValueHeads, capacity, c.headDim];
    this.keys = [];
    this.values = [];
    try {
      for (let i = 0; i < c.numHiddenLayers; i++) {
        this.keys.push(allocateOn(where, this.device, 'f32', shape));
        this.values.push(allocateOn(where, this.device, 'f32', shape));
      }
    } catch (e) {
      this.dispose();
      if (isOutOfMemory(e)) throw outOfMemory(where, `${what} (${formatBytes(bytes)}) on ${this.device}`, e);
      throw e;
    }
    model.lifetime.track(this);
  }

  /**
   * The length every slot shares (what a cache whose sequences all run together has); a RangeError when
   * the slots differ, where lengths[slot] is the answer. Setting it sets every slot: a rewind.
   */
  get length(): number {
    const first = this.lengths[0];
    if (this.lengths.some((n) => n !== first)) {
      throw new RangeError(`KVCache: the slots have different lengths (${Array.from(this.lengths).join(', ')}); read cache.lengths[slot]`);
    }
    return first;
  }

  set length(n: number) {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.capacity) throw new RangeError(`KVCache: length must be an integer in [0, ${this.capacity}], got ${n}`);
    this.lengths.fill(n);
  }

  /** Empties `slot` (every slot when omitted) for a new sequence; its old keys and values are overwritten as it fills. */
  reset(slot?: number): void {
    if (slot === undefined) {
      this.lengths.fill(0);
      return;
    }
    if (!Number.isSafeInteger(slot) || slot < 0 || slot >= this.slots) throw new RangeError(`KVCache.reset: slot must be an integer in [0, ${this.slots}), got ${slot}`);
    this.lengths[slot] = 0;
  }

  /** True once dispose() (of the cache or of its model) freed it. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Frees its memory now (on a GPU: its device memory) instead of at collection; a forward on it is then a
   * TypeError. A call running on it finishes first. Idempotent; the model's dispose() does it too.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#busy) return; // release() frees it when the call in flight ends
    this.#free();
  }

  #free(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
    for (const s of this.#scratch) s.dispose();
    this.#scratch = [];
  }

  /**
   * @internal Claims the cache for one forward call. Calls on one cache must run one after another (each
   * continues at the lengths the previous one left), so a second call while one is running is an Error.
   */
  acquire(where: string): void {
    if (this.#disposed) throw new TypeError(`${where}: the KV cache was disposed`);
    if (this.#busy) {
      throw new Error(`${where}: the KV cache is in use by another forward() that has not finished; await it first (calls on one cache run one after another)`);
    }
    this.#busy = true;
  }

  /** @internal */
  release(): void {
    this.#busy = false;
    if (this.#disposed) this.#free();
  }

  /** @internal Takes the kept scratch with this key (the caller holds the cache), or undefined. */
  takeScratch(key: string): CacheScratch | undefined {
    const i = this.#scratch.findIndex((s) => s.key === key);
    return i < 0 ? undefined : this.#scratch.splice(i, 1)[0];
  }

  /** @internal Keeps `s` for the next calls (scratchPolicy), or frees it. */
  keepScratch(s: CacheScratch): void {
    if (this.#disposed || s.bytes > scratchPolicy.maxBytes) {
      s.dispose();
      return;
    }
    this.#scratch.push(s);
    while (this.#scratch.length > scratchPolicy.keep) this.#scratch.shift()!.dispose();
  }
}

/**
 * The cache slots rows 0..batch-1 of a forward run on: `slots` checked (distinct integers below
 * cache.slots, one per row), or 0..batch-1 when omitted.
 */
export function cacheSlots(where: string, cache: KVCache, batch: number, slots: unknown): Int32Array {
  if (slots === undefined) {
    if (batch > cache.slots) throw new RangeError(`${where}: the cache holds ${cache.slots} sequences but the input has ${batch} (a KVCache has one slot per sequence)`);
    return Int32Array.from({ length: batch }, (_, b) => b);
  }
  if (!Array.isArray(slots) && !(slots instanceof Int32Array)) throw new TypeError(`${where}: slots must be an array of cache slot indices, one per sequence`);
  if (slots.length !== batch) throw new RangeError(`${where}: slots has ${slots.length} entries but the input has ${batch} sequences`);
  const out = new Int32Array(batch);
  const seen = new Set<number>();
  for (let b = 0; b < batch; b++) {
    const s = slots[b];
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 0 || s >= cache.slots) {
      throw new RangeError(`${where}: slots[${b}] is ${preview(s)}; slots are integers in [0, ${cache.slots})`);
    }
    if (seen.has(s)) throw new RangeError(`${where}: slot ${s} appears twice in slots (each sequence needs its own slot)`);
    seen.add(s);
    out[b] = s;
  }
  return out;
}

// --- rotary tables ---------------------------------------------------------------------------------------

/**
 * The model's rotary tables covering at least `positions` positions, on its device: grown geometrically
 * (never past max_position_embeddings, so all tables ever made hold at most twice the last one) and
 * computed in float64 (ropeTables). A call in flight on another cache may still read the tables it
 * replaces: they are freed with the model.
 */
export function ensureRope(model: LlamaModel, positions: number): RopeTables {
  const have = model.rope;
  if (have && have.positions >= positions) return have;
  const { headDim, ropeTheta, maxPositionEmbeddings } = model.config;
  const n = Math.min(Math.max(positions, 2 * (have?.positions ?? 0), 64), maxPositionEmbeddings);
  const host = ropeTables(ropeTheta, n, headDim);
  const cos = host.cos.to(model.device);
  let sin: Tensor;
  try {
    sin = host.sin.to(model.device);
  } catch (e) {
    cos.dispose();
    throw e;
  }
  if (have) model.retiredRope.push(have);
  model.rope = { positions: n, cos, sin };
  return model.rope;
}

/** Token ids as [batch][tokens] (equal lengths), validated against the vocabulary. */
export function tokenBatch(where: string, model: LlamaModel, input: unknown): { ids: Int32Array; batch: number; tokens: number; nested: boolean } {
  let rowsIn: ArrayLike<unknown>[];
  let nested = false;
  if (input instanceof Int32Array || (Array.isArray(input) && (input.length === 0 || !Array.isArray(input[0])))) {
    rowsIn = [input as ArrayLike<unknown>];
  } else if (Array.isArray(input)) {
    rowsIn = input as ArrayLike<unknown>[];
    nested = true;
  } else {
    throw new TypeError(`${where}: a Llama model takes token ids: number[], number[][] (a batch of equal lengths) or Int32Array`);
  }
  const tokens = rowsIn[0]?.length ?? 0;
  if (rowsIn.length === 0 || tokens === 0) throw new RangeError(`${where}: needs at least one token`);
  const max = model.config.maxPositionEmbeddings;
  if (tokens > max) throw new RangeError(`${where}: ${tokens} tokens are more than the model's ${max} positions (max_position_embeddings)`);
  if (rowsIn.length * tokens > MAX_ARRAY_ELEMENTS) throw new RangeError(`${where}: ${rowsIn.length} sequences x ${tokens} tokens are more token ids than one array holds`);
  const ids = new Int32Array(rowsIn.length * tokens);
  rowsIn.forEach((row, b) => {
    if (!Array.isArray(row) && !(row instanceof Int32Array)) throw new TypeError(`${where}: sequence ${b} is not an array of token ids`);
    if (row.length !== tokens) throw new RangeError(`${where}: sequence ${b} has ${row.length} tokens but sequence 0 has ${tokens} (a batch needs equal lengths)`);
    for (let t = 0; t < tokens; t++) {
      const id = row[t];
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= model.config.vocabSize) {
        throw new RangeError(`${where}: token ${t} of sequence ${b} is ${preview(id)}; ids are integers in [0, ${model.config.vocabSize})`);
      }
      ids[b * tokens + t] = id;
    }
  });
  return { ids, batch: rowsIn.length, tokens, nested };
}

