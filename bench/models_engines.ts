// What bench/models.bench.ts and bench/models_decode.ts share: the two engines behind one interface, the
// prompt ids, and one timed round (a prefill of a new sequence, then greedy decode steps).
import { type KVCache, type LlamaModel, createKVCache, forward } from '../src/index.js';
import type { LlamaCppModel } from './peers/llama_cpp.js';

/**
 * The bench's Llama-style decoder as a Hugging Face config.json (hidden 1024, 8 layers, intermediate 2816,
 * 16 heads / 4 KV heads, vocab 32000; `quick`: a small one for smoke runs).
 */
export function benchLlamaConfig(quick: boolean): Record<string, unknown> {
  const hf = quick
    ? { hidden_size: 256, intermediate_size: 704, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 4096 }
    : { hidden_size: 1024, intermediate_size: 2816, num_attention_heads: 16, num_key_value_heads: 4, num_hidden_layers: 8, vocab_size: 32000 };
  return { ...hf, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, model_type: 'llama' };
}

/** The ids of a prompt of `n` tokens (the same for both engines). */
export const promptIds = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => (i * 7919 + 3) % vocab);

export const argmaxOf = (a: Float32Array) => {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
};

export interface EngineSteps {
  /** Starts a new, empty sequence (not timed: a KV cache allocated or cleared). */
  newSequence(): Promise<void>;
  /** Prefill of `ids` into the sequence; the next token. */
  prefill(ids: number[]): Promise<number>;
  /** One decode step after the last prefill or decode; the next token. */
  decode(id: number): Promise<number>;
}

export function gemmkitEngine(model: LlamaModel, capacity: number): EngineSteps {
  let cache: KVCache | undefined;
  return {
    async newSequence() {
      cache = createKVCache(model, 1, capacity);
    },
    async prefill(ids) {
      return argmaxOf((await forward(model, ids, { cache, logits: 'last' })).data as Float32Array);
    },
    async decode(id) {
      return argmaxOf((await forward(model, [id], { cache, logits: 'last' })).data as Float32Array);
    },
  };
}

export function llamaCppEngine(m: LlamaCppModel): EngineSteps {
  return { newSequence: () => m.newSequence(), prefill: (ids) => m.prefill(ids), decode: (id) => m.decode(id) };
}

export interface Timings {
  /** ms per prefill, by prompt length (each one sample per round). */
  prefill: Map<number, number[]>;
  /** ms per decode step (decodeSteps samples per round). */
  decode: number[];
}

/** A new sequence, a timed prefill of `promptLen` ids, then `decodeSteps` timed greedy decode steps. */
export async function timeRound(e: EngineSteps, promptLen: number, vocab: number, t: Timings, decodeSteps: number): Promise<void> {
  const ids = promptIds(promptLen, vocab);
  await e.newSequence();
  let t0 = performance.now();
  let next = await e.prefill(ids);
  const ms = performance.now() - t0;
  t.prefill.set(promptLen, [...(t.prefill.get(promptLen) ?? []), ms]);
  for (let s = 0; s < decodeSteps; s++) {
    t0 = performance.now();
    next = await e.decode(next);
    t.decode.push(performance.now() - t0);
  }
}
