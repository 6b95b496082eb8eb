// Running a Llama model (llama.ts) where it lives: forward over a KV cache, and the greedy step of
// generation, which brings back only the chosen ids. Both are orchestration only: the fused weight GEMMs (BoundGemm, through
// tuned dispatch) and the native ops (src/ops.ts: embedding, RMSNorm, rotary embedding, KV store,
// attention, SwiGLU, argmax) on buffers of the model's device. One step of a block:
//
//   h    = rmsNorm(x)                          in the dtype the q/k/v GEMM reads
//   qkv  = h @ W_qkv^T                         [rows, (heads + 2 kvHeads) headDim] f32
//   rope(q and k, in place: one call over heads + kvHeads heads of the qkv buffer)
//   kvStore(k block), kvStore(v block)         into slot slots[b] at positions past[b] ..
//   attn = attention(q block, cache)           in the dtype o_proj reads
//   x   += attn @ W_o^T                        (the residual add in the GEMM's epilogue: beta = 1)
//   h    = rmsNorm(x)                          in the dtype the gate/up GEMM reads
//   gu   = h @ W_gateup^T                      [rows, 2 intermediate] f32
//   m    = swiglu(gu)                          silu(gate) * up, in the dtype down_proj reads
//   x   += m @ W_down^T
//
// The buffers and the prepared calls of one shape (batch x tokens) live in a Scratch kept by the KV cache
// between calls (a cache runs one call at a time), so a decode step allocates nothing but its logits and
// validates nothing but its token ids and slots. On the CPU, work under gemmPolicy's size runs
// synchronously and larger work off the event loop; on a GPU every call only queues work on the device's
// stream and the step waits once, off the event loop, for its last call (the LM head, or argmax).
import { type DType, dtypeSize } from '../dtype.js';
import { type MatrixView, PreparedOp } from '../ops.js';
import type { Tensor } from '../tensor.js';
import { BoundGemm, allocateOn, runsSync } from './layers.js';
import { type CacheScratch, type KVCache, type LlamaModel, type RopeTables, ensureRope } from './llama.js';
import { checkMemory, formatBytes, isOutOfMemory, outOfMemory, yieldIfBusy } from './resources.js';

// A tensor as the [rows, cols] matrix it holds, or a column block of it.
function whole(t: Tensor, rows: number, cols: number): MatrixView {
  return { tensor: t, offset: 0, rows, cols, ld: cols };
}

function block(t: Tensor, rows: number, ld: number, start: number, cols: number): MatrixView {
  return { tensor: t, offset: start, rows, cols, ld };
}

interface LayerCalls {
  inputNorm: PreparedOp;
  qkv: BoundGemm;
  storeK: PreparedOp;
  storeV: PreparedOp;
  attention: PreparedOp;
  o: BoundGemm;
  postNorm: PreparedOp;
  gateUp: BoundGemm;
  /** The same call for every layer whose down_proj reads the same input dtype. */
  swiglu: PreparedOp;
  down: BoundGemm;
}

/** The shape a Scratch serves; see Scratch.key. */
interface StepShape {
  batch: number;
  tokens: number;
  /** Only each sequence's last token goes through the final norm and the LM head. */
  lastOnly: boolean;
  /** nextTokenIds: the logits stay in the scratch and argmax gives the next ids. */
  generating: boolean;
}

/**
 * The buffers and prepared calls of one step shape on one KV cache, on the model's device:
 *   x [rows, hidden] f32 (the residual stream), h [rows, hidden] (per input dtype), qkv [rows, (heads +
 *   2 kvHeads) headDim] f32, attn [rows, heads headDim], gu [rows, 2 intermediate] f32, m [rows,
 *   intermediate], final [outRows, hidden]; with generating, logits [outRows, vocab] f32;
 * and the host int arrays the ops read (ids, positions, slot indices, past lengths), refilled each step.
 */
