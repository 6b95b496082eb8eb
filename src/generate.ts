// Generation over forward(): text or token ids in, text or ids out, with sampling, stop conditions,
// streaming and cancellation.
//
// A Sequence is one request's state: its prompt and output ids, its sampler (options and seeded PRNG),
// its stop conditions and its incremental detokenizer. A DecodeBatch runs sequences on the slots of one
// KV cache: add() prefills new ones (prompts of one length share a forward) and samples their first
// token; step() feeds every active sequence's last token through one forward with batch = the active
// sequences (each weight GEMM runs once with M = that count), whatever their lengths; a finished sequence
// leaves and its slot is reused. generate() and stream() run one DecodeBatch to the end; the server's
// scheduler (serve/scheduler.ts) keeps one running and lets requests join and leave between steps.
//
// Sampling runs on the host over each sequence's last-token logits, in this order: repetition penalty
// (over prompt and output), frequency and presence penalties (over the output), then greedy argmax when
// temperature is 0, else softmax(logits / temperature) cut by top-k, top-p and min-p (ties at a cut are
// kept) and one draw from the sequence's PRNG.
import { randomInt } from 'node:crypto';
import { KVCache, type Model, forward, llamaOnly, nextTokenIds } from './models/index.js';
import { type LlamaModel, tokenBatch } from './models/llama.js';
import { mulberry32 } from './models/random.js';
import { yieldIfBusy } from './models/resources.js';
import { preview } from './safetensors.js';
import { type ChatMessage, checkMessages } from './text/chat.js';
import { IncrementalDecoder, StopStrings } from './text/incremental.js';
import type { TextTokenizer } from './text/tokenizer.js';

export interface SamplingOptions {
  /** 0 (default): greedy, the most likely token. Above 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Sample among the k most likely tokens only; 0 (default): all. */
  topK?: number;
  /** Sample among the most likely tokens whose probabilities add up to topP (nucleus); 1 (default): all. */
  topP?: number;
  /** Drop tokens less likely than minP times the most likely one; 0 (default): none. */
  minP?: number;
  /** Divide positive (multiply negative) logits of tokens already in the prompt or output; 1 (default): off. */
  repetitionPenalty?: number;
  /** Subtracted from the logit of every token the output already has (OpenAI's presence_penalty). */
  presencePenalty?: number;
  /** Subtracted from a token's logit once per time the output has it (OpenAI's frequency_penalty). */
  frequencyPenalty?: number;
  /** Seeds the sequence's PRNG: the same seed, prompt and options give the same output. Default: random. */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** How many tokens to generate at most. */
  maxNewTokens: number;
  /** Stop a sequence once it produces this id (kept in the output ids). Same as stopIds: [id]. */
  eosTokenId?: number;
  /** Stop a sequence at any of these ids (kept in the ids, not in the text); the tokenizer's eos ids always stop text. */
  stopIds?: readonly number[];
  /** Stop when the text contains one of these; the text ends before it. Needs a tokenizer. */
  stop?: string | readonly string[];
  /** Turns text prompts into ids and ids into text: loadTokenizer(checkpoint directory). */
  tokenizer?: TextTokenizer;
  /** Aborting stops generation between two steps; the call rejects with the signal's reason. */
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length';

/** A prompt: text (tokenized, with the tokenizer's special tokens), chat messages (the chat template), or ids. */
export type Prompt = string | readonly ChatMessage[] | readonly number[] | Int32Array;

// --- options -------------------------------------------------------------------------------------------

/** Sampling options with every default filled in. */
export interface Sampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  /** undefined: each sequence draws a random seed of its own. */
  seed: number | undefined;
}

function numberIn(where: string, name: string, v: unknown, fallback: number, ok: (x: number) => boolean, range: string): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new RangeError(`${where}: ${name} must be ${range}, got ${JSON.stringify(v)}`);
  return v;
}

