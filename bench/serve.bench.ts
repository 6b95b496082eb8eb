// npm run bench:serve: `gemmkit serve` under load, the figures an inference service is judged by.
// The server runs in its own process (`gemmkit serve`, on a free loopback port) over a checkpoint: by
// default a random Llama with the Llama 2 tokenizer's 32000 ids (test/text_checkpoint.ts), or
// --checkpoint <dir>. A bounded load generator in this process keeps 1, 4, 16 and 64 clients busy, each
// sending streaming /v1/completions requests back to back until the level's requests are done, and reads
// every event as it arrives. Per level: requests/s, output tokens/s, time to first token (TTFT) and time
// per output token after the first (TPOT) at p50 and p99 over requests, errors, and the mean batch size
// of the server's decode steps (from its /metrics). With --usd-per-hour <price of the machine>, the
// throughput becomes dollars per 1,000 requests and per million output tokens.
// Run it alone on the machine (`flock -x /tmp/gemmkit-cpu.lock npm run bench:serve`); --quick: a small
// model and few requests, as a smoke test.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { info } from '../src/index.js';
import { writeTextCheckpoint } from '../test/text_checkpoint.js';
import { printTable } from './timing.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'usd-per-hour': { type: 'string' },
    checkpoint: { type: 'string' },
    'max-batch': { type: 'string', default: '16' },
    concurrency: { type: 'string' },
    'max-tokens': { type: 'string' },
  },
});
const quick = args.quick;
const positive = (name: string, v: string | undefined, fallback: number): number => {
  if (v === undefined) return fallback;
  const x = Number(v);
  if (!Number.isFinite(x) || x <= 0) throw new RangeError(`bench:serve: --${name} must be a positive number, got ${v}`);
  return x;
};
const usdPerHour = args['usd-per-hour'] === undefined ? undefined : positive('usd-per-hour', args['usd-per-hour'], 0);
const maxBatch = positive('max-batch', args['max-batch'], 16);
const levels = args.concurrency ? args.concurrency.split(',').map((c) => positive('concurrency', c, 1)) : [1, 4, 16, 64];
const maxTokens = positive('max-tokens', args['max-tokens'], quick ? 8 : 32);
/** Requests per level: enough for p99 to mean something at low concurrency, bounded at high. */
const requestsAt = (clients: number) => (quick ? Math.max(4, clients) : Math.max(32, 2 * clients));

const tmp = mkdtempSync(join(tmpdir(), 'gemmkit-bench-serve-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

// --- the model and the server --------------------------------------------------------------------------
const hf = quick
  ? { hidden_size: 128, intermediate_size: 352, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2 }
  : { hidden_size: 512, intermediate_size: 1408, num_attention_heads: 8, num_key_value_heads: 4, num_hidden_layers: 4 };
const checkpoint = args.checkpoint ?? writeTextCheckpoint(join(tmp, 'llama'), {
  ...hf, vocab_size: 32000, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, max_position_embeddings: 512,
}, { dtype: 'bf16', seed: 1 });

const inf = info();
console.log(`gemmkit ${inf.version} on ${inf.cpu.model}, pool of ${inf.threads} threads${quick ? ' [--quick]' : ''}`);
console.log(args.checkpoint
  ? `checkpoint ${checkpoint}`
  : `random Llama, bf16: hidden ${hf.hidden_size}, ${hf.num_hidden_layers} layers, intermediate ${hf.intermediate_size}, ${hf.num_attention_heads} heads / ${hf.num_key_value_heads} KV heads, vocab 32000 (Llama 2 tokenizer)`);

const server = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', checkpoint, '--port', '0', '--max-batch', String(maxBatch), '--max-queue', '256'], {
  cwd: new URL('..', import.meta.url).pathname, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'ignore', 'pipe'],
});
let serverLog = '';
server.stderr.on('data', (d) => (serverLog += d));
const serverExit = new Promise<number | null>((resolve) => server.on('close', resolve));
process.on('exit', () => {
  if (server.exitCode === null) server.kill('SIGKILL');
});
const base = await new Promise<string>((resolve, reject) => {
  const timer = setInterval(() => {
    const m = /on (http:\/\/\S+) /.exec(serverLog);
    if (m) {
      clearInterval(timer);
      resolve(m[1]);
    } else if (server.exitCode !== null || Date.now() - started > 120_000) {
      clearInterval(timer);
      reject(new Error(`bench:serve: the server did not start:\n${serverLog}`));
    }
  }, 20);
  const started = Date.now();
});
console.log(`server: ${serverLog.trim().split('\n')[0].replace(/^gemmkit serve: /, '')}`);
console.log(`each request: a short prompt, ${maxTokens} new tokens (temperature 0.8, top-p 0.95, streamed)\n`);

// --- the load generator ---------------------------------------------------------------------------------
interface RequestResult {
  ok: boolean;
  ttftMs: number;
  /** ms per output token after the first: (end - first token) / (tokens - 1). */
  tpotMs: number;
  tokens: number;
}

