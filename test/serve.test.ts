// The HTTP server on an ephemeral loopback port: the OpenAI-style endpoints as JSON and as event streams
// (their text equal to generate()'s with the same options), stop conditions, /health, /v1/models,
// /metrics; continuous batching (requests served together, joining and leaving mid-flight, give what
// each gives alone); the queue limit (429); bad requests (400/404/415) after which the server keeps
// serving.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LlamaModel, type TextTokenizer, generate, loadModel, loadTokenizer, writeRandomLlamaCheckpoint } from '../src/index.js';
import { type GemmkitServer, type ServeOptions, startServer } from '../src/serve/index.js';
import { eventually, get, post, stream, streamedText } from './serve_helpers.js';
import { LLAMA2_TOKENIZER_DIR, TINY_TEXT_LLAMA, writeTextCheckpoint } from './text_checkpoint.js';

const dir = mkdtempSync(join(tmpdir(), 'gemmkit-serve-'));
let model: LlamaModel;
let tokenizer: TextTokenizer;
beforeAll(async () => {
  writeTextCheckpoint(dir, undefined, { dtype: 'f32', seed: 8 });
  model = (await loadModel(dir)) as LlamaModel;
  tokenizer = loadTokenizer(dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function withServer(opts: ServeOptions, body: (server: GemmkitServer, base: string) => Promise<void>): Promise<void> {
  const server = await startServer(model, tokenizer, { port: 0, contextLength: 256, modelName: 'tiny', ...opts });
  try {
    await body(server, server.url);
  } finally {
    await server.shutdown(0);
  }
}

describe('endpoints', () => {
  it('/v1/completions answers JSON with the text generate() gives for the same options', async () => {
    await withServer({}, async (_, base) => {
      const r = await post(base, '/v1/completions', { model: 'tiny', prompt: 'Hello world', max_tokens: 12, temperature: 0.7, top_p: 0.9, top_k: 50, seed: 4 });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ object: 'text_completion', model: 'tiny', usage: { prompt_tokens: 3, completion_tokens: 12, total_tokens: 15 } });
      expect(r.body.id).toMatch(/^cmpl-[0-9a-f]{32}$/);
      expect(r.body.choices).toHaveLength(1);
      expect(r.body.choices[0].finish_reason).toBe('length');
      expect(r.body.choices[0].text).toBe(await generate(model, 'Hello world', { tokenizer, maxNewTokens: 12, temperature: 0.7, topP: 0.9, topK: 50, seed: 4 }));
      // token ids as the prompt; temperature 0 is greedy
      const ids = await post(base, '/v1/completions', { prompt: [1, 22557, 1526], max_tokens: 6, temperature: 0 });
      expect(ids.status).toBe(200);
      expect(ids.body.choices[0].text).toBe(await generate(model, 'Hello world', { tokenizer, maxNewTokens: 6 }));
      // OpenAI's default of 16 tokens
      expect((await post(base, '/v1/completions', { prompt: 'Hi' })).body.usage.completion_tokens).toBe(16);
    });
  });

  it('/v1/chat/completions applies the chat template', async () => {
    await withServer({}, async (_, base) => {
      const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi there' }];
      const r = await post(base, '/v1/chat/completions', { messages, max_tokens: 8, seed: 1 });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ object: 'chat.completion', model: 'tiny', choices: [{ index: 0, message: { role: 'assistant' }, finish_reason: 'length' }] });
      expect(r.body.id).toMatch(/^chatcmpl-/);
      expect(r.body.usage.prompt_tokens).toBe(tokenizer.encodeChat(messages).length);
      expect(r.body.choices[0].message.content).toBe(await generate(model, messages, { tokenizer, maxNewTokens: 8, temperature: 1, seed: 1 }));
      // content as text parts; max_completion_tokens
      const parts = await post(base, '/v1/chat/completions', {
        messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi ' }, { type: 'text', text: 'there' }] }],
        max_completion_tokens: 8, seed: 1,
      });
      expect(parts.body.choices[0].message.content).toBe(r.body.choices[0].message.content);
    });
  });

  it('"stream": true sends the same text as events, then the finish reason, usage when asked, and [DONE]', async () => {
    await withServer({}, async (_, base) => {
      const body = { prompt: 'Once upon a time', max_tokens: 20, seed: 7, temperature: 0.9 };
      const whole = await post(base, '/v1/completions', body);
      const s = await stream(base, '/v1/completions', { ...body, stream_options: { include_usage: true } });
      expect(s.status).toBe(200);
      expect(s.events.at(-1)).toBe('[DONE]');
      const usage = s.events.at(-2);
      expect(usage).toMatchObject({ object: 'text_completion', choices: [], usage: whole.body.usage });
      expect(s.events.at(-3).choices[0]).toMatchObject({ text: '', finish_reason: 'length' });
      expect(s.events.length).toBeGreaterThan(5);
      expect(streamedText(s.events)).toBe(whole.body.choices[0].text);
      for (const e of s.events.slice(0, -3)) expect(e.choices[0].finish_reason).toBeNull();

      const chat = await stream(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10, seed: 2 });
      expect(chat.events[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
      expect(chat.events.at(-2).choices[0]).toMatchObject({ delta: {}, finish_reason: 'length' });
      expect(chat.events.at(-1)).toBe('[DONE]');
      expect(chat.events.every((e) => e === '[DONE]' || e.usage === undefined)).toBe(true); // no usage unless asked
      const chatWhole = await post(base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10, seed: 2 });
      expect(streamedText(chat.events)).toBe(chatWhole.body.choices[0].message.content);
    });
  });

  it('stop strings and stop_token_ids end with finish_reason "stop"', async () => {
    await withServer({}, async (_, base) => {
      const full = await post(base, '/v1/completions', { prompt: 'Hello', max_tokens: 16, temperature: 0 });
      const text: string = full.body.choices[0].text;
      const stop = text.slice(5, 8);
      const stopped = await post(base, '/v1/completions', { prompt: 'Hello', max_tokens: 16, temperature: 0, stop: [stop] });
      expect(stopped.body.choices[0]).toMatchObject({ text: text.slice(0, text.indexOf(stop)), finish_reason: 'stop' });
      const streamed = await stream(base, '/v1/completions', { prompt: 'Hello', max_tokens: 16, temperature: 0, stop });
      expect(streamedText(streamed.events)).toBe(text.slice(0, text.indexOf(stop)));
      expect(streamed.events.at(-2).choices[0].finish_reason).toBe('stop');
      const greedyIds = await generate(model, tokenizer.encode('Hello'), { maxNewTokens: 16 });
      const stopId = greedyIds[5];
      const byId = await post(base, '/v1/completions', { prompt: 'Hello', max_tokens: 16, temperature: 0, stop_token_ids: [stopId] });
      expect(byId.body.choices[0].finish_reason).toBe('stop');
      expect(byId.body.usage.completion_tokens).toBe(greedyIds.indexOf(stopId, 2) - 2 + 1);
    });
  });

  it('/health, /v1/models and /metrics', async () => {
    await withServer({ maxBatch: 3, maxQueue: 5 }, async (_, base) => {
      expect(JSON.parse((await get(base, '/health')).text)).toEqual({ status: 'ok', queued: 0, running: 0, slots: 3 });
      expect(JSON.parse((await get(base, '/v1/models')).text)).toEqual({ object: 'list', data: [{ id: 'tiny', object: 'model', created: 0, owned_by: 'gemmkit', max_model_len: 256 }] });
      await post(base, '/v1/completions', { prompt: 'Hi', max_tokens: 5 });
      await post(base, '/v1/completions', { prompt: 'Hi', max_tokens: 'x' });
      const m = await get(base, '/metrics');
      expect(m.status).toBe(200);
      for (const line of [
        'gemmkit_requests_total{route="/v1/completions",status="200"} 1',
        'gemmkit_requests_total{route="/v1/completions",status="400"} 1',
        'gemmkit_generations_finished_total{reason="length"} 1',
        'gemmkit_prompt_tokens_total 2',
        'gemmkit_generation_tokens_total 5',
        'gemmkit_time_to_first_token_seconds_count 1',
        'gemmkit_time_per_output_token_seconds_count 4',
        'gemmkit_queue_wait_seconds_count 1',
        'gemmkit_request_duration_seconds_count 1',
        'gemmkit_decode_batch_size_count 4',
        'gemmkit_queue_depth 0',
        'gemmkit_running_sequences 0',
        'gemmkit_batch_slots 3',
      ]) expect(m.text.split('\n'), line).toContain(line);
      expect(m.text).toMatch(/# TYPE gemmkit_time_to_first_token_seconds histogram/);
    });
  });
});