/** The options checked (a RangeError naming the first bad one) and the defaults filled in. */
export function resolveSampling(where: string, o: SamplingOptions): Sampling {
  return {
    temperature: numberIn(where, 'temperature', o.temperature, 0, (x) => x >= 0, 'a number >= 0'),
    topK: numberIn(where, 'topK', o.topK, 0, (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0 (0: off)'),
    topP: numberIn(where, 'topP', o.topP, 1, (x) => x > 0 && x <= 1, 'in (0, 1]'),
    minP: numberIn(where, 'minP', o.minP, 0, (x) => x >= 0 && x <= 1, 'in [0, 1]'),
    repetitionPenalty: numberIn(where, 'repetitionPenalty', o.repetitionPenalty, 1, (x) => x > 0, 'a number > 0 (1: off)'),
    presencePenalty: numberIn(where, 'presencePenalty', o.presencePenalty, 0, () => true, 'a finite number'),
    frequencyPenalty: numberIn(where, 'frequencyPenalty', o.frequencyPenalty, 0, () => true, 'a finite number'),
    seed: o.seed === undefined ? undefined : numberIn(where, 'seed', o.seed, 0, Number.isSafeInteger, 'a safe integer'),
  };
}

// A 53-bit seed folded into the PRNG's 32-bit state (both halves count); no seed, a random one.
function prngFor(seed = randomInt(2 ** 32)): () => number {
  const high = Math.floor(seed / 2 ** 32);
  return mulberry32((seed ^ Math.imul(high, 0x9e3779b9)) >>> 0);
}

// --- sampling ------------------------------------------------------------------------------------------

/** The lowest index of the largest value (NaN never wins; all NaN gives 0). */
export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best] || !(x[best] === x[best])) best = i;
  return x[best] === x[best] ? best : 0;
}

/** What a sequence has seen, for the penalties: output ids with their counts, and prompt + output ids. */
export interface TokenHistory {
  outputCounts: ReadonlyMap<number, number>;
  seen: ReadonlySet<number>;
}

/**
 * The value at which a walk over `values` in descending order first has `reached(count, mass)` (count
 * entries adding up to mass); -Infinity when it never does. Quickselect with three-way partitions, reordering
 * `values`: expected O(n), where sorting the vocabulary for every token would cost milliseconds.
 * `reached` must be monotonic in count and mass.
 */
function descendingCut(values: Float64Array, reached: (count: number, mass: number) => boolean): number {
  const v = values;
  let lo = 0, hi = v.length, count = 0, mass = 0;
  while (lo < hi) {
    const a = v[lo], b = v[(lo + hi) >> 1], c = v[hi - 1];
    const pivot = Math.max(Math.min(a, b), Math.min(Math.max(a, b), c)); // median of three
    // Afterwards [lo, gt) > pivot, [gt, lt) == pivot, [lt, hi) < pivot.
    let gt = lo, i = lo, lt = hi, greaterMass = 0;
    while (i < lt) {
      const x = v[i];
      if (x > pivot) {
        v[i] = v[gt];
        v[gt++] = x;
        i++;
        greaterMass += x;
      } else if (x < pivot) {
        v[i] = v[--lt];
        v[lt] = x;
      } else {
        i++;
      }
    }
    if (gt > lo && reached(count + (gt - lo), mass + greaterMass)) {
      hi = gt; // the cut is among the larger values
      continue;
    }
    count += gt - lo;
    mass += greaterMass;
    const equal = lt - gt;
    if (reached(count + equal, mass + equal * pivot)) return pivot;
    count += equal;
    mass += equal * pivot;
    lo = lt;
  }
  return -Infinity;
}

// Work arrays of sampleToken, reused across calls (it never awaits): allocating and zeroing three arrays
// of the vocabulary's size per token cost more than the sampling itself.
let scratch = { ids: new Int32Array(0), p: new Float64Array(0), values: new Float64Array(0) };
function scratchFor(vocab: number) {
  if (scratch.ids.length < vocab) scratch = { ids: new Int32Array(vocab), p: new Float64Array(vocab), values: new Float64Array(vocab) };
  return scratch;
}

