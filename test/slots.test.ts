// KV cache slots: each slot of a cache holds one sequence with its own length, and forward(model, ids,
// { cache, slots }) runs row b on slot slots[b] at that slot's positions. The foundation of continuous
// batching: one step over sequences that started at different times gives each the logits it gets alone.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LlamaModel, createKVCache, forward, loadModel, writeRandomLlamaCheckpoint } from '../src/index.js';
import { observeLinear } from '../src/models/layers.js';

const HF = {
  hidden_size: 64, intermediate_size: 96, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2,
  rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: 77, tie_word_embeddings: false,
};
const VOCAB = 77;
const dir = mkdtempSync(join(tmpdir(), 'gemmkit-slots-'));
let model: LlamaModel;
beforeAll(async () => {
  writeRandomLlamaCheckpoint(dir, HF, { dtype: 'f32', seed: 11 });
  model = (await loadModel(dir)) as LlamaModel;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function relError(got: Float32Array, want: Float32Array): number {
  let err = 0, mag = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    mag = Math.max(mag, Math.abs(want[i]));
  }
  return err / mag;
}

function expectClose(got: Float32Array, want: Float32Array, label: string): void {
  expect(got.length, label).toBe(want.length);
  const e = relError(got, want);
  if (!(e <= 1e-5)) throw new Error(`${label}: normwise relative error ${e.toExponential(2)} > 1e-5`);
}

// Sequence i's prompt and the tokens it is fed afterwards, one per decode step.
const PROMPTS = [[3, 14, 15, 9, 26, 5, 35], [8, 9], [76, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [42]];
const FEED = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]];

// The logits each sequence gets alone: after its prompt, then after each fed token.
async function alone(i: number): Promise<Float32Array[]> {
  const cache = createKVCache(model, 1, 32);
  const out = [(await forward(model, PROMPTS[i], { cache, logits: 'last' })).toFloat32()];
  for (const t of FEED[i]) out.push((await forward(model, [t], { cache, logits: 'last' })).toFloat32());
  return out;
}

