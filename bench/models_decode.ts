// Decode at batch 1 on this process's thread count (GEMMKIT_NUM_THREADS, else the usable CPUs): gemmkit
// and, given a GGUF of the same weights, llama.cpp with as many threads, alternating round by round
// (a new sequence, a `--prompt`-token prefill, `--steps` timed decode steps); the read bandwidth on as
// many threads before and after. Prints one JSON line:
//   {"threads", "readGBps" (the better of both), "gemmkitMs": [per step], "llamaCppMs": [per step] | null, "note"}
// npm run bench:models runs it with GEMMKIT_NUM_THREADS=1 for the 1-thread decode row, on the checkpoint
// it wrote. Alone, it times a change to the decode path:
//   GEMMKIT_NUM_THREADS=2 npx tsx bench/models_decode.ts --dir <checkpoint> [--gguf <file>] [--rounds 5]
import { parseArgs } from 'node:util';
import { type LlamaModel, info, loadModel } from '../src/index.js';
import { type EngineSteps, type Timings, gemmkitEngine, llamaCppEngine, timeRound } from './models_engines.js';
import { bestCeilings, measureCeilings } from './peers/index.js';
import { LlamaCppPeer } from './peers/llama_cpp.js';

const { values: args } = parseArgs({
  options: {
    dir: { type: 'string' },
    gguf: { type: 'string' },
    prompt: { type: 'string', default: '128' },
    steps: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '5' },
    'read-mib': { type: 'string', default: '1024' },
  },
});
if (!args.dir) throw new Error('bench/models_decode.ts: --dir <checkpoint directory> is required');
const prompt = Number(args.prompt), steps = Number(args.steps), rounds = Number(args.rounds), readMiB = Number(args['read-mib']);
const threads = info().threads;

const before = await measureCeilings(threads, { readMiB });
const model = (await loadModel(args.dir)) as LlamaModel;
const capacity = prompt + steps + 1;
const engines: [string, EngineSteps][] = [['gemmkit', gemmkitEngine(model, capacity)]];
let note = '';
let peer: LlamaCppPeer | undefined;
if (args.gguf) {
  const opened = await LlamaCppPeer.open({ threads });
  if (opened instanceof LlamaCppPeer) {
    peer = opened;
    engines.push(['llama.cpp', llamaCppEngine(await peer.load(args.gguf, { contextSize: capacity, batchSize: prompt }))]);
  } else {
    note = opened.error;
  }
}
const vocab = model.config.vocabSize;
const timings = new Map(engines.map(([name]) => [name, { prefill: new Map(), decode: [] } as Timings]));
const scratch: Timings = { prefill: new Map(), decode: [] };
for (const [, e] of engines) await timeRound(e, prompt, vocab, scratch, 2); // warm-up
for (let r = 0; r < rounds; r++) for (const [name, e] of engines) await timeRound(e, prompt, vocab, timings.get(name)!, steps);
await peer?.dispose();
const after = await measureCeilings(threads, { readMiB });
console.log(JSON.stringify({
  threads,
  readGBps: bestCeilings(before, after).readGBps,
  gemmkitMs: timings.get('gemmkit')!.decode,
  llamaCppMs: timings.get('llama.cpp')?.decode ?? null,
  note: [before.note, note].filter(Boolean).join('; '),
}));