class Scratch implements CacheScratch {
  readonly key: string;
  readonly bytes: number;
  readonly rows: number;
  readonly outRows: number;
  readonly ids: Int32Array;
  readonly positions: Int32Array;
  readonly slotIndex: Int32Array;
  readonly past: Int32Array;
  readonly nextIds: Int32Array;
  readonly final: Tensor;
  readonly logits: Tensor | undefined;
  readonly embedding: PreparedOp;
  readonly layers: LayerCalls[] = [];
  readonly finalNorm: PreparedOp;
  readonly head: BoundGemm | undefined;
  readonly argmax: PreparedOp | undefined;
  /** Which calls run synchronously (see runsSync): fixed by the shape; attention's depends on the positions. */
  readonly sync: { norm: boolean; swiglu: boolean; qkv: boolean; o: boolean; gateUp: boolean; down: boolean };
  #rope: PreparedOp | undefined;
  #ropeTables: RopeTables | undefined;
  readonly #qkv: Tensor;
  readonly #tensors: Tensor[] = [];

  static key(s: StepShape): string {
    return `${s.batch}x${s.tokens}${s.lastOnly && s.tokens > 1 ? ' last' : ''}${s.generating ? ' generate' : ''}`;
  }

  /** The bytes it allocates on the device for `s` (and the largest buffer, in elements). */
  static size(model: LlamaModel, s: StepShape): { bytes: number; largest: number } {
    const c = model.config, blk = model.blocks[0], rows = s.batch * s.tokens, outRows = s.lastOnly ? s.batch : rows;
    const q = c.numAttentionHeads * c.headDim, qkv = q + 2 * c.numKeyValueHeads * c.headDim;
    const hDtypes = new Set([blk.qkv.weight.inputDtype, blk.gateUp.weight.inputDtype]); // one h when they agree
    const buffers: [number, DType][] = [
      [rows * c.hiddenSize, 'f32'], [rows * qkv, 'f32'], [rows * 2 * c.intermediateSize, 'f32'], // x, qkv, gu
      ...[...hDtypes].map((dt): [number, DType] => [rows * c.hiddenSize, dt]),
      [rows * q, blk.o.weight.inputDtype], [rows * c.intermediateSize, blk.down.weight.inputDtype], // attn, m
      [outRows * c.hiddenSize, model.lmHead.weight.inputDtype], // final
      ...(s.generating ? [[outRows * c.vocabSize, 'f32'] as [number, DType]] : []),
    ];
    return { bytes: buffers.reduce((sum, [n, dt]) => sum + n * dtypeSize(dt), 0), largest: Math.max(...buffers.map(([n]) => n)) };
  }