/** The decode batch-size histogram: steps, the sum of their sizes, and the steps of at most `le`. */
async function histogram(server: GemmkitServer) {
  const { values } = await server.metrics.batchSize.get();
  const find = (suffix: string, le?: string) => values.find((v) => v.metricName === `gemmkit_decode_batch_size${suffix}` && (le === undefined || String(v.labels.le) === le))?.value ?? 0;
  return { count: find('_count'), sum: find('_sum'), bucket: (le: string) => find('_bucket', le) };
}

describe('continuous batching', () => {
  const REQUESTS = [
    { prompt: 'Hello world', max_tokens: 24 },
    { prompt: 'A much longer prompt that takes a few more tokens than the others do', max_tokens: 9 },
    { prompt: [1, 500, 600, 700], max_tokens: 30 },
    { prompt: 'Short', max_tokens: 1 },
    { prompt: 'Numbers: 1 2 3 4 5', max_tokens: 17 },
    { prompt: 'Sampled, with a seed', max_tokens: 20, temperature: 0.8, top_k: 40, seed: 12 },
    { prompt: 'The last one', max_tokens: 12 },
  ].map((r) => ({ temperature: 0, ...r }));

  it('requests served together, more than the batch holds, give what each gives alone', async () => {
    await withServer({ maxBatch: 3, maxQueue: 16 }, async (server, base) => {
      const alone: string[] = [];
      for (const r of REQUESTS) alone.push((await post(base, '/v1/completions', r)).body.choices[0].text);
      const before = await histogram(server);
      const together = await Promise.all(REQUESTS.map((r, i) => (i % 2 ? stream(base, '/v1/completions', r).then((s) => streamedText(s.events)) : post(base, '/v1/completions', r).then((x) => x.body.choices[0].text))));
      expect(together).toEqual(alone);
      // Steps ran several sequences at once, never more than the 3 slots.
      const after = await histogram(server);
      const steps = after.count - before.count;
      expect((after.sum - before.sum) / steps).toBeGreaterThan(1.5);
      expect(after.bucket('4') - before.bucket('4')).toBe(steps);
      expect(after.bucket('2') - before.bucket('2')).toBeLessThan(steps);
    });
  });

  it('a request joining while others decode, and one leaving early, change nobody\'s output', async () => {
    await withServer({ maxBatch: 4 }, async (_, base) => {
      const long = { prompt: 'A long one', max_tokens: 40, temperature: 0 };
      const joiner = { prompt: 'Joins later', max_tokens: 10, temperature: 0 };
      const aloneLong = streamedText((await stream(base, '/v1/completions', long)).events);
      const aloneJoiner = (await post(base, '/v1/completions', joiner)).body.choices[0].text;
      let joined: Promise<string> | undefined;
      let leaver: Promise<unknown> | undefined;
      const first = await stream(base, '/v1/completions', long, (_, i) => {
        if (i === 5) joined = post(base, '/v1/completions', joiner).then((r) => r.body.choices[0].text);
        if (i === 8) leaver = stream(base, '/v1/completions', { prompt: 'Leaves', max_tokens: 100 }, (__, j) => j === 3); // disconnects after 4 events
      });
      expect(streamedText(first.events)).toBe(aloneLong);
      expect(await joined).toBe(aloneJoiner);
      await leaver;
    });
  });
});