/**
 * One token id from a row of logits [vocab] (modified in place by the penalties) with the options `s`
 * and uniform numbers from `random`.
 */
export function sampleToken(logits: Float32Array, s: Sampling, random: () => number, history: TokenHistory): number {
  const vocab = logits.length;
  if (s.repetitionPenalty !== 1) {
    for (const id of history.seen) {
      const l = logits[id];
      logits[id] = l > 0 ? l / s.repetitionPenalty : l * s.repetitionPenalty;
    }
  }
  if (s.frequencyPenalty !== 0 || s.presencePenalty !== 0) {
    for (const [id, n] of history.outputCounts) logits[id] -= s.frequencyPenalty * n + s.presencePenalty;
  }
  const best = argmax(logits);
  if (s.temperature === 0) return best;
  // Top-k cuts the logits (the order is the same), so only the k candidates need exp().
  let minLogit = -Infinity;
  if (s.topK > 0 && s.topK < vocab) {
    const copy = scratchFor(vocab).values;
    copy.set(logits);
    minLogit = descendingCut(copy.subarray(0, vocab), (count) => count >= s.topK);
  }
  // The candidates: ids[0, n) with unnormalised probabilities p[0, n) (the most likely token's is 1), in
  // id order; each cut keeps the candidates at or above a value.
  let n = 0;
  const { ids, p } = scratchFor(vocab);
  const top = logits[best];
  const invT = 1 / s.temperature;
  for (let i = 0; i < vocab; i++) {
    const x = (logits[i] - top) * invT;
    // NaN logits are never drawn; nor are tokens below e^-30 of the most likely one (together at most
    // vocab * 1e-13 of the mass), which spares their exp().
    if (!(x >= -30) || logits[i] < minLogit) continue;
    ids[n] = i;
    p[n++] = Math.exp(x);
  }
  const keepAtLeast = (cut: number) => {
    let m = 0;
    for (let j = 0; j < n; j++) {
      if (p[j] >= cut) {
        ids[m] = ids[j];
        p[m++] = p[j];
      }
    }
    n = m;
  };
  if (s.topP < 1) {
    let total = 0;
    for (let j = 0; j < n; j++) total += p[j];
    const copy = scratchFor(vocab).values.subarray(0, n);
    copy.set(p.subarray(0, n));
    keepAtLeast(descendingCut(copy, (_, mass) => mass >= s.topP * total));
  }
  if (s.minP > 0) keepAtLeast(s.minP); // relative to the most likely token's 1
  let total = 0;
  for (let j = 0; j < n; j++) total += p[j];
  if (!(total > 0) || !Number.isFinite(total)) return best;
  let u = random() * total;
  for (let j = 0; j < n; j++) {
    u -= p[j];
    if (u < 0) return ids[j];
  }
  return ids[n - 1]; // rounding left u a hair above 0: the last candidate
}

// --- one sequence --------------------------------------------------------------------------------------

/** What a Sequence needs besides its prompt; resolveSequenceOptions fills it from GenerateOptions. */
export interface SequenceOptions {
  sampling: Sampling;
  maxNewTokens: number;
  stopIds: ReadonlySet<number>;
  stop: readonly string[];
  /** Present: the sequence produces text as well as ids. */
  tokenizer?: TextTokenizer;
}

const GENERATE_KEYS = new Set([
  'maxNewTokens', 'eosTokenId', 'stopIds', 'stop', 'tokenizer', 'signal',
  'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'presencePenalty', 'frequencyPenalty', 'seed',
]);