describe('KV cache slots', () => {
  it('a batched step over slots at different lengths gives each sequence its logits alone', async () => {
    const want = await Promise.all(PROMPTS.map((_, i) => alone(i)));
    const cache = createKVCache(model, 5, 32);
    const slotOf = [3, 0, 4, 1]; // sequence i lives in slot slotOf[i]; slot 2 stays empty
    // Sequences 0 and 1 start; they take two steps together before 2 joins.
    for (const i of [0, 1]) {
      const first = (await forward(model, [PROMPTS[i]], { cache, slots: [slotOf[i]], logits: 'last' })).toFloat32();
      expectClose(first, want[i][0], `prefill of sequence ${i}`);
    }
    expect(Array.from(cache.lengths)).toEqual([2, 0, 0, 7, 0]);
    expect(() => cache.length).toThrow(/the slots have different lengths \(2, 0, 0, 7, 0\); read cache.lengths\[slot\]/);
    const fed = [0, 0, 0, 0];
    async function step(seqs: number[]): Promise<void> {
      const logits = (await forward(model, seqs.map((i) => [FEED[i][fed[i]]]), { cache, slots: seqs.map((i) => slotOf[i]), logits: 'last' })).toFloat32();
      expect(logits.length).toBe(seqs.length * VOCAB);
      seqs.forEach((i, b) => {
        fed[i]++;
        expectClose(logits.subarray(b * VOCAB, (b + 1) * VOCAB), want[i][fed[i]], `sequence ${i} after ${fed[i]} fed tokens (row ${b} of ${seqs.length})`);
      });
    }
    await step([0, 1]);
    await step([1, 0]); // row order does not matter
    const joined = (await forward(model, [PROMPTS[2]], { cache, slots: [slotOf[2]], logits: 'last' })).toFloat32();
    expectClose(joined, want[2][0], 'prefill of sequence 2 while 0 and 1 are running');
    await step([0, 2, 1]);
    // Sequence 1 leaves; its slot is reset and sequence 3 takes it.
    cache.reset(slotOf[1]);
    slotOf[3] = slotOf[1];
    expect(cache.lengths[slotOf[3]]).toBe(0);
    expectClose((await forward(model, [PROMPTS[3]], { cache, slots: [slotOf[3]], logits: 'last' })).toFloat32(), want[3][0], 'prefill of sequence 3 in a reused slot');
    await step([3, 2, 0]);
    await step([2, 3]);
    expect(Array.from(cache.lengths)).toEqual([3, 0, 0, 7 + 4, 13 + 3]);
  });

  it('a prefill of several sequences of one length on chosen slots equals each alone', async () => {
    const cache = createKVCache(model, 3, 16);
    const rows = [[5, 6, 7], [70, 1, 9]];
    const both = (await forward(model, rows, { cache, slots: [2, 0] })).toFloat32(); // [2, 3, vocab]
    for (let b = 0; b < 2; b++) {
      const single = (await forward(model, rows[b])).toFloat32();
      expectClose(both.subarray(b * 3 * VOCAB, (b + 1) * 3 * VOCAB), single, `row ${b}`);
    }
    expect(Array.from(cache.lengths)).toEqual([3, 0, 3]);
  });

  it('one decode step over N sequences runs each weight GEMM once with M = N', async () => {
    const cache = createKVCache(model, 4, 16);
    for (const [slot, prompt] of [[0, [1, 2, 3]], [1, [4]], [3, [5, 6, 7, 8, 9]]] as const) await forward(model, [[...prompt]], { cache, slots: [slot] });
    const ms: number[] = [];
    observeLinear((call) => ms.push(call.x.shape[0]));
    try {
      await forward(model, [[10], [11], [12]], { cache, slots: [3, 0, 1], logits: 'last' });
    } finally {
      observeLinear(undefined);
    }
    expect(ms.length).toBe(4 * HF.num_hidden_layers + 1); // q/k/v (one GEMM), o, gate/up (one GEMM), down per layer, then the LM head
    expect(new Set(ms)).toEqual(new Set([3]));
  });

  it('default slots 0..batch-1 and cache.length when every slot agrees', async () => {
    const cache = createKVCache(model, 2, 8);
    expect(cache.slots).toBe(2);
    expect(cache.length).toBe(0);
    await forward(model, [[1, 2], [3, 4]], { cache });
    expect(cache.length).toBe(2);
    await forward(model, [[5], [6]], { cache });
    expect(Array.from(cache.lengths)).toEqual([3, 3]);
    // Fewer rows than slots: the first slots run, the others stay.
    await forward(model, [7], { cache });
    expect(Array.from(cache.lengths)).toEqual([4, 3]);
    cache.length = 1; // a rewind of every slot
    expect(Array.from(cache.lengths)).toEqual([1, 1]);
    cache.reset();
    expect(cache.length).toBe(0);
  });

  it('errors: slots out of range, repeated or miscounted; a full slot; slots without a cache', async () => {
    const cache = createKVCache(model, 3, 4);
    await expect(forward(model, [[1], [2]], { cache, slots: [0, 3] })).rejects.toThrow(/slots\[1\] is 3; slots are integers in \[0, 3\)/);
    await expect(forward(model, [[1], [2]], { cache, slots: [1, 1] })).rejects.toThrow(/slot 1 appears twice in slots/);
    await expect(forward(model, [[1], [2]], { cache, slots: [1] })).rejects.toThrow(/slots has 1 entries but the input has 2 sequences/);
    await expect(forward(model, [1], { cache, slots: [-1] })).rejects.toThrow(/slots\[0\] is -1/);
    await expect(forward(model, [1], { cache, slots: [0.5] })).rejects.toThrow(/slots\[0\] is 0.5/);
    await expect(forward(model, [1], { cache, slots: 'x' as never })).rejects.toThrow(/slots must be an array of cache slot indices/);
    await expect(forward(model, [1], { slots: [0] })).rejects.toThrow(/slots needs a cache/);
    await expect(forward(model, [[1], [2], [3], [4]], { cache })).rejects.toThrow(/the cache holds 3 sequences but the input has 4/);
    await forward(model, [[1, 2, 3]], { cache, slots: [2] });
    await expect(forward(model, [[4], [5]], { cache, slots: [0, 2] })).resolves.toBeDefined(); // slot 2 reaches 4 = capacity
    await expect(forward(model, [[6], [7]], { cache, slots: [0, 2] })).rejects.toThrow(/4 cached \+ 1 new positions exceed the cache capacity of 4 \(slot 2\)/);
    expect(Array.from(cache.lengths)).toEqual([1, 0, 4]); // a refused forward changes no length
    expect(() => cache.reset(3)).toThrow(/slot must be an integer in \[0, 3\), got 3/);
    expect(() => { cache.length = 5; }).toThrow(/length must be an integer in \[0, 4\], got 5/);
  });
});
