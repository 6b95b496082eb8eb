// generate() and stream(): each sampling option on hand-made logits (the draws against the
// probabilities the options leave), seeds, stop ids and strings, streaming, cancellation, chat, batches
// of different lengths; on a random Llama with the tokenizer's 32000 ids.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LlamaModel, type Sampling, type TextTokenizer, forward, generate, loadModel, loadTokenizer, resolveSampling, sampleToken, stream } from '../src/index.js';
import { Sequence, resolveSequenceOptions } from '../src/generate.js';
import { observeLinear } from '../src/models/layers.js';
import { mulberry32 } from '../src/models/random.js';
import { writeTextCheckpoint } from './text_checkpoint.js';

const dir = mkdtempSync(join(tmpdir(), 'gemmkit-generate-'));
let model: LlamaModel;
let tokenizer: TextTokenizer;
beforeAll(async () => {
  writeTextCheckpoint(dir, undefined, { dtype: 'f32', seed: 5 });
  model = (await loadModel(dir)) as LlamaModel;
  tokenizer = loadTokenizer(dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// --- sampling on hand-made logits ----------------------------------------------------------------------

const NO_HISTORY = { outputCounts: new Map<number, number>(), seen: new Set<number>() };

/** Logits whose softmax is `probs` (at temperature 1). */
function logitsOf(probs: number[]): Float32Array {
  return Float32Array.from(probs, (p) => (p > 0 ? Math.log(p) : -Infinity));
}

/** How often each id comes out of `draws` samples. */
function frequencies(probs: number[], options: Partial<Sampling>, draws = 20000): number[] {
  const s = { ...resolveSampling('test', { temperature: 1, seed: 1 }), ...options };
  const random = mulberry32(7);
  const counts = new Array<number>(probs.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampleToken(logitsOf(probs), s, random, NO_HISTORY)]++;
  return counts.map((c) => c / draws);
}

/** Each frequency within 0.015 of the wanted probability (20000 draws: about 4.5 standard deviations). */
function expectFrequencies(got: number[], want: number[]): void {
  got.forEach((g, i) => expect(Math.abs(g - want[i]), `id ${i}: ${g.toFixed(4)} vs ${want[i].toFixed(4)} (${got.map((x) => x.toFixed(3)).join(' ')})`).toBeLessThan(0.015));
}

const P = [0.05, 0.4, 0.1, 0.25, 0.2]; // sorted: 1 (0.4), 3 (0.25), 4 (0.2), 2 (0.1), 0 (0.05)

describe('sampling options', () => {
  it('temperature 0 is the argmax (lowest id on ties, NaN never); the draws follow softmax(logits / T)', () => {
    const greedy = resolveSampling('t', {});
    expect(greedy.temperature).toBe(0);
    expect(sampleToken(Float32Array.of(1, 3, 3, 2), greedy, Math.random, NO_HISTORY)).toBe(1);
    expect(sampleToken(Float32Array.of(NaN, 1, NaN), greedy, Math.random, NO_HISTORY)).toBe(1);
    expectFrequencies(frequencies(P, {}), P);
    // T = 2: probabilities proportional to sqrt(P).
    const sq = P.map(Math.sqrt), z = sq.reduce((a, b) => a + b);
    expectFrequencies(frequencies(P, { temperature: 2 }), sq.map((x) => x / z));
    // T = 0.25: P^4, nearly all on id 1.
    const p4 = P.map((x) => x ** 4), z4 = p4.reduce((a, b) => a + b);
    expectFrequencies(frequencies(P, { temperature: 0.25 }), p4.map((x) => x / z4));
  });

  it('top-k keeps the k most likely, renormalised', () => {
    expectFrequencies(frequencies(P, { topK: 2 }), [0, 0.4 / 0.65, 0, 0.25 / 0.65, 0]);
    expectFrequencies(frequencies(P, { topK: 1 }), [0, 1, 0, 0, 0]);
    expectFrequencies(frequencies(P, { topK: 5 }), P);
  });

  it('top-p keeps the fewest most likely tokens whose probabilities reach p', () => {
    expectFrequencies(frequencies(P, { topP: 0.65 }), [0, 0.4 / 0.65, 0, 0.25 / 0.65, 0]);
    expectFrequencies(frequencies(P, { topP: 0.66 }), [0, 0.4 / 0.85, 0, 0.25 / 0.85, 0.2 / 0.85]);
    expectFrequencies(frequencies(P, { topP: 0.3 }), [0, 1, 0, 0, 0]);
    // After top-k, top-p counts within the k kept: 0.4 alone is 0.62 of {0.4, 0.25}, past 0.5.
    expectFrequencies(frequencies(P, { topK: 2, topP: 0.5 }), [0, 1, 0, 0, 0]);
  });

  it('min-p drops tokens below p times the most likely one', () => {
    expectFrequencies(frequencies(P, { minP: 0.45 }), [0, 0.4 / 0.85, 0, 0.25 / 0.85, 0.2 / 0.85]); // >= 0.18
    expectFrequencies(frequencies(P, { minP: 0.55 }), [0, 0.4 / 0.65, 0, 0.25 / 0.65, 0]);
    expectFrequencies(frequencies(P, { minP: 1 }), [0, 1, 0, 0, 0]);
  });

  it('repetition, frequency and presence penalties move the logits of seen tokens', () => {
    const s = resolveSampling('t', { repetitionPenalty: 2 });
    const logits = Float32Array.of(4, 3, -1, -1.5);
    expect(sampleToken(logits, s, Math.random, { outputCounts: new Map(), seen: new Set([0, 2]) })).toBe(1); // 4 / 2 < 3
    expect(Array.from(logits)).toEqual([2, 3, -2, -1.5]); // a negative logit is multiplied
    const f = resolveSampling('t', { frequencyPenalty: 0.5, presencePenalty: 0.25 });
    const l2 = Float32Array.of(4, 3, 0);
    expect(sampleToken(l2, f, Math.random, { outputCounts: new Map([[0, 3], [2, 1]]), seen: new Set() })).toBe(1);
    expect(Array.from(l2)).toEqual([4 - 1.5 - 0.25, 3, -0.75]);
  });

  it('option errors name the option', () => {
    expect(() => resolveSampling('g', { temperature: -1 })).toThrow(/g: temperature must be a number >= 0, got -1/);
    expect(() => resolveSampling('g', { topK: 1.5 })).toThrow(/topK must be an integer >= 0/);
    expect(() => resolveSampling('g', { topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => resolveSampling('g', { minP: 2 })).toThrow(/minP must be in \[0, 1\]/);
    expect(() => resolveSampling('g', { repetitionPenalty: 0 })).toThrow(/repetitionPenalty must be a number > 0/);
    expect(() => resolveSampling('g', { frequencyPenalty: NaN })).toThrow(/frequencyPenalty must be a finite number/);
    expect(() => resolveSampling('g', { seed: 0.5 })).toThrow(/seed must be a safe integer/);
    expect(() => resolveSampling('g', { temperature: '1' as never })).toThrow(/temperature must be a number/);
  });
});

// --- generate and stream on a model --------------------------------------------------------------------

const SAMPLED = { temperature: 1, topK: 40, topP: 0.95, minP: 0.01, repetitionPenalty: 1.1 };

describe('generate', () => {
  it('greedy text is the greedy ids decoded after the prompt', async () => {
    const ids = await generate(model, tokenizer.encode('Hello world'), { maxNewTokens: 12 });
    const text = await generate(model, 'Hello world', { tokenizer, maxNewTokens: 12 });
    const prompt = tokenizer.encode('Hello world');
    expect(ids.slice(0, prompt.length)).toEqual(prompt);
    expect(text).toBe(tokenizer.decode(ids).slice(tokenizer.decode(prompt).length));
    expect(text.length).toBeGreaterThan(0);
  });

  it('the same seed gives the same output; other seeds, other outputs', async () => {
    const opts = { tokenizer, maxNewTokens: 16, ...SAMPLED };
    const a = await generate(model, 'Once upon a time', { ...opts, seed: 42 });
    expect(await generate(model, 'Once upon a time', { ...opts, seed: 42 })).toBe(a);
    const others = await Promise.all([1, 2, 3].map((seed) => generate(model, 'Once upon a time', { ...opts, seed })));
    for (const o of others) expect(o).not.toBe(a);
    const greedy = await generate(model, 'Once upon a time', { tokenizer, maxNewTokens: 16 });
    expect(a).not.toBe(greedy);
    // ids too, and seeds above 2^32 count their high bits
    const idsA = await generate(model, [1, 500, 600], { maxNewTokens: 10, temperature: 1, seed: 2 ** 40 });
    expect(await generate(model, [1, 500, 600], { maxNewTokens: 10, temperature: 1, seed: 2 ** 40 })).toEqual(idsA);
    expect(await generate(model, [1, 500, 600], { maxNewTokens: 10, temperature: 1, seed: 2 ** 41 })).not.toEqual(idsA);
    // Without a seed every sequence draws its own: a batch of one prompt twice gives two outputs.
    const [x, y] = await generate(model, [[1, 500, 600], [1, 500, 600]], { maxNewTokens: 10, temperature: 1 });
    expect(x).not.toEqual(y);
    const [u, v] = await generate(model, [[1, 500, 600], [1, 500, 600]], { maxNewTokens: 10, temperature: 1, seed: 5 });
    expect(u).toEqual(v);
  });

  it('stop ids end a sequence (kept in the ids, not in the text); maxNewTokens ends it too', async () => {
    const greedy = await generate(model, [1, 22557], { maxNewTokens: 10 });
    const stopAt = greedy[5]; // the fourth new token
    const first = greedy.indexOf(stopAt, 2);
    expect(await generate(model, [1, 22557], { maxNewTokens: 10, stopIds: [stopAt] })).toEqual(greedy.slice(0, first + 1));
    const text = await generate(model, 'Hello', { tokenizer, maxNewTokens: 10, stopIds: [stopAt] });
    expect(text).toBe(tokenizer.decode(greedy.slice(0, first)).slice(tokenizer.decode([1, 22557]).length));
    expect(await generate(model, [1, 22557], { maxNewTokens: 3 })).toHaveLength(5);
    expect(await generate(model, [1, 22557], { maxNewTokens: 0 })).toEqual([1, 22557]);
  });

  it('stop strings cut the text before them', async () => {
    const full = await generate(model, 'Hello', { tokenizer, maxNewTokens: 16 });
    const stop = full.slice(6, 9); // three characters in the middle
    const cut = full.indexOf(stop);
    expect(await generate(model, 'Hello', { tokenizer, maxNewTokens: 16, stop })).toBe(full.slice(0, cut));
    expect(await generate(model, 'Hello', { tokenizer, maxNewTokens: 16, stop: ['never appears', stop] })).toBe(full.slice(0, cut));
    expect(await generate(model, 'Hello', { tokenizer, maxNewTokens: 16, stop: 'never appears' })).toBe(full);
  });

  it('chat messages go through the chat template', async () => {
    const messages = [{ role: 'user', content: 'Hi there' }];
    const viaText = await generate(model, messages, { tokenizer, maxNewTokens: 8 });
    const prompt = tokenizer.encodeChat(messages);
    const ids = await generate(model, prompt, { maxNewTokens: 8 });
    expect(viaText).toBe(tokenizer.decode(ids).slice(tokenizer.decode(prompt).length));
  });

  it('a batch of prompts of different lengths decodes like each alone', async () => {
    const prompts = [[1, 22557, 1526, 28725], [1, 500], [1, 9, 8, 7, 6, 5, 4, 3]];
    const together = await generate(model, prompts, { maxNewTokens: 6 });
    for (let i = 0; i < prompts.length; i++) expect(together[i]).toEqual(await generate(model, prompts[i], { maxNewTokens: 6 }));
  });

  it('errors', async () => {
    await expect(generate(model, 'Hello', { maxNewTokens: 4 })).rejects.toThrow(/generate: a text prompt needs options.tokenizer/);
    await expect(generate(model, [1, 2], { maxNewTokens: 4, stop: 'x' })).rejects.toThrow(/stop strings need text/);
    await expect(generate(model, 'Hi', { tokenizer, maxNewTokens: 4, stop: [''] })).rejects.toThrow(/stop must be a non-empty string/);
    await expect(generate(model, [1, 2], { maxNewTokens: 4, stopIds: [-1] })).rejects.toThrow(/generate: stopIds\[0\] must be an integer in \[0, 32000\), got -1/);
    await expect(generate(model, [1, 2], { maxNewTokens: 4, topk: 3 } as never)).rejects.toThrow(/generate: unknown option 'topk'/);
    await expect(generate(model, [1, 2], { maxNewTokens: 4, eosTokenId: 32000 })).rejects.toThrow(/eosTokenId must be an integer in \[0, 32000\)/);
    await expect(generate(model, [1, 32000], { maxNewTokens: 4 })).rejects.toThrow(/token 1 of sequence 0 is 32000/);
    await expect(generate(model, [[1], [2, 99999]], { maxNewTokens: 4 })).rejects.toThrow(/is 99999/);
    await expect(generate(model, [{ role: 'user' }] as never, { tokenizer, maxNewTokens: 4 })).rejects.toThrow(/messages\[0\] must be/);
    await expect(generate(model, 'Hi', { tokenizer, maxNewTokens: 4, temperature: -1 })).rejects.toThrow(/temperature must be/);
    await expect(generate(model, 'Hi', { tokenizer, maxNewTokens: 4, signal: 'x' as never })).rejects.toThrow(/signal must be an AbortSignal/);
  });
});

describe('stream', () => {
  it('yields pieces that add up to generate()\'s text, and returns the finish reason', async () => {
    const opts = { tokenizer, maxNewTokens: 20, ...SAMPLED, seed: 9 };
    const pieces: string[] = [];
    const it = stream(model, 'The weather today', opts);
    let r = await it.next();
    while (!r.done) {
      pieces.push(r.value);
      r = await it.next();
    }
    expect(r.value).toBe('length');
    expect(pieces.length).toBeGreaterThan(3);
    for (const p of pieces) expect(p).not.toBe('');
    expect(pieces.join('')).toBe(await generate(model, 'The weather today', opts));
    const stopped = stream(model, 'The weather today', { ...opts, stop: pieces.slice(2, 4).join('') });
    const got: string[] = [];
    for await (const p of stopped) got.push(p);
    expect(got.join('')).toBe(pieces.slice(0, 2).join(''));
  });

  it('a sequence hands out a character split over byte tokens whole', () => {
    const seq = new Sequence([1], resolveSequenceOptions('t', { tokenizer, maxNewTokens: 10 }, true, 32000));
    const ids = tokenizer.encode('a 🦙 b', { addSpecialTokens: false });
    const out = ids.map((id) => seq.accept(id));
    expect(out.join('')).toBe('a 🦙 b');
    expect(out).toContain('🦙');
    for (const p of out) expect(p).not.toContain('\uFFFD');
  });

  it('aborting the signal stops it between steps and rejects with the reason; leaving the loop stops the model', async () => {
    const controller = new AbortController();
    const got: string[] = [];
    const run = (async () => {
      for await (const p of stream(model, 'Hello', { tokenizer, maxNewTokens: 200, temperature: 1, seed: 3, signal: controller.signal })) {
        got.push(p);
        if (got.length === 3) controller.abort();
      }
    })();
    await expect(run).rejects.toThrow(/aborted/);
    expect(got.length).toBe(3);
    const aborted = AbortSignal.abort(new Error('stopped early'));
    await expect(generate(model, 'Hello', { tokenizer, maxNewTokens: 5, signal: aborted })).rejects.toThrow(/stopped early/);

    let gemms = 0;
    observeLinear(() => gemms++);
    try {
      for await (const p of stream(model, 'Hello', { tokenizer, maxNewTokens: 200, temperature: 1, seed: 3 })) if (p) break;
      const after = gemms;
      await forward(model, [1]); // the next forward anyone runs: the stream ran no more
      expect(gemms).toBe(after + 4 * 2 + 1);
      expect(after).toBeLessThan(10 * (4 * 2 + 1));
    } finally {
      observeLinear(undefined);
    }
  });

  it('needs a tokenizer', async () => {
    const it = stream(model, [1, 2], { maxNewTokens: 3 });
    await expect(it.next()).rejects.toThrow(/stream: needs options.tokenizer/);
  });
});