function tokenId(where: string, name: string, v: unknown, vocab: number): number {
  if (typeof v !== 'number') throw new TypeError(`${where}: ${name} must be a token id (an integer in [0, ${vocab})), got ${preview(v)}`);
  if (!Number.isInteger(v) || v < 0 || v >= vocab) throw new RangeError(`${where}: ${name} must be an integer in [0, ${vocab}), got ${v}`);
  return v;
}

/**
 * GenerateOptions checked against a model's vocabulary of `vocab` ids and resolved (a TypeError or
 * RangeError naming the bad option; an unknown option is a TypeError).
 */
export function resolveSequenceOptions(where: string, opts: GenerateOptions, withText: boolean, vocab: number): SequenceOptions {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw new TypeError(`${where}: options { maxNewTokens } are required`);
  for (const key of Object.keys(opts)) {
    if (!GENERATE_KEYS.has(key)) throw new TypeError(`${where}: unknown option '${key}' (known: ${[...GENERATE_KEYS].join(', ')})`);
  }
  const { maxNewTokens, eosTokenId, stopIds, stop, tokenizer } = opts;
  if (typeof maxNewTokens !== 'number') throw new TypeError(`${where}: maxNewTokens must be a non-negative integer, got ${preview(maxNewTokens)}`);
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw new RangeError(`${where}: maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
  const ids = new Set<number>();
  if (eosTokenId !== undefined) ids.add(tokenId(where, 'eosTokenId', eosTokenId, vocab));
  if (stopIds !== undefined) {
    if (!Array.isArray(stopIds)) throw new TypeError(`${where}: stopIds must be an array of token ids, got ${preview(stopIds)}`);
    stopIds.forEach((id, i) => ids.add(tokenId(where, `stopIds[${i}]`, id, vocab)));
  }
  if (withText && tokenizer) for (const id of tokenizer.eosTokenIds) ids.add(id);
  const stops = stop === undefined ? [] : typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw new TypeError(`${where}: stop must be a non-empty string or an array of them, got ${preview(stop)}`);
  }
  if (stops.length > 0 && !withText) throw new TypeError(`${where}: stop strings need text: give a tokenizer and a text prompt`);
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) throw new TypeError(`${where}: signal must be an AbortSignal`);
  return { sampling: resolveSampling(where, opts), maxNewTokens, stopIds: ids, stop: stops, tokenizer: withText ? tokenizer : undefined };
}

export class Sequence {
  readonly prompt: readonly number[];
  readonly output: number[] = [];
  readonly maxNewTokens: number;
  /** Why it ended; undefined while it runs. */
  finishReason: FinishReason | undefined;
  /** Its KV cache slot while in a DecodeBatch, else -1. */
  slot = -1;
  private readonly options: SequenceOptions;
  private readonly random: () => number;
  private readonly history = { outputCounts: new Map<number, number>(), seen: new Set<number>() };
  private readonly decoder: IncrementalDecoder | undefined;
  private readonly stops: StopStrings | undefined;

  constructor(prompt: readonly number[], options: SequenceOptions) {
    this.prompt = prompt;
    this.options = options;
    this.maxNewTokens = options.maxNewTokens;
    this.random = prngFor(options.sampling.seed);
    if (options.sampling.repetitionPenalty !== 1) for (const id of prompt) this.history.seen.add(id);
    if (options.tokenizer) {
      this.decoder = new IncrementalDecoder(options.tokenizer, prompt);
      if (options.stop.length > 0) this.stops = new StopStrings(options.stop);
    }
    if (this.maxNewTokens === 0) this.finishReason = 'length';
  }

  get done(): boolean {
    return this.finishReason !== undefined;
  }

  /**
   * Whether its next token is the plain argmax of the logits (temperature 0, no penalties): then the model
   * can pick it where it runs and send back only the id.
   */
  get greedy(): boolean {
    const s = this.options.sampling;
    return s.temperature === 0 && s.repetitionPenalty === 1 && s.frequencyPenalty === 0 && s.presencePenalty === 0;
  }

  /** The last token: what the next decode step feeds. */
  get lastToken(): number {
    return this.output.length > 0 ? this.output[this.output.length - 1] : this.prompt[this.prompt.length - 1];
  }

  /** The next token from this sequence's logits row [vocab] (modified in place). */
  sample(logits: Float32Array): number {
    return sampleToken(logits, this.options.sampling, this.random, this.history);
  }

  /**
   * Appends a token and returns the text it completes ('' without a tokenizer, or while a character or a
   * possible stop string is incomplete); sets finishReason when it ends the sequence, and then returns
   * all the text still held back.
   */
  accept(id: number): string {
    this.output.push(id);
    this.history.outputCounts.set(id, (this.history.outputCounts.get(id) ?? 0) + 1);
    if (this.options.sampling.repetitionPenalty !== 1) this.history.seen.add(id);
    if (this.options.stopIds.has(id)) {
      this.finishReason = 'stop';
      return this.flushText(); // the stop token's own text is not part of the output text
    }
    let text = '';
    if (this.decoder) {
      const piece = this.decoder.push(id);
      text = this.stops ? this.stops.push(piece) : piece;
      if (this.stops?.stopped !== undefined) {
        this.finishReason = 'stop';
        return text;
      }
    }
    if (this.output.length >= this.maxNewTokens) {
      text += this.flushText();
      this.finishReason = this.stops?.stopped !== undefined ? 'stop' : 'length'; // the held-back text may end in a stop string
      return text;
    }
    return text;
  }

  private flushText(): string {
    if (!this.decoder) return '';
    const rest = this.decoder.flush();
    if (!this.stops) return rest;
    return this.stops.push(rest) + this.stops.flush();
  }
}

// --- a batch of sequences on one KV cache ---------------------------------------------------------------

/** One new token of one sequence, with the text it completes. */
export interface TokenEvent {
  seq: Sequence;
  id: number;
  text: string;
}

export class DecodeBatch {
  readonly model: LlamaModel;
  readonly cache: KVCache;
  /** The sequences holding a slot, in the order of their rows in a decode step. */
  readonly active: Sequence[] = [];
  private readonly free: number[];

  /** `where` names the caller in the cache's errors (too many positions, not enough memory). */
  constructor(model: LlamaModel, slots: number, capacity: number, where = 'DecodeBatch') {
    this.model = model;
    this.cache = new KVCache(model, slots, capacity, where);
    this.free = Array.from({ length: slots }, (_, i) => slots - 1 - i); // pop() hands out slot 0 first
  }

  get freeSlots(): number {
    return this.free.length;
  }

  /** The most positions one sequence can hold: its prompt plus maxNewTokens must fit. */
  get capacity(): number {
    return this.cache.capacity;
  }

  /**
   * Gives each sequence a free slot, runs its prompt (prompts of one length share a forward) and samples
   * its first token. Sequences that end at once (stop id, maxNewTokens 1) leave again.
   */
  async add(seqs: readonly Sequence[]): Promise<TokenEvent[]> {
    if (seqs.length > this.free.length) throw new RangeError(`DecodeBatch.add: ${seqs.length} sequences but ${this.free.length} free slots`);
    for (const seq of seqs) {
      if (seq.done || seq.slot >= 0) throw new Error('DecodeBatch.add: the sequence has ended or is already running');
      if (seq.prompt.length + seq.maxNewTokens > this.capacity) {
        throw new RangeError(`DecodeBatch.add: a prompt of ${seq.prompt.length} tokens plus ${seq.maxNewTokens} new ones exceeds the cache capacity of ${this.capacity}`);
      }
    }
    const byLength = new Map<number, Sequence[]>();
    for (const seq of seqs) byLength.set(seq.prompt.length, [...(byLength.get(seq.prompt.length) ?? []), seq]);
    const events: TokenEvent[] = [];
    for (const group of byLength.values()) {
      for (const seq of group) {
        seq.slot = this.free.pop()!;
        this.cache.reset(seq.slot);
        this.active.push(seq);
      }
      try {
        events.push(...(await this.next(group, group.map((s) => [...s.prompt]))));
      } catch (e) {
        for (const seq of group) this.remove(seq);
        throw e;
      }
    }
    return events;
  }

  /** One decode step: every active sequence's last token through one forward; each samples its next. */
  async step(): Promise<TokenEvent[]> {
    const rows = [...this.active];
    if (rows.length === 0) return [];
    return this.next(rows, rows.map((s) => [s.lastToken]));
  }

  // Runs ids (one row per sequence) on the sequences' slots and gives each its next token: picked by
  // argmax where the model runs when every row is greedy (only the ids come back from a GPU), else
  // sampled on the host from the last-token logits.
  private async next(rows: readonly Sequence[], ids: number[][]): Promise<TokenEvent[]> {
    const opts = { cache: this.cache, slots: rows.map((s) => s.slot) };
    if (rows.every((s) => s.greedy)) {
      const next = await nextTokenIds(this.model, ids, opts);
      return rows.map((seq, b) => this.accepted(seq, next[b]));
    }
    const logits = await forward(this.model, ids, { ...opts, logits: 'last' });
    const host = logits.to('cpu');
    logits.dispose(); // a GPU model's device copy goes now
    return this.sampleRows(rows, host.data as Float32Array);
  }

  private accepted(seq: Sequence, id: number): TokenEvent {
    const text = seq.accept(id);
    if (seq.done) this.remove(seq);
    return { seq, id, text };
  }

  /** Takes a sequence out (ended or cancelled) and frees its slot. */
  remove(seq: Sequence): void {
    const i = this.active.indexOf(seq);
    if (i < 0) return;
    this.active.splice(i, 1);
    this.cache.reset(seq.slot);
    this.free.push(seq.slot);
    seq.slot = -1;
  }

  // logits: [rows.length, vocab]
  private sampleRows(rows: readonly Sequence[], logits: Float32Array): TokenEvent[] {
    const vocab = this.model.config.vocabSize;
    return rows.map((seq, b) => this.accepted(seq, seq.sample(logits.subarray(b * vocab, (b + 1) * vocab))));
  }
}

// --- generate and stream ------------------------------------------------------------------------------

// The prompt's ids: text through the tokenizer, messages through its chat template, ids checked.
export function promptIds(where: string, model: LlamaModel, prompt: unknown, tokenizer: TextTokenizer | undefined): number[] {
  let ids: ArrayLike<number>;
  if (typeof prompt === 'string' || (Array.isArray(prompt) && prompt.length > 0 && typeof prompt[0] === 'object' && !Array.isArray(prompt[0]))) {
    if (!tokenizer) throw new TypeError(`${where}: a text prompt needs options.tokenizer (loadTokenizer(checkpoint directory))`);
    if (typeof prompt === 'string') ids = tokenizer.encode(prompt);
    else {
      checkMessages(where, prompt);
      ids = tokenizer.encodeChat(prompt);
    }
    if (ids.length === 0) throw new RangeError(`${where}: the prompt has no tokens`);
  } else {
    ids = prompt as ArrayLike<number>;
  }
  return Array.from(tokenBatch(where, model, ids instanceof Int32Array ? ids : Array.from(ids)).ids);
}

function isBatch(input: unknown): input is readonly (readonly number[] | Int32Array)[] {
  return Array.isArray(input) && input.length > 0 && (Array.isArray(input[0]) || input[0] instanceof Int32Array);
}

// Runs the sequences to their end on one DecodeBatch, yielding every token. Between steps the event loop
// gets a turn when it has waited long enough (yieldIfBusy: timers, I/O and the abort signal run), and a
// model disposed meanwhile ends the run with a TypeError.
async function* runToEnd(where: string, model: LlamaModel, seqs: readonly Sequence[], signal: AbortSignal | undefined): AsyncGenerator<TokenEvent> {
  signal?.throwIfAborted();
  model.lifetime.check(where);
  const live = seqs.filter((s) => !s.done);
  if (live.length === 0) return;
  const max = model.config.maxPositionEmbeddings;
  const longest = live.reduce((a, s) => (s.prompt.length + s.maxNewTokens > a.prompt.length + a.maxNewTokens ? s : a));
  if (longest.prompt.length + longest.maxNewTokens > max) {
    throw new RangeError(`${where}: ${longest.prompt.length} prompt tokens + maxNewTokens ${longest.maxNewTokens} are more than the model's ${max} positions (max_position_embeddings)`);
  }
  const batch = new DecodeBatch(model, live.length, longest.prompt.length + longest.maxNewTokens, `${where}: maxNewTokens ${longest.maxNewTokens}`);
  try {
    yield* await batch.add(live);
    let steps = 1;
    while (batch.active.length > 0) {
      await yieldIfBusy();
      signal?.throwIfAborted();
      if (model.disposed) throw new TypeError(`${where}: the model was disposed after ${steps} of ${longest.maxNewTokens} new tokens`);
      yield* await batch.step();
      steps++;
    }
  } finally {
    batch.cache.dispose(); // on a GPU: its device memory now, not at collection
  }
}