describe('limits and bad requests', () => {
  it('a full queue answers 429 with Retry-After; the server then serves again', async () => {
    await withServer({ maxBatch: 1, maxQueue: 1 }, async (server, base) => {
      let queued: Promise<{ status: number; body: any }> | undefined;
      let refused: { status: number; headers: Headers; body: any } | undefined;
      const running = stream(base, '/v1/completions', { prompt: 'Runs', max_tokens: 200 }, (_, i) => {
        if (i === 0) {
          queued = post(base, '/v1/completions', { prompt: 'Waits', max_tokens: 3 });
          void eventually(() => server.scheduler.queued === 1).then(async () => {
            refused = await post(base, '/v1/completions', { prompt: 'Refused', max_tokens: 3 });
          });
        }
      });
      await eventually(() => refused !== undefined, 10_000, 'the third request');
      expect(refused!.status).toBe(429);
      expect(refused!.headers.get('retry-after')).toBe('1');
      expect(refused!.body.error).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
      expect(refused!.body.error.message).toMatch(/busy: 1 requests running and 1 waiting/);
      const s = await stream(base, '/v1/completions', { prompt: 'Also refused', max_tokens: 3 });
      expect(s.status).toBe(429); // a refused stream is a plain JSON error, not an event stream
      expect((await running).events.at(-1)).toBe('[DONE]');
      expect((await queued!).status).toBe(200);
      expect((await post(base, '/v1/completions', { prompt: 'After', max_tokens: 3 })).status).toBe(200);
      expect((await get(base, '/metrics')).text).toMatch(/gemmkit_requests_total\{route="\/v1\/completions",status="429"\} 2/);
    });
  });

  it('malformed JSON, unknown fields, wrong types, too many tokens: 400 naming the problem; the server keeps serving', async () => {
    await withServer({ contextLength: 64 }, async (_, base) => {
      const cases: [string, unknown, RegExp, string | null][] = [
        ['/v1/completions', '{"prompt": "Hi",', /not valid JSON/, null],
        ['/v1/completions', '', /empty/i, null],
        ['/v1/completions', { prompt: 'Hi', logprobs: 2 }, /^unknown field 'logprobs'$/, 'logprobs'],
        ['/v1/completions', { prompt: 'Hi', max_tokens: '8' }, /'max_tokens' must be integer/, 'max_tokens'],
        ['/v1/completions', { prompt: 'Hi', max_tokens: 0 }, /'max_tokens' must be >= 1/, 'max_tokens'],
        ['/v1/completions', { prompt: 'Hi', temperature: 'hot' }, /'temperature' must be number/, 'temperature'],
        ['/v1/completions', { prompt: 'Hi', top_p: 1.5 }, /'top_p' must be <= 1/, 'top_p'],
        ['/v1/completions', { prompt: 'Hi', stream: 'yes' }, /'stream' must be boolean/, 'stream'],
        ['/v1/completions', { prompt: 'Hi', n: 2 }, /'n' must be <= 1/, 'n'],
        ['/v1/completions', { prompt: 'Hi', stop: 5 }, /'stop' must be a non-empty string, an array of them, or null/, 'stop'],
        ['/v1/completions', { prompt: 'Hi', stream_options: { include_usage: true, extra: 1 } }, /unknown field 'stream_options.extra'/, 'stream_options.extra'],
        ['/v1/completions', { max_tokens: 3 }, /'prompt' is required/, 'prompt'],
        ['/v1/completions', { prompt: [] }, /'prompt' must be a string or a non-empty array of token ids/, 'prompt'],
        ['/v1/completions', { prompt: [1, 32000] }, /'prompt' token 1 is 32000; ids are below the vocabulary size 32000/, 'prompt'],
        ['/v1/completions', { prompt: 'Hi', max_tokens: 63 }, /context is 64 tokens, but the request asks for 65 \(2 in the prompt, 63 to generate\)/, 'max_tokens'],
        ['/v1/completions', { prompt: 'word '.repeat(80) }, /context is 64 tokens/, 'max_tokens'],
        ['/v1/completions', [1, 2], /the body must be object/, null],
        ['/v1/chat/completions', { messages: [] }, /'messages' must NOT have fewer than 1 items/, 'messages'],
        ['/v1/chat/completions', { messages: 'Hi' }, /'messages' must be array/, 'messages'],
        ['/v1/chat/completions', { messages: [{ role: 'user' }] }, /'messages.0.content' is required/, 'messages.0.content'],
        ['/v1/chat/completions', { messages: [{ role: 'tool', content: 'x' }] }, /chat template: roles are user and assistant/, 'messages'],
        ['/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_completion_tokens: -1 }, /'max_completion_tokens' must be >= 1/, 'max_completion_tokens'],
      ];
      for (const [path, body, message, param] of cases) {
        const r = await post(base, path, body);
        expect(r.status, JSON.stringify(body)).toBe(400);
        expect(r.body.error.type).toBe('invalid_request_error');
        expect(r.body.error.message, JSON.stringify(body)).toMatch(message);
        expect(r.body.error.param, JSON.stringify(body)).toBe(param);
      }
      const unknownModel = await post(base, '/v1/completions', { model: 'gpt-4', prompt: 'Hi' });
      expect(unknownModel.status).toBe(404);
      expect(unknownModel.body.error).toMatchObject({ code: 'model_not_found', message: "the model 'gpt-4' does not exist; this server serves 'tiny'" });
      expect((await post(base, '/v1/embeddings', { input: 'x' })).body.error).toMatchObject({ type: 'not_found_error', message: 'no route POST /v1/embeddings' });
      const text = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'Hi' });
      expect(text.status).toBe(400); // fastify reads text/plain as a string: not an object
      expect(((await text.json()) as { error: { message: string } }).error.message).toBe('the body must be object');
      expect((await post(base, '/v1/completions', { prompt: 'Still here', max_tokens: 4 })).status).toBe(200);
    });
  });

  it('a checkpoint without a chat template answers chat requests with 400', async () => {
    const server = await startServer(model, loadTokenizer(LLAMA2_TOKENIZER_DIR), { port: 0, contextLength: 64 }); // the package's files have none
    try {
      const r = await post(server.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] });
      expect(r.status).toBe(400);
      expect(r.body.error.message).toMatch(/no chat template/);
    } finally {
      await server.shutdown(0);
    }
  });

  it('refuses a tokenizer with more ids than the model, and a context longer than the model\'s positions', async () => {
    const smallDir = join(dir, 'small-vocab');
    writeRandomLlamaCheckpoint(smallDir, { ...TINY_TEXT_LLAMA, vocab_size: 1000 }, { dtype: 'f32' });
    const small = await loadModel(smallDir);
    await expect(startServer(small, tokenizer, { port: 0 })).rejects.toThrow(/the tokenizer has 32000 ids but the model's vocabulary has 1000/);
    await expect(startServer(model, tokenizer, { port: 0, contextLength: 257 })).rejects.toThrow(/serve: a context length of 257 is more than the model's 256 positions/);
    const server = await startServer(model, tokenizer, { port: 0 });
    try {
      expect(server.options.contextLength).toBe(256); // max_position_embeddings
    } finally {
      await server.shutdown(0);
    }
  });
});
