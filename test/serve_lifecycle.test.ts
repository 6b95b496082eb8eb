// The server's lifecycle: clients that disconnect (streaming, waiting for a JSON answer, or still queued)
// free their slot; shutdown lets in-flight requests finish within its deadline and cancels the rest; and
// the CLI: `gemmkit run` streams text, `gemmkit serve` serves and exits cleanly on SIGTERM.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LlamaModel, type TextTokenizer, generate, loadModel, loadTokenizer } from '../src/index.js';
import { resolveSequenceOptions } from '../src/generate.js';
import { type GemmkitServer, type ServeOptions, startServer } from '../src/serve/index.js';
import { eventually, get, post, stream } from './serve_helpers.js';
import { writeTextCheckpoint } from './text_checkpoint.js';
import { ROOT, runCli } from './tuner_helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'gemmkit-serve-life-'));
let model: LlamaModel;
let tokenizer: TextTokenizer;
beforeAll(async () => {
  writeTextCheckpoint(dir, undefined, { dtype: 'f32', seed: 9 });
  model = (await loadModel(dir)) as LlamaModel;
  tokenizer = loadTokenizer(dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function serve(opts: ServeOptions): Promise<GemmkitServer> {
  return startServer(model, tokenizer, { port: 0, contextLength: 256, ...opts });
}

async function cancelledCount(base: string): Promise<number> {
  const m = /gemmkit_generations_finished_total\{reason="cancelled"\} (\d+)/.exec((await get(base, '/metrics')).text);
  return m ? Number(m[1]) : 0;
}

describe('disconnects', () => {
  it('a client that goes away frees its slot: streaming, waiting for JSON, or still queued', async () => {
    const server = await serve({ maxBatch: 1, maxQueue: 4 });
    const base = server.url;
    try {
      // Streaming: read three events, then close the connection.
      const s = await stream(base, '/v1/completions', { prompt: 'Long', max_tokens: 250 }, (_, i) => i === 2);
      expect(s.events).toHaveLength(3);
      await eventually(() => server.scheduler.active === 0, 10_000, 'the slot to be freed');
      expect(await cancelledCount(base)).toBe(1);

      // JSON: the client gives up before the answer; then one that waits in the queue gives up too.
      const running = new AbortController();
      const first = post(base, '/v1/completions', { prompt: 'Long', max_tokens: 250 }, { signal: running.signal }).catch((e: Error) => e);
      await eventually(() => server.scheduler.active === 1, 10_000, 'the first request to run');
      const queued = new AbortController();
      const second = post(base, '/v1/completions', { prompt: 'Queued', max_tokens: 250 }, { signal: queued.signal }).catch((e: Error) => e);
      await eventually(() => server.scheduler.queued === 1, 10_000, 'the second request to queue');
      queued.abort();
      await eventually(() => server.scheduler.queued === 0, 10_000, 'the queued request to leave');
      expect(server.scheduler.active).toBe(1);
      running.abort();
      await eventually(() => server.scheduler.active === 0, 10_000, 'the running request to leave');
      expect(await first).toBeInstanceOf(Error);
      expect(await second).toBeInstanceOf(Error);
      expect(await cancelledCount(base)).toBe(3);

      // The slot serves the next request.
      const after = await post(base, '/v1/completions', { prompt: 'After', max_tokens: 5 });
      expect(after.status).toBe(200);
      expect(after.body.usage.completion_tokens).toBe(5);
    } finally {
      await server.shutdown(0);
    }
  });
});

describe('graceful shutdown', () => {
  it('stops accepting, lets in-flight requests finish within the deadline, then closes', async () => {
    const server = await serve({ maxBatch: 2 });
    const base = server.url;
    let closing: Promise<void> | undefined;
    let late: Promise<number | string> | undefined;
    const json = post(base, '/v1/completions', { prompt: 'Also in flight', max_tokens: 30, temperature: 0 });
    const s = await stream(base, '/v1/completions', { prompt: 'In flight', max_tokens: 30, temperature: 0 }, (_, i) => {
      if (i === 2) {
        closing = server.shutdown(20_000);
        late = post(base, '/v1/completions', { prompt: 'Too late', max_tokens: 3 }).then((r) => r.status, (e: Error) => e.message);
      }
    });
    expect(s.events.at(-1)).toBe('[DONE]');
    expect(s.events.at(-2).choices[0].finish_reason).toBe('length');
    const want = await generate(model, 'In flight', { tokenizer, maxNewTokens: 30 });
    expect(s.events.filter((e) => e !== '[DONE]').map((e) => e.choices[0].text).join('')).toBe(want);
    const j = await json;
    expect(j.status).toBe(200);
    expect(j.body.usage.completion_tokens).toBe(30);
    const lateResult = await late!;
    expect(lateResult === 503 || typeof lateResult === 'string', `a request after shutdown began: ${lateResult}`).toBe(true);
    await closing;
    await expect(fetch(`${base}/health`)).rejects.toThrow(); // nothing listens any more
  });

  it('cancels what is still running at the deadline: an error event, a 503, and the queue', async () => {
    const server = await serve({ maxBatch: 2, maxQueue: 4 });
    const base = server.url;
    let closing: Promise<void> | undefined;
    let json: Promise<{ status: number; body: any }> | undefined;
    let queued: Promise<{ status: number; body: any }> | undefined;
    const started = Date.now();
    const s = await stream(base, '/v1/completions', { prompt: 'Long', max_tokens: 250 }, (_, i) => {
      if (i === 0) {
        json = post(base, '/v1/completions', { prompt: 'Long too', max_tokens: 250 });
        void eventually(() => server.scheduler.active === 2).then(() => {
          queued = post(base, '/v1/completions', { prompt: 'Queued', max_tokens: 250 });
          return eventually(() => server.scheduler.queued === 1);
        }).then(() => (closing = server.shutdown(50)));
      }
    });
    const last = s.events.at(-1);
    expect(last.error).toMatchObject({ type: 'service_unavailable', message: 'the server is shutting down; the request was cancelled' });
    expect(s.events.length).toBeLessThan(250);
    for (const p of [json!, queued!]) {
      const r = await p;
      expect(r.status).toBe(503);
      expect(r.body.error.type).toBe('service_unavailable');
    }
    await closing;
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it('a second shutdown() returns the same promise; a draining scheduler refuses new requests', async () => {
    const server = await serve({});
    const health = await get(server.url, '/health');
    expect(health.status).toBe(200);
    const slow = post(server.url, '/v1/completions', { prompt: 'x', max_tokens: 40 });
    await eventually(() => server.scheduler.active === 1);
    const a = server.shutdown(10_000);
    expect(server.shutdown(0)).toBe(a);
    expect(server.scheduler.isDraining).toBe(true);
    const options = resolveSequenceOptions('t', { maxNewTokens: 2 }, false, 32000);
    expect(() => server.scheduler.submit([1], options, { onToken() {}, onEnd() {} })).toThrow(/the server is shutting down/);
    expect((await slow).status).toBe(200);
    await a;
  });
});

describe('CLI', () => {
  it('gemmkit run streams the text generate() gives', async () => {
    const r = await runCli(['run', dir, '--prompt', 'Hello world', '--max-tokens', '12']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${await generate(model, 'Hello world', { tokenizer, maxNewTokens: 12 })}\n`);
    const sampled = await runCli(['run', dir, '--prompt', 'Hi', '--chat', '--system', 'Be brief.', '--max-tokens', '9', '--temperature', '0.8', '--top-p', '0.9', '--seed', '3']);
    expect(sampled.code, sampled.stderr).toBe(0);
    const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }];
    expect(sampled.stdout).toBe(`${await generate(model, messages, { tokenizer, maxNewTokens: 9, temperature: 0.8, topP: 0.9, seed: 3 })}\n`);
    // A device that is not there (no CUDA device here) is an error naming it; an unknown one too.
    const bad = await runCli(['run', dir, '--prompt', 'x', '--device', 'cuda:0']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/loadModel: device cuda:0: backend 'cuda' is not available/);
    const unknown = await runCli(['run', dir, '--prompt', 'x', '--device', 'tpu:0']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/--device: unknown device "tpu:0"/);
    const noPrompt = await runCli(['run', dir]);
    expect(noPrompt.code).not.toBe(0);
    expect(noPrompt.stderr).toMatch(/--prompt/);
  });

  it('gemmkit serve answers requests and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', dir, '--port', '0', '--max-batch', '2', '--model-name', 'cli-model'], {
      cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      await eventually(() => /on (http:\/\/\S+) /.test(stderr), 60_000, `the server to start (stderr: ${stderr})`);
      const base = /on (http:\/\/\S+) /.exec(stderr)![1];
      expect(stderr).toMatch(/'cli-model' on http:\/\/127\.0\.0\.1:\d+ \(max batch 2, queue 64, context 256 tokens\)/);
      const r = await post(base, '/v1/completions', { model: 'cli-model', prompt: 'Hello world', max_tokens: 6, temperature: 0 });
      expect(r.status).toBe(200);
      expect(r.body.choices[0].text).toBe(await generate(model, 'Hello world', { tokenizer, maxNewTokens: 6 }));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr).toMatch(/SIGTERM: finishing in-flight requests/);
      expect(stderr).toMatch(/gemmkit serve: closed/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