const PROMPTS = ['Once upon a time', 'The capital of France is', 'Write a haiku about autumn', 'def fibonacci(n):', 'Dear diary, today', 'In the beginning', 'The weather is', 'Q: What is 2 + 2?\nA:'];

async function oneRequest(i: number): Promise<RequestResult> {
  const start = performance.now();
  let first: number | undefined;
  let tokens = 0;
  try {
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPTS[i % PROMPTS.length], max_tokens: maxTokens, temperature: 0.8, top_p: 0.95, seed: i, stream: true, stream_options: { include_usage: true } }),
    });
    if (res.status !== 200 || !res.body) {
      await res.text();
      return { ok: false, ttftMs: NaN, tpotMs: NaN, tokens: 0 };
    }
    let ok = false;
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of res.body) {
      first ??= performance.now(); // the first event carries the first token's text
      buffered += decoder.decode(chunk as Uint8Array, { stream: true });
      let at: number;
      while ((at = buffered.indexOf('\n\n')) >= 0) {
        const data = buffered.slice(6, at); // 'data: ...'
        buffered = buffered.slice(at + 2);
        if (data === '[DONE]') ok = true;
        else {
          const event = JSON.parse(data);
          if (event.usage) tokens = event.usage.completion_tokens;
          if (event.error) return { ok: false, ttftMs: NaN, tpotMs: NaN, tokens };
        }
      }
    }
    const end = performance.now();
    return { ok, ttftMs: first! - start, tpotMs: tokens > 1 ? (end - first!) / (tokens - 1) : NaN, tokens };
  } catch {
    return { ok: false, ttftMs: NaN, tpotMs: NaN, tokens };
  }
}

/** `total` requests over `clients` concurrent clients, each sending its next request when one ends. */
async function level(clients: number, total: number): Promise<{ results: RequestResult[]; seconds: number }> {
  let next = 0;
  const results: RequestResult[] = [];
  const started = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < total) results.push(await oneRequest(next++));
  }));
  return { results, seconds: (performance.now() - started) / 1000 };
}

/** Nearest-rank percentile of the finite values. */
function percentile(values: number[], q: number): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length === 0 ? NaN : v[Math.min(v.length - 1, Math.ceil(q * v.length) - 1)];
}

async function batchSizeTotals(): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { sum: read('gemmkit_decode_batch_size_sum'), count: read('gemmkit_decode_batch_size_count') };
}

await level(2, 4); // warm-up: JIT, first allocations

const fmt = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const usd = (x: number) => (Number.isFinite(x) ? `$${x < 0.01 ? x.toPrecision(2) : x.toFixed(2)}` : '-');
const rows: string[][] = [[
  'clients', 'requests', 'errors', 'req/s', 'out tok/s', 'TTFT p50 ms', 'TTFT p99 ms', 'TPOT p50 ms', 'TPOT p99 ms', 'mean batch',
  ...(usdPerHour === undefined ? [] : ['$ / 1k req', '$ / M out tok']),
]];
for (const clients of levels) {
  const total = requestsAt(clients);
  const before = await batchSizeTotals();
  const { results, seconds } = await level(clients, total);
  const after = await batchSizeTotals();
  const good = results.filter((r) => r.ok);
  const reqPerS = good.length / seconds;
  const tokPerS = good.reduce((s, r) => s + r.tokens, 0) / seconds;
  const row = [
    String(clients), String(total), String(results.length - good.length), fmt(reqPerS, 2), fmt(tokPerS, 1),
    fmt(percentile(good.map((r) => r.ttftMs), 0.5)), fmt(percentile(good.map((r) => r.ttftMs), 0.99)),
    fmt(percentile(good.map((r) => r.tpotMs), 0.5), 2), fmt(percentile(good.map((r) => r.tpotMs), 0.99), 2),
    fmt((after.sum - before.sum) / (after.count - before.count), 1),
  ];
  if (usdPerHour !== undefined) {
    const usdPerSecond = usdPerHour / 3600;
    row.push(usd((usdPerSecond / reqPerS) * 1000), usd((usdPerSecond / tokPerS) * 1e6));
  }
  rows.push(row);
}
printTable(rows, (i) => i > 0);
console.log(usdPerHour === undefined
  ? '\n(give --usd-per-hour <price of this machine> for the cost per 1,000 requests and per million output tokens)'
  : `\ncost at $${usdPerHour}/hour for the machine, at each row's measured throughput`);
console.log('TTFT: request sent to its first event; TPOT: time per output token after the first; mean batch: sequences per decode step on the server');

server.kill('SIGTERM');
const code = await serverExit;
if (code !== 0) {
  console.error(`bench:serve: the server exited with ${code}:\n${serverLog}`);
  process.exitCode = 1;
}
if (rows.slice(1).some((r) => r[2] !== '0')) {
  console.error('bench:serve: some requests failed');
  process.exitCode = 1;
}