/**
 * Generates a continuation.
 * - text or chat messages (with options.tokenizer) -> the generated text (without the prompt);
 * - ids number[] / Int32Array -> the prompt followed by the generated ids (greedy by default);
 * - a batch number[][] (any lengths) -> one such list per sequence, decoded together.
 */
export function generate(model: Model, prompt: string | readonly ChatMessage[], opts: GenerateOptions): Promise<string>;
export function generate(model: Model, ids: readonly number[] | Int32Array, opts: GenerateOptions): Promise<number[]>;
export function generate(model: Model, ids: readonly (readonly number[])[], opts: GenerateOptions): Promise<number[][]>;
export async function generate(model: Model, input: Prompt | readonly (readonly number[])[], opts: GenerateOptions): Promise<string | number[] | number[][]> {
  const llama = llamaOnly('generate', model);
  const text = typeof input === 'string' || (Array.isArray(input) && input.length > 0 && typeof input[0] === 'object' && !Array.isArray(input[0]));
  const options = resolveSequenceOptions('generate', opts, text, llama.config.vocabSize);
  const rows = isBatch(input) ? input.map((row) => promptIds('generate', llama, row, undefined)) : [promptIds('generate', llama, input, options.tokenizer)];
  const seqs = rows.map((ids) => new Sequence(ids, options));
  let out = '';
  for await (const event of runToEnd('generate', llama, seqs, opts.signal)) out += event.text;
  if (text) return out;
  const ids = seqs.map((s) => [...s.prompt, ...s.output]);
  return isBatch(input) ? ids : ids[0];
}

/**
 * Generates text piece by piece as tokens are produced: `for await (const piece of stream(model, prompt,
 * { tokenizer, maxNewTokens }))`. A piece is whole characters (a character split over tokens comes out
 * whole) and never part of a stop string. Aborting options.signal (or leaving the loop) stops it.
 */
export async function* stream(model: Model, prompt: Prompt, opts: GenerateOptions): AsyncGenerator<string, FinishReason | undefined> {
  const llama = llamaOnly('stream', model);
  const options = resolveSequenceOptions('stream', opts, true, llama.config.vocabSize);
  if (!options.tokenizer) throw new TypeError('stream: needs options.tokenizer to turn tokens into text (loadTokenizer(checkpoint directory))');
  const seq = new Sequence(promptIds('stream', llama, prompt, options.tokenizer), options);
  for await (const event of runToEnd('stream', llama, [seq], opts.signal)) if (event.text !== '') yield event.text;
  return seq.finishReason;
}
