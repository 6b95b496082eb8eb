// Concurrent calls against the core budget: `calls` async matmuls at once vs the same calls one after the
// other, for the engine's default config and for each system BLAS candidate, and the most threads seen
// running at once (sampled from /proc/self/task every millisecond). With the budget respected, concurrent
// throughput is at least the sequential one and running threads stay at the pool's size.
//   npx tsx bench/blas_threads.bench.ts [--size 384] [--calls 50] [--rounds 5]
// GEMMKIT_BLAS picks the libraries (e.g. GEMMKIT_BLAS=libopenblas.so.0:/path/to/libblis.so.4).
import { readFileSync, readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { info, matmul, tensor } from '../src/index.js';
import { median } from './timing.js';

const { values: args } = parseArgs({
  options: { size: { type: 'string', default: '384' }, calls: { type: 'string', default: '50' }, rounds: { type: 'string', default: '5' } },
});
const size = Number(args.size), calls = Number(args.calls), rounds = Number(args.rounds);

// Threads of this process in state R (running or runnable) right now.
function runningThreads(): number {
  let running = 0;
  for (const task of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${task}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'R') running++;
    } catch {
      // the thread ended
    }
  }
  return running;
}

async function sampled<T>(run: () => Promise<T>): Promise<{ ms: number; maxRunning: number; meanRunning: number }> {
  const seen: number[] = [];
  const timer = setInterval(() => seen.push(runningThreads()), 1);
  const t0 = performance.now();
  await run();
  const ms = performance.now() - t0;
  clearInterval(timer);
  return { ms, maxRunning: Math.max(0, ...seen), meanRunning: seen.length ? seen.reduce((a, b) => a + b, 0) / seen.length : NaN };
}

const values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => (((i * 2654435761 + seed) >>> 0) % 1000) / 1000 - 0.5);
const xs = Array.from({ length: 8 }, (_, i) => tensor(values(size * size, i), [size, size]));
const w = tensor(values(size * size, 99), [size, size]);
const configs = ['', ...info().libraries.map((l) => l.config)];
console.log(`${calls} calls of ${size}x${size}x${size} f32, pool ${info().threads} threads, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}, ${rounds} rounds (medians)`);
console.log('config                         seq ms   conc ms  conc/seq throughput  max running (seq, conc)  mean running (seq, conc)');
for (const config of configs) {
  const opts = config === '' ? {} : { config };
  for (let i = 0; i < 3; i++) await matmul(xs[i], w, opts); // warm up (a BLAS starts its threads)
  const seq: Awaited<ReturnType<typeof sampled>>[] = [], conc: typeof seq = [];
  for (let r = 0; r < rounds; r++) {
    seq.push(await sampled(async () => {
      for (let i = 0; i < calls; i++) await matmul(xs[i % xs.length], w, opts);
    }));
    conc.push(await sampled(() => Promise.all(Array.from({ length: calls }, (_, i) => matmul(xs[i % xs.length], w, opts)))));
  }
  const m = (v: typeof seq, f: (x: (typeof seq)[number]) => number) => median(v.map(f));
  const seqMs = m(seq, (x) => x.ms), concMs = m(conc, (x) => x.ms);
  console.log(`${(config || 'engine default').padEnd(30)} ${seqMs.toFixed(1).padStart(7)} ${concMs.toFixed(1).padStart(9)} ${(seqMs / concMs).toFixed(2).padStart(20)}` +
    `  ${`${m(seq, (x) => x.maxRunning)}, ${m(conc, (x) => x.maxRunning)}`.padStart(23)}  ${`${m(seq, (x) => x.meanRunning).toFixed(1)}, ${m(conc, (x) => x.meanRunning).toFixed(1)}`.padStart(24)}`);
}
