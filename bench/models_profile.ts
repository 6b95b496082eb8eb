// Where a Llama step's time goes, call by call: the bench's decoder (bench/models.bench.ts's random
// checkpoint, or --dir) decoding at batch 1 after a prompt and prefilling a prompt, with every native call
// of the CPU addon timed (wall clock around the call). Per step it prints each kind of call's count and
// milliseconds (the weight GEMMs by their [n, k] and name, the ops by kind), and what lies outside the native
// calls: the TypeScript of forward, allocations, event-loop turns. The threads are the pool's
// (GEMMKIT_NUM_THREADS). Timing each call adds about a microsecond per call.
//   GEMMKIT_NUM_THREADS=1 npx tsx bench/models_profile.ts --dtype bf16 [--steps 32] [--rounds 3] [--prompt 128]
//     [--sync-below-macs N]   (gemmPolicy.syncBelowMacs: the size from which the models' calls run off the event loop)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type LlamaModel, info, loadModel, writeRandomLlamaCheckpoint } from '../src/index.js';
import { gemmPolicy } from '../src/models/layers.js';
import { OP_KINDS, type OpDesc, type ProblemDesc, cpuNative } from '../src/native.js';
import { benchLlamaConfig, gemmkitEngine, promptIds } from './models_engines.js';
import { printTable } from './timing.js';

const { values: args } = parseArgs({
  options: {
    dir: { type: 'string' },
    dtype: { type: 'string', default: 'bf16' },
    prompt: { type: 'string', default: '128' },
    steps: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '3' },
    'sync-below-macs': { type: 'string' },
  },
});
const prompt = Number(args.prompt), steps = Number(args.steps), rounds = Number(args.rounds);
const dtype = args.dtype === 'f32' ? 'f32' : 'bf16';

let dir = args.dir;
let tmp: string | undefined;
if (!dir) {
  tmp = dir = mkdtempSync(path.join(tmpdir(), 'gemmkit-profile-'));
  writeRandomLlamaCheckpoint(dir, benchLlamaConfig(false), { dtype, seed: 1 });
}
if (args['sync-below-macs']) gemmPolicy.syncBelowMacs = Number(args['sync-below-macs']);
const model = (await loadModel(dir)) as LlamaModel;
const c = model.config;
const q = c.numAttentionHeads * c.headDim, kv = c.numKeyValueHeads * c.headDim;
// The weight GEMMs by their [n, k] (x @ W^T: W is [n, k]).
const gemmNames = new Map<string, string>([
  [`${q + 2 * kv}x${c.hiddenSize}`, 'GEMM q/k/v'], [`${c.hiddenSize}x${q}`, 'GEMM o'],
  [`${2 * c.intermediateSize}x${c.hiddenSize}`, 'GEMM gate/up'], [`${c.hiddenSize}x${c.intermediateSize}`, 'GEMM down'],
  [`${c.vocabSize}x${c.hiddenSize}`, 'GEMM LM head'],
]);
const opNames = new Map(Object.entries(OP_KINDS).map(([name, kind]) => [kind as number, name]));

interface Tally { calls: number; ms: number }
let tally = new Map<string, Tally>();
let nativeMs = 0;
const add = (key: string, ms: number) => {
  const t = tally.get(key) ?? { calls: 0, ms: 0 };
  t.calls++;
  t.ms += ms;
  tally.set(key, t);
  nativeMs += ms;
};
const gemmKey = (d: ProblemDesc) => gemmNames.get(`${d.n}x${d.k}`) ?? `GEMM ${d.m}x${d.n}x${d.k}`;
const opKey = (d: OpDesc) => `op ${opNames.get(d.kind) ?? d.kind}`;

// Every call the models make goes through these four methods of the addon object (looked up at each call).
const addon = cpuNative() as unknown as Record<string, (d: never) => unknown>;
const wrapSync = <D>(name: string, key: (d: D) => string) => {
  const f = addon[name].bind(addon);
  addon[name] = ((d: D) => {
    const t0 = performance.now();
    try {
      return f(d as never);
    } finally {
      add(key(d), performance.now() - t0);
    }
  }) as never;
};
// An async call is timed from its start to its settling (the event-loop turn that resumes it included).
const wrapAsync = <D>(name: string, key: (d: D) => string) => {
  const f = addon[name].bind(addon) as (d: D) => Promise<unknown>;
  addon[name] = (async (d: D) => {
    const t0 = performance.now();
    try {
      return await f(d);
    } finally {
      add(`${key(d)} (async)`, performance.now() - t0);
    }
  }) as never;
};
wrapSync<ProblemDesc>('matmulSync', gemmKey);
wrapAsync<ProblemDesc>('matmulAsync', gemmKey);
wrapSync<OpDesc>('opSync', opKey);
wrapAsync<OpDesc>('opAsync', opKey);

const engine = gemmkitEngine(model, prompt + steps + 1);
const ids = promptIds(prompt, c.vocabSize);
interface Phase { label: string; per: number; wallMs: number; tally: Map<string, Tally>; nativeMs: number }
const phases: Phase[] = [];
const measure = async (label: string, per: number, body: () => Promise<void>, keep: boolean) => {
  tally = new Map();
  nativeMs = 0;
  const t0 = performance.now();
  await body();
  const wallMs = performance.now() - t0;
  if (!keep) return;
  const same = phases.find((p) => p.label === label);
  if (!same) {
    phases.push({ label, per, wallMs, tally, nativeMs });
    return;
  }
  same.wallMs += wallMs;
  same.nativeMs += nativeMs;
  same.per += per;
  for (const [k, t] of tally) {
    const s = same.tally.get(k) ?? { calls: 0, ms: 0 };
    same.tally.set(k, { calls: s.calls + t.calls, ms: s.ms + t.ms });
  }
};
for (let r = 0; r <= rounds; r++) {
  const keep = r > 0; // round 0 warms up
  await engine.newSequence();
  let next = 0;
  await measure(`prefill ${prompt}`, 1, async () => { next = await engine.prefill(ids); }, keep);
  await measure('decode step', steps, async () => { for (let s = 0; s < steps; s++) next = await engine.decode(next); }, keep);
}

console.log(`${dtype} weights, ${c.numHiddenLayers} layers, hidden ${c.hiddenSize}; pool of ${info().threads} thread(s); ${rounds} rounds`);
for (const p of phases) {
  const ms = (x: number) => (x / p.per).toFixed(3);
  console.log(`\n${p.label}: ${ms(p.wallMs)} ms each (${p.per} timed)`);
  const outside = p.wallMs - p.nativeMs;
  const share = (x: number) => `${((100 * x) / p.wallMs).toFixed(1)}%`;
  printTable([
    ['call', 'calls', 'ms', 'share'],
    ...[...p.tally].sort((a, b) => b[1].ms - a[1].ms).map(([k, t]) => [k, (t.calls / p.per).toFixed(0), ms(t.ms), share(t.ms)]),
    ['outside the native calls', '', ms(outside), share(outside)],
  ], (col) => col > 0);
}
model.dispose();
if (tmp) rmSync(tmp, { recursive: true, force: true });
