// npm run bench:models-versus: the Llama decoder of this checkout against the one of another git revision
// (default main), side by side in one process on the same weights: prefill of 128 and 512 tokens and decode
// at batch 1, with bf16 and f32 weights (the bench model of bench/models.bench.ts: hidden 1024, 8 layers,
// intermediate 2816, 16 heads / 4 KV heads, vocab 32000). The two take turns call by call (a prefill each,
// or a block of decode steps each: baseline, this, baseline, ...), each figure the median of its calls, and the ratio is baseline time / this time (above 1: this
// checkout is faster), of wall-clock time and of the process's CPU time (steadier on a shared machine). The baseline is the revision's src/ compiled into a temporary folder that shares this
// checkout's node_modules and native addon (build/), so only the TypeScript differs: a revision with other
// native code is compared on this checkout's addon. The logits of the two are checked to agree first.
// Run it alone on the machine (`flock -x /tmp/gemmkit-cpu.lock npm run bench:models-versus`).
//   --baseline REV   the git revision to compare against (default main)
//   --rounds N       alternate rounds per figure (default 9; decode: N blocks of 32 steps)
//   --quick          a small model, short prompts, 2 rounds: a smoke test
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import * as current from '../src/index.js';
import { median, printTable } from './timing.js';

const { values: args } = parseArgs({
  options: { baseline: { type: 'string', default: 'main' }, rounds: { type: 'string' }, quick: { type: 'boolean', default: false } },
});
const quick = args.quick;
const rounds = Number(args.rounds ?? (quick ? 2 : 9));
if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`--rounds must be a positive integer, got ${args.rounds}`);
const root = new URL('..', import.meta.url).pathname;

// --- the baseline: its src/ compiled next to this checkout's node_modules and addon ----------------------------
const tmp = mkdtempSync(join(tmpdir(), 'gemmkit-versus-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
const base = join(tmp, 'baseline');
mkdirSync(base);
const rev = execFileSync('git', ['-C', root, 'rev-parse', '--short', args.baseline], { encoding: 'utf8' }).trim();
const archive = execFileSync('git', ['-C', root, 'archive', args.baseline, 'src', 'package.json', 'tsconfig.json'], { maxBuffer: 1 << 28 });
execFileSync('tar', ['-x', '-C', base], { input: archive });
symlinkSync(join(root, 'node_modules'), join(base, 'node_modules'));
symlinkSync(join(root, 'build'), join(base, 'build'));
execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(base, 'tsconfig.json')], { stdio: 'inherit' });
const baseline = (await import(pathToFileURL(join(base, 'dist/index.js')).href)) as typeof current;

type Api = typeof current;
const engines: [string, Api][] = [[`baseline (${args.baseline} ${rev})`, baseline], ['this checkout', current]];
const inf = current.info();
console.log(`gemmkit on ${inf.cpu.model} (${inf.cpu.features.join(' ')}), pool of ${inf.threads} threads; ${rounds} alternate rounds per figure${quick ? ' [--quick]' : ''}`);

const hf = quick
  ? { hidden_size: 256, intermediate_size: 704, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 4096 }
  : { hidden_size: 1024, intermediate_size: 2816, num_attention_heads: 16, num_key_value_heads: 4, num_hidden_layers: 8, vocab_size: 32000 };
const config = { ...hf, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, model_type: 'llama' };
const prefills = quick ? [32, 64] : [128, 512];
const decodeSteps = quick ? 8 : 32;
const promptOf = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => (i * 7919 + 13) % vocab);

// One timed call: wall-clock ms and the process's CPU ms (all its threads): on a machine shared with other
// work the CPU time moves less than the wall time, so both are reported.
async function timed(fn: () => Promise<unknown>): Promise<[number, number]> {
  const c0 = process.cpuUsage(), t0 = performance.now();
  await fn();
  const wall = performance.now() - t0, c = process.cpuUsage(c0);
  return [wall, (c.user + c.system) / 1000];
}

// The figures of one phase, the engines taking turns call by call (a round: one call of each), so a
// machine whose speed drifts slows both alike. prefill n: one prompt of n tokens on a cache made outside
// the timing (and emptied before each call); decode: one step of a sequence that started with a 128-token
// prompt, its cache made and filled once per engine.
type Phase = { name: string; prepare: (api: Api, model: current.LlamaModel) => Promise<() => Promise<unknown>> };
const phases: Phase[] = [
  ...prefills.map((n) => ({
    name: `prefill ${n}`,
    prepare: async (api: Api, model: current.LlamaModel) => {
      const cache = api.createKVCache(model, 1, n), prompt = promptOf(n, hf.vocab_size);
      return () => {
        cache.length = 0;
        return api.forward(model, prompt, { cache, logits: 'last' });
      };
    },
  })),
  {
    name: 'decode, batch 1',
    prepare: async (api: Api, model: current.LlamaModel) => {
      const steps = (rounds + 1) * decodeSteps;
      const cache = api.createKVCache(model, 1, prefills[0] + steps + 1);
      await api.forward(model, promptOf(prefills[0], hf.vocab_size), { cache, logits: 'last' });
      let s = 0;
      return () => api.forward(model, [(s++ * 31 + 7) % hf.vocab_size], { cache, logits: 'last' });
    },
  },
];

const rows: string[][] = [['weights', 'phase', ...engines.map(([name]) => `${name} ms`), 'baseline / this', 'CPU time: baseline / this']];
for (const dtype of ['bf16', 'f32'] as const) {
  const dir = join(tmp, `llama-${dtype}`);
  current.writeRandomLlamaCheckpoint(dir, config, { dtype, seed: 1 });
  const models = await Promise.all(engines.map(([, api]) => api.loadModel(dir) as Promise<current.LlamaModel>));
  // The two must compute the same thing.
  const logits = await Promise.all(engines.map(([, api], i) => api.forward(models[i], promptOf(16, hf.vocab_size), { logits: 'last' })));
  const [a, b] = logits.map((t) => t.to('cpu').toFloat32());
  let err = 0, mag = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(a[i]));
  }
  console.log(`${dtype}: next-token logits agree to ${(err / mag).toExponential(2)} (normwise)`);
  if (!(err / mag < 1e-2)) throw new Error(`${dtype}: the baseline and this checkout disagree (${(err / mag).toExponential(2)})`);
  for (const phase of phases) {
    const calls = await Promise.all(engines.map(([, api], e) => phase.prepare(api, models[e])));
    const per = phase.name.startsWith('decode') ? decodeSteps : 1; // calls of one engine in a row
    const wall = engines.map(() => [] as number[]), cpu = engines.map(() => [] as number[]);
    for (let r = 0; r < rounds + 1; r++) {
      for (let e = 0; e < engines.length; e++) {
        for (let i = 0; i < per; i++) {
          const [w, c] = await timed(calls[e]);
          if (r > 0) { // round 0 warms up (and makes each engine's buffers for the shape)
            wall[e].push(w);
            cpu[e].push(c);
          }
        }
      }
    }
    const mw = wall.map(median), mc = cpu.map(median);
    rows.push([dtype, phase.name, ...mw.map((m) => m.toFixed(2)), `${(mw[0] / mw[1]).toFixed(2)}x`, `${(mc[0] / mc[1]).toFixed(2)}x`]);
  }
  for (const m of models) m.dispose();
}
console.log();
printTable(rows, (i) => i >= 2);
