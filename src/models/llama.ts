// A Llama-style decoder over Hugging Face Llama checkpoints (config.json + safetensors, tensor names as
// in transformers' LlamaForCausalLM): token embedding, N blocks of [RMSNorm -> grouped-query attention with
// rotary embeddings and a KV cache -> residual; RMSNorm -> SwiGLU MLP -> residual], a final RMSNorm and the
// LM head (tied to the embedding when tie_word_embeddings). Generation (sampling, streaming) is src/generate.ts.
//
// Activations are f32; weights stay in their stored dtype. The seven weight GEMMs of a block and the LM head
// go through linearForward (the q/k/v/gate/up projections with M = tokens; o_proj and down_proj add into
// the residual stream in their epilogue, gate_proj has silu fused). Attention runs per (sequence, KV head)
// as two GEMMs, scores = Q K^T / sqrt(d) and out = P V, over the query heads that share that KV head.
import { formatShape } from '../errors.js';
import { type Checkpoint, MAX_TENSOR_DIM, preview } from '../safetensors.js';
import type { DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { Linear, embed, f32, gemm, rmsNorm, softmaxRows } from './layers.js';
import { MAX_ARRAY_ELEMENTS, ModelLifetime, checkMemory, yieldIfBusy } from './resources.js';

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

interface LlamaBlock {
  inputNorm: Float32Array;
  postAttentionNorm: Float32Array;
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  gate: Linear; // silu fused
  up: Linear;
  down: Linear;
}

interface LlamaWeights {
  /** [vocab, hidden] */
  embedTokens: Tensor;
  blocks: LlamaBlock[];
  norm: Float32Array;
  lmHead: Linear;
}

const NO_ROPE = { positions: 0, cos: new Float64Array(0), sin: new Float64Array(0) };

/** A loaded Llama model (from loadModel). dispose() frees its weights now instead of at collection. */
export class LlamaModel {
  readonly kind = 'llama' as const;
  readonly config: LlamaConfig;
  /** @internal Shared with its KV caches: whether the weights are still there. */
  readonly lifetime = new ModelLifetime();
  /** cos/sin of position x inverse frequency, [positions, headDim / 2] each; grown on demand. */
  rope: { positions: number; cos: Float64Array; sin: Float64Array } = NO_ROPE;
  #weights: LlamaWeights | undefined;

  /** @internal Use loadModel(). */
  constructor(config: LlamaConfig, weights: LlamaWeights) {
    this.config = config;
    this.#weights = weights;
  }

  /** [vocab, hidden] */
  get embedTokens(): Tensor {
    return this.#live().embedTokens;
  }

  get blocks(): readonly LlamaBlock[] {
    return this.#live().blocks;
  }

  get norm(): Float32Array {
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
   * Frees the prepacked weights and lets go of every tensor now (calls in flight finish first). Later
   * forward, generate or createKVCache calls, and its KV caches, are TypeErrors. Idempotent.
   */
  dispose(): void {
    this.lifetime.dispose(() => {
      const w = this.#weights;
      this.#weights = undefined;
      this.rope = NO_ROPE;
      if (w) disposeWeights(w);
    });
  }

  #live(): LlamaWeights {
    if (!this.#weights) throw new TypeError('LlamaModel: the model was disposed');
    return this.#weights;
  }
}

function disposeWeights(w: LlamaWeights): void {
  for (const b of w.blocks) for (const l of [b.q, b.k, b.v, b.o, b.gate, b.up, b.down]) l.dispose();
  w.lmHead.dispose();
  w.embedTokens.dispose();
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

function positiveNumber(where: string, raw: Record<string, unknown>, key: string, fallback: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number') throw new TypeError(`${where}: config.json field ${key} must be a positive number, got ${preview(raw[key])}`);
  if (!Number.isFinite(v) || v <= 0) {
    throw new RangeError(`${where}: config.json field ${key} must be a positive number, got ${preview(raw[key])}`);
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
    rmsNormEps: positiveNumber(where, raw, 'rms_norm_eps', 1e-6),
    ropeTheta: positiveNumber(where, raw, 'rope_theta', 10000),
    vocabSize: positiveInt(where, raw, 'vocab_size', MAX_TENSOR_DIM),
    tieWordEmbeddings: tie,
    // A model may claim more; no cache here holds more than LLAMA_MAX_POSITIONS.
    maxPositionEmbeddings: Math.min(positiveInt(where, raw, 'max_position_embeddings', Number.MAX_SAFE_INTEGER, LLAMA_MAX_POSITIONS), LLAMA_MAX_POSITIONS),
  };
}

const LAYER_LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;

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

/** The model from a checkpoint that checkLlamaTensors has passed (loadModel's describe() checks it). */
export function loadLlama(ck: Checkpoint, config: LlamaConfig): LlamaModel {
  const vector = (name: string) => ck.tensor(name).toFloat32();
  // Every Linear made so far, so that a failure part way frees their packed weights at once.
  const made: Linear[] = [];
  // A projection's bias is optional (attention_bias / mlp_bias checkpoints carry them).
  const linear = (name: string, activation: 'none' | 'silu' = 'none') => {
    const l = new Linear(name, ck.tensor(`${name}.weight`), ck.has(`${name}.bias`) ? ck.tensor(`${name}.bias`) : undefined, activation);
    made.push(l);
    return l;
  };
  try {
    const blocks: LlamaBlock[] = [];
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const p = `model.layers.${i}`;
      const [q, k, v, o, gate, up, down] = LAYER_LINEARS.map((role) => linear(`${p}.${role}`, role === 'mlp.gate_proj' ? 'silu' : 'none'));
      blocks.push({
        inputNorm: vector(`${p}.input_layernorm.weight`),
        postAttentionNorm: vector(`${p}.post_attention_layernorm.weight`),
        q, k, v, o, gate, up, down,
      });
    }
    const embedTokens = ck.tensor('model.embed_tokens.weight');
    const norm = vector('model.norm.weight');
    const lmHead = config.tieWordEmbeddings ? new Linear('lm_head (tied)', embedTokens) : linear('lm_head');
    return new LlamaModel(config, { embedTokens, blocks, norm, lmHead });
  } catch (e) {
    for (const l of made) l.dispose();
    throw e;
  }
}

// --- KV cache --------------------------------------------------------------------------------------------

/**
 * Keys and values per block, [slots, kvHeads, capacity, headDim] f32 each: `slots` sequences, each with its
 * own length. forward(model, ids, { cache, slots }) runs row b of ids on slot slots[b] at that slot's
 * positions and appends to it; a finished sequence's slot is emptied with reset(slot) and reused.
 */
export class KVCache {
  readonly slots: number;
  readonly capacity: number;
  /** Positions cached in each slot: slot s continues at position lengths[s]. forward advances it; read only. */
  readonly lengths: Int32Array;
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  /** @internal The lifetime of the model it was made for: forward takes it only with that model. */
  readonly owner: ModelLifetime;
  private readonly config: LlamaConfig;
  #busy = false;

  /**
   * A cache of `batch` slots (one sequence each) of up to `capacity` positions: at most the model's
   * maxPositionEmbeddings, and only when its memory is available (a RangeError says how much it needs).
   */
  constructor(model: LlamaModel, batch: number, capacity: number, where = 'KVCache') {
    if (!(model instanceof LlamaModel)) throw new TypeError(`${where}: model must be a Llama model from loadModel()`);
    model.lifetime.check(where);
    for (const [name, value] of [['batch', batch], ['capacity', capacity]] as const) {
      if (typeof value !== 'number') throw new TypeError(`${where}: ${name} must be a positive integer, got ${preview(value)}`);
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${where}: ${name} must be a positive integer, got ${value}`);
    }
    const c = model.config;
    if (capacity > c.maxPositionEmbeddings) {
      throw new RangeError(`${where}: capacity ${capacity} is more than the model's ${c.maxPositionEmbeddings} positions (max_position_embeddings)`);
    }
    const size = batch * c.numKeyValueHeads * capacity * c.headDim; // elements of each layer's keys (and values)
    checkMemory(where, `a KV cache of ${batch} x ${capacity} positions (${c.numHiddenLayers} layers x ${c.numKeyValueHeads} KV heads x ${c.headDim})`,
      2 * c.numHiddenLayers * size * 4, size);
    this.owner = model.lifetime;
    this.config = c;
    this.slots = batch;
    this.capacity = capacity;
    this.lengths = new Int32Array(batch);
    this.keys = model.blocks.map(() => new Float32Array(size));
    this.values = model.blocks.map(() => new Float32Array(size));
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

  /** Offset of [slot, head, position 0] in keys[i] / values[i]. */
  headOffset(slot: number, head: number): number {
    return (slot * this.config.numKeyValueHeads + head) * this.capacity * this.config.headDim;
  }

  /**
   * @internal Claims the cache for one forward call. Calls on one cache must run one after another (each
   * continues at the length the previous one left), so a second call while one is running is an Error.
   */
  acquire(where: string): void {
    if (this.#busy) {
      throw new Error(`${where}: the KV cache is in use by another forward() that has not finished; await it first (calls on one cache run one after another)`);
    }
    this.#busy = true;
  }

  /** @internal */
  release(): void {
    this.#busy = false;
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

// --- forward -------------------------------------------------------------------------------------------

function ensureRope(model: LlamaModel, positions: number): void {
  if (model.rope.positions >= positions) return;
  const { headDim, ropeTheta } = model.config;
  const half = headDim / 2;
  // Grown geometrically, never past what a cache may hold (positions <= a cache's capacity <= that).
  const n = Math.min(Math.max(positions, 2 * model.rope.positions, 64), model.config.maxPositionEmbeddings);
  const cos = new Float64Array(n * half), sin = new Float64Array(n * half);
  for (let i = 0; i < half; i++) {
    const invFreq = 1 / ropeTheta ** ((2 * i) / headDim);
    for (let p = 0; p < n; p++) {
      cos[p * half + i] = Math.cos(p * invFreq);
      sin[p * half + i] = Math.sin(p * invFreq);
    }
  }
  model.rope = { positions: n, cos, sin };
}

// Rotates each head's (x[i], x[i + d/2]) pairs by position x frequency (HF's rotate_half convention).
// x: [batch * tokens, heads * d]; row r holds token t = r % tokens of sequence b = r / tokens, at position
// past[b] + t.
function applyRope(model: LlamaModel, x: Float32Array, heads: number, tokens: number, past: Int32Array): void {
  const d = model.config.headDim, half = d / 2;
  const { cos, sin } = model.rope;
  const rows = x.length / (heads * d);
  for (let r = 0; r < rows; r++) {
    const p = (past[Math.floor(r / tokens)] + (r % tokens)) * half;
    for (let h = 0; h < heads; h++) {
      const base = (r * heads + h) * d;
      for (let i = 0; i < half; i++) {
        const a = x[base + i], b = x[base + half + i];
        const c = cos[p + i], s = sin[p + i];
        x[base + i] = a * c - b * s;
        x[base + half + i] = b * c + a * s;
      }
    }
  }
}

// q: [B*T, heads*d] (rotated); sequence b runs on cache slot slots[b], whose keys/values of block `layer`
// already hold positions [0, past[b] + T). Returns [B*T, heads*d]. GEMMs beat plain loops here 4.7x to 9.5x
// (decoding after 127 or 511 cached tokens, a 128-token prefill): see `npm run bench:models`.
export async function attention(model: LlamaModel, cache: KVCache, layer: number, q: Float32Array, tokens: number, slots: Int32Array, past: Int32Array): Promise<Float32Array> {
  const { numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim: d } = model.config;
  const groups = heads / kvHeads;
  const batch = slots.length;
  const out = new Float32Array(batch * tokens * heads * d); // [B*T, heads*d]
  const qGroup = new Float32Array(groups * tokens * d); // [groups*T, d]: the query heads sharing one KV head
  const scale = 1 / Math.sqrt(d);
  for (let b = 0; b < batch; b++) {
    const span = past[b] + tokens;
    for (let g = 0; g < kvHeads; g++) {
      for (let hh = 0; hh < groups; hh++) {
        for (let t = 0; t < tokens; t++) {
          const src = ((b * tokens + t) * heads + g * groups + hh) * d;
          qGroup.set(q.subarray(src, src + d), (hh * tokens + t) * d);
        }
      }
      const at = cache.headOffset(slots[b], g);
      const keys = f32(cache.keys[layer].subarray(at, at + span * d), [span, d]); // [S, d]
      const values = f32(cache.values[layer].subarray(at, at + span * d), [span, d]); // [S, d]
      const scores = await gemm(f32(qGroup, [groups * tokens, d]), keys, { transB: true, alpha: scale }); // [groups*T, S]
      // Causal: query t (position past[b] + t) sees positions 0..past[b] + t of its own slot.
      softmaxRows(scores.data as Float32Array, span, (row) => past[b] + (row % tokens) + 1);
      const mixed = (await gemm(scores, values)).data as Float32Array; // [groups*T, d]
      for (let hh = 0; hh < groups; hh++) {
        for (let t = 0; t < tokens; t++) {
          const dst = ((b * tokens + t) * heads + g * groups + hh) * d;
          out.set(mixed.subarray((hh * tokens + t) * d, (hh * tokens + t + 1) * d), dst);
        }
      }
    }
  }
  return out;
}

// x in the dtype each of `linears` reads (linearInputDtype), converted once per dtype: q, k and v read the
// same input, and so do gate and up (a bf16 copy of a 128-token prefill's input costs about 0.5 ms).
function inputsFor(x: Tensor, ...linears: Linear[]): Tensor[] {
  const converted = new Map<DType, Tensor>();
  return linears.map((l) => {
    const dtype = l.weight.inputDtype;
    let t = converted.get(dtype);
    if (!t) converted.set(dtype, (t = x.toDType(dtype)));
    return t;
  });
}

// Writes the new tokens' keys or values, k: [B*T, kvHeads*d], to positions [past[b], past[b] + T) of slot
// slots[b].
function storeInCache(cache: KVCache, into: Float32Array, k: Float32Array, kvHeads: number, d: number, tokens: number, slots: Int32Array, past: Int32Array): void {
  for (let b = 0; b < slots.length; b++) {
    for (let g = 0; g < kvHeads; g++) {
      const at = cache.headOffset(slots[b], g);
      for (let t = 0; t < tokens; t++) {
        const src = ((b * tokens + t) * kvHeads + g) * d;
        into.set(k.subarray(src, src + d), at + (past[b] + t) * d);
      }
    }
  }
}

/**
 * Runs ids: [batch * tokens] (row-major [batch, tokens]): row b on cache slot slots[b] (cacheSlots), at
 * positions cache.lengths[slots[b]] + t, appending to that slot. Returns logits [batch * tokens, vocab], or
 * [batch, vocab] for each sequence's last token.
 */
export async function llamaForward(model: LlamaModel, ids: Int32Array, batch: number, tokens: number, cache: KVCache, slots: Int32Array, lastOnly: boolean): Promise<Tensor> {
  const c = model.config;
  if (slots.length !== batch) throw new RangeError(`forward: ${slots.length} cache slots for ${batch} sequences`);
  const past = new Int32Array(batch); // cached positions of each row's slot
  for (let b = 0; b < batch; b++) {
    past[b] = cache.lengths[slots[b]];
    if (past[b] + tokens > cache.capacity) {
      throw new RangeError(`forward: ${past[b]} cached + ${tokens} new positions exceed the cache capacity of ${cache.capacity} (slot ${slots[b]})`);
    }
  }
  const longest = Math.max(...past);
  const need = forwardWorkingSet(c, batch, tokens, longest, lastOnly);
  checkMemory('forward', `${batch} x ${tokens} tokens after ${longest} cached positions`, need.bytes, need.largest);
  ensureRope(model, longest + tokens);
  const rows = batch * tokens;
  const H = c.hiddenSize;
  const x = f32(embed(model.embedTokens, ids), [rows, H]); // the residual stream, [B*T, H]
  const h = new Float32Array(rows * H);
  for (let i = 0; i < model.blocks.length; i++) {
    if (i > 0) await yieldIfBusy();
    const blk = model.blocks[i];
    rmsNorm(x.data as Float32Array, H, blk.inputNorm, c.rmsNormEps, h);
    const [hq, hk, hv] = inputsFor(f32(h, [rows, H]), blk.q, blk.k, blk.v);
    const q = (await blk.q.forward(hq)).data as Float32Array;
    const k = (await blk.k.forward(hk)).data as Float32Array;
    const v = (await blk.v.forward(hv)).data as Float32Array;
    applyRope(model, q, c.numAttentionHeads, tokens, past);
    applyRope(model, k, c.numKeyValueHeads, tokens, past);
    storeInCache(cache, cache.keys[i], k, c.numKeyValueHeads, c.headDim, tokens, slots, past);
    storeInCache(cache, cache.values[i], v, c.numKeyValueHeads, c.headDim, tokens, slots, past);
    const attn = await attention(model, cache, i, q, tokens, slots, past);
    await blk.o.forward(f32(attn, [rows, c.numAttentionHeads * c.headDim]), x); // x += attn W_o^T
    rmsNorm(x.data as Float32Array, H, blk.postAttentionNorm, c.rmsNormEps, h);
    const [hg, hu] = inputsFor(f32(h, [rows, H]), blk.gate, blk.up);
    const gate = (await blk.gate.forward(hg)).data as Float32Array; // silu(h W_gate^T)
    const up = (await blk.up.forward(hu)).data as Float32Array;
    for (let j = 0; j < gate.length; j++) gate[j] *= up[j];
    await blk.down.forward(f32(gate, [rows, c.intermediateSize]), x); // x += (silu(g) * u) W_down^T
  }
  for (let b = 0; b < batch; b++) cache.lengths[slots[b]] = past[b] + tokens;
  let final = x.data as Float32Array;
  if (lastOnly && tokens > 1) {
    final = new Float32Array(batch * H);
    for (let b = 0; b < batch; b++) final.set((x.data as Float32Array).subarray(((b + 1) * tokens - 1) * H, (b + 1) * tokens * H), b * H);
  }
  await yieldIfBusy();
  const normed = rmsNorm(final, H, model.norm, c.rmsNormEps);
  return model.lmHead.forward(f32(normed, [normed.length / H, H]));
}

// The f32 arrays one forward holds at its peak (attention's are per KV head, one at a time), in bytes, and
// the largest one in elements: an input too large for memory is a RangeError before anything is allocated.
// `past`: the most cached positions of any row's slot.
function forwardWorkingSet(c: LlamaConfig, batch: number, tokens: number, past: number, lastOnly: boolean): { bytes: number; largest: number } {
  const rows = batch * tokens, span = past + tokens, outRows = lastOnly ? batch : rows;
  const q = c.numAttentionHeads * c.headDim, kv = c.numKeyValueHeads * c.headDim;
  const groups = c.numAttentionHeads / c.numKeyValueHeads;
  const arrays = [
    rows * c.hiddenSize, rows * c.hiddenSize, rows * c.hiddenSize, // x, h, h converted for a bf16 GEMM
    rows * q, rows * kv, rows * kv, rows * q, // q, k, v, attention's output
    groups * tokens * c.headDim, groups * tokens * span, groups * tokens * c.headDim, // attention of one KV head
    rows * c.intermediateSize, rows * c.intermediateSize, // gate, up
    outRows * c.hiddenSize, outRows * c.vocabSize, // the final norm, the logits
  ];
  return { bytes: 4 * arrays.reduce((sum, n) => sum + n, 0), largest: Math.max(...arrays) };
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