  constructor(where: string, model: LlamaModel, cache: KVCache, s: StepShape) {
    const c = model.config, device = model.device, H = c.hiddenSize, d = c.headDim;
    const rows = s.batch * s.tokens, outRows = s.lastOnly ? s.batch : rows;
    const q = c.numAttentionHeads * d, kv = c.numKeyValueHeads * d, qkvCols = q + 2 * kv, I = c.intermediateSize;
    this.key = Scratch.key(s);
    this.bytes = Scratch.size(model, s).bytes;
    this.rows = rows;
    this.outRows = outRows;
    this.ids = new Int32Array(rows);
    this.positions = new Int32Array(rows);
    this.slotIndex = new Int32Array(s.batch);
    this.past = new Int32Array(s.batch);
    this.nextIds = new Int32Array(outRows);
    try {
      const buffers = new Map<string, Tensor>();
      const buffer = (name: string, dtype: DType, shape: number[]) => {
        const key = `${name}:${dtype}`;
        let t = buffers.get(key);
        if (!t) {
          t = allocateOn(where, device, dtype, shape);
          this.#tensors.push(t);
          buffers.set(key, t);
        }
        return t;
      };
      const x = buffer('x', 'f32', [rows, H]);
      const qkv = (this.#qkv = buffer('qkv', 'f32', [rows, qkvCols]));
      const gu = buffer('gu', 'f32', [rows, 2 * I]);
      const blocks = model.blocks;
      const cacheFields = { batch: s.batch, tokens: s.tokens, slots: cache.slots, capacity: cache.capacity, kvHeads: c.numKeyValueHeads, headDim: d };
      const cacheInts = { slotIndex: this.slotIndex, past: this.past };
      const norm = (weight: Tensor, out: Tensor) => new PreparedOp(where, 'rmsNorm', { rows, cols: H, eps: c.rmsNormEps, dtypeWeight: weight.dtype },
        { x: whole(x, rows, H), out: whole(out, rows, H), weight });
      this.embedding = new PreparedOp(where, 'embedding', { rows, cols: H, vocab: c.vocabSize },
        { x: whole(model.embedTokens, c.vocabSize, H), out: whole(x, rows, H), ids: this.ids });
      // swiglu reads the gate and up halves of gu and writes m in the dtype down_proj reads.
      const swiglus = new Map<DType, PreparedOp>();
      const swigluInto = (m: Tensor) => {
        let op = swiglus.get(m.dtype);
        if (!op) swiglus.set(m.dtype, (op = new PreparedOp(where, 'swiglu', { rows, cols: I }, { x: block(gu, rows, 2 * I, 0, I), y: block(gu, rows, 2 * I, I, I), out: whole(m, rows, I) })));
        return op;
      };
      blocks.forEach((blk, i) => {
        const hIn = buffer('h', blk.qkv.weight.inputDtype, [rows, H]);
        const attn = buffer('attn', blk.o.weight.inputDtype, [rows, q]);
        const hPost = buffer('h', blk.gateUp.weight.inputDtype, [rows, H]);
        const m = buffer('m', blk.down.weight.inputDtype, [rows, I]);
        const keys = cache.keys[i], values = cache.values[i];
        this.layers.push({
          inputNorm: norm(blk.inputNorm, hIn),
          qkv: new BoundGemm(where, hIn, blk.qkv, qkv, false),
          storeK: new PreparedOp(where, 'kvStore', { rows, cols: kv, ...cacheFields },
            { x: block(qkv, rows, qkvCols, q, kv), out: whole(keys, 1, keys.size), ...cacheInts }),
          storeV: new PreparedOp(where, 'kvStore', { rows, cols: kv, ...cacheFields },
            { x: block(qkv, rows, qkvCols, q + kv, kv), out: whole(values, 1, values.size), ...cacheInts }),
          attention: new PreparedOp(where, 'attention', { rows, cols: q, heads: c.numAttentionHeads, scale: 1 / Math.sqrt(d), ...cacheFields },
            { x: block(qkv, rows, qkvCols, 0, q), out: whole(attn, rows, q), kCache: keys, vCache: values, ...cacheInts }),
          o: new BoundGemm(where, attn, blk.o, x, true),
          postNorm: norm(blk.postAttentionNorm, hPost),
          gateUp: new BoundGemm(where, hPost, blk.gateUp, gu, false),
          swiglu: swigluInto(m),
          down: new BoundGemm(where, m, blk.down, x, true),
        });
      });
      const l0 = this.layers[0];
      this.sync = {
        norm: runsSync(device, rows * H), swiglu: runsSync(device, rows * I),
        qkv: runsSync(device, l0.qkv.macs), o: runsSync(device, l0.o.macs), gateUp: runsSync(device, l0.gateUp.macs), down: runsSync(device, l0.down.macs),
      };
      // The final norm reads every row of x, or each sequence's last: row (b + 1) tokens - 1, a stride of tokens rows.
      this.final = buffer('final', model.lmHead.weight.inputDtype, [outRows, H]);
      const last = s.lastOnly && s.tokens > 1;
      this.finalNorm = new PreparedOp(where, 'rmsNorm', { rows: outRows, cols: H, eps: c.rmsNormEps, dtypeWeight: model.norm.dtype }, {
        x: last ? block(x, outRows, s.tokens * H, (s.tokens - 1) * H, H) : whole(x, rows, H), out: whole(this.final, outRows, H), weight: model.norm,
      });
      if (s.generating) {
        const logits = buffer('logits', 'f32', [outRows, c.vocabSize]);
        this.logits = logits;
        this.head = new BoundGemm(where, this.final, model.lmHead, logits, false);
        this.argmax = new PreparedOp(where, 'argmax', { rows: outRows, cols: c.vocabSize }, { x: whole(logits, outRows, c.vocabSize), idsOut: this.nextIds });
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** The rotary call on the q and k blocks of qkv (one call: heads + kvHeads heads), reading `tables`. */
  rope(model: LlamaModel, tables: RopeTables): PreparedOp {
    if (this.#rope === undefined || this.#ropeTables !== tables) {
      const c = model.config, heads = c.numAttentionHeads + c.numKeyValueHeads, cols = heads * c.headDim;
      const ld = this.#qkv.shape[1];
      this.#rope = new PreparedOp('forward', 'rope', { rows: this.rows, cols, heads, headDim: c.headDim, ropePositions: tables.positions },
        { x: block(this.#qkv, this.rows, ld, 0, cols), weight: tables.cos, bias: tables.sin, positions: this.positions });
      this.#ropeTables = tables;
    }
    return this.#rope;
  }

  dispose(): void {
    for (const t of this.#tensors) t.dispose();
  }
}

// The cache's scratch for this shape, or a new one. What the step allocates (a new scratch, and
// `extraBytes` more: forward's logits) is checked first on the CPU against the memory available; on a
// GPU, out of memory is the device's GEMMKIT_OUT_OF_MEMORY, with nothing left allocated.
function scratchFor(where: string, model: LlamaModel, cache: KVCache, s: StepShape, extraBytes: number): Scratch {
  const kept = cache.takeScratch(Scratch.key(s)) as Scratch | undefined;
  const need = kept ? { bytes: 0, largest: 0 } : Scratch.size(model, s);
  if (model.device === 'cpu' && need.bytes + extraBytes > 0) {
    checkMemory(where, `${s.batch} x ${s.tokens} tokens`, need.bytes + extraBytes, Math.max(need.largest, extraBytes / 4));
  }
  if (kept) return kept;
  try {
    return new Scratch(where, model, cache, s);
  } catch (e) {
    if (isOutOfMemory(e)) throw outOfMemory(where, `the activations of ${s.batch} x ${s.tokens} tokens (${formatBytes(need.bytes)}) on ${model.device}`, e);
    throw e;
  }
}

/** The cached positions of each row's slot, checked: a RangeError when the new tokens do not fit. */
function pastOf(where: string, cache: KVCache, slots: Int32Array, tokens: number): Int32Array {
  const past = new Int32Array(slots.length);
  for (let b = 0; b < slots.length; b++) {
    past[b] = cache.lengths[slots[b]];
    if (past[b] + tokens > cache.capacity) {
      throw new RangeError(`${where}: ${past[b]} cached + ${tokens} new positions exceed the cache capacity of ${cache.capacity}${cache.slots > 1 ? ` (slot ${slots[b]})` : ''}`);
    }
  }
  return past;
}

// Runs the embedding and every block for ids [batch * tokens] on slots at past (checked), then the final
// norm: the scratch's `final` holds the LM head's input.
async function runBlocks(model: LlamaModel, s: Scratch, ids: Int32Array, tokens: number, slots: Int32Array, past: Int32Array): Promise<void> {
  const c = model.config;
  let longest = 0;
  s.ids.set(ids);
  s.slotIndex.set(slots);
  s.past.set(past);
  for (let b = 0; b < slots.length; b++) {
    for (let t = 0; t < tokens; t++) s.positions[b * tokens + t] = past[b] + t;
    longest = Math.max(longest, past[b] + tokens);
  }
  const rope = s.rope(model, ensureRope(model, longest));
  // Attention's multiply-adds (at most), for the sync/async choice; the other calls' is fixed per scratch.
  const syncAttention = runsSync(model.device, 2 * s.rows * longest * c.numAttentionHeads * c.headDim);
  const sync = s.sync;
  s.embedding.run();
  for (let i = 0; i < s.layers.length; i++) {
    if (i > 0) await yieldIfBusy();
    const l = s.layers[i];
    if (sync.norm) l.inputNorm.run();
    else await l.inputNorm.runAsync();
    if (sync.qkv) l.qkv.run();
    else await l.qkv.runAsync();
    rope.run();
    l.storeK.run();
    l.storeV.run();
    if (syncAttention) l.attention.run();
    else await l.attention.runAsync();
    if (sync.o) l.o.run();
    else await l.o.runAsync();
    if (sync.norm) l.postNorm.run();
    else await l.postNorm.runAsync();
    if (sync.gateUp) l.gateUp.run();
    else await l.gateUp.runAsync();
    if (sync.swiglu) l.swiglu.run();
    else await l.swiglu.runAsync();
    if (sync.down) l.down.run();
    else await l.down.runAsync();
  }
  s.finalNorm.run();
}

function commit(cache: KVCache, slots: Int32Array, past: Int32Array, tokens: number): void {
  for (let b = 0; b < slots.length; b++) cache.lengths[slots[b]] = past[b] + tokens;
}

/**
 * Runs ids: [batch * tokens] (row-major [batch, tokens]): row b on cache slot slots[b] (cacheSlots), at
 * positions cache.lengths[slots[b]] + t, appending to that slot. Returns logits on the model's device,
 * [batch * tokens, vocab] f32, or [batch, vocab] for each sequence's last token. The caller holds the
 * cache (acquire); a refused call changes no length.
 */
export async function llamaForward(model: LlamaModel, ids: Int32Array, batch: number, tokens: number, cache: KVCache, slots: Int32Array, lastOnly: boolean): Promise<Tensor> {
  const where = 'forward';
  if (slots.length !== batch) throw new RangeError(`${where}: ${slots.length} cache slots for ${batch} sequences`);
  const past = pastOf(where, cache, slots, tokens);
  const shape: StepShape = { batch, tokens, lastOnly: lastOnly && tokens > 1, generating: false };
  const outRows = shape.lastOnly ? batch : batch * tokens;
  const logitsBytes = outRows * model.config.vocabSize * 4;
  const s = scratchFor(where, model, cache, shape, logitsBytes);
  try {
    await runBlocks(model, s, ids, tokens, slots, past);
    let logits: Tensor;
    try {
      logits = allocateOn(where, model.device, 'f32', [outRows, model.config.vocabSize]);
    } catch (e) {
      if (isOutOfMemory(e)) throw outOfMemory(where, `the logits of ${outRows} rows on ${model.device}`, e);
      throw e;
    }
    const head = new BoundGemm(where, s.final, model.lmHead, logits, false);
    // On a GPU the step waits here, off the event loop, for everything it queued.
    if (model.device === 'cpu' && runsSync('cpu', head.macs)) head.run();
    else await head.runAsync();
    commit(cache, slots, past, tokens);
    return logits;
  } finally {
    cache.keepScratch(s);
  }
}

/**
 * Runs ids like llamaForward and returns each sequence's next id: the argmax of its last token's logits,
 * computed on the model's device, so only the ids come back to the host. The caller holds the cache.
 */
export async function llamaNextIds(model: LlamaModel, ids: Int32Array, batch: number, tokens: number, cache: KVCache, slots: Int32Array): Promise<Int32Array> {
  const where = 'nextTokenIds';
  if (slots.length !== batch) throw new RangeError(`${where}: ${slots.length} cache slots for ${batch} sequences`);
  const past = pastOf(where, cache, slots, tokens);
  const s = scratchFor(where, model, cache, { batch, tokens, lastOnly: true, generating: true }, 0);
  try {
    await runBlocks(model, s, ids, tokens, slots, past);
    if (model.device === 'cpu') {
      if (runsSync('cpu', s.head!.macs)) s.head!.run();
      else await s.head!.runAsync();
      s.argmax!.run();
    } else {
      s.head!.run();
      await s.argmax!.runAsync(); // waits for the step off the event loop and copies the ids back
    }
    commit(cache, slots, past, tokens);
    return Int32Array.from(s.nextIds);
  } finally {
    cache.keepScratch(s);
  }
}
