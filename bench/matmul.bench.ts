// npm run bench: GFLOP/s of the default CPU kernel on square GEMMs and on inference shapes
// (x @ W^T with W 4096x4096), f32 and bf16, on 1 thread and on every thread.
// Medians of several timed runs (tinybench); run on a quiet machine, and compare ratios within one run.
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { type DType, info, matmulSync, Tensor } from '../src/index.js';
import { prepareMatmul } from '../src/matmul.js';
import { randomTensor } from './inputs.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false }, // shorter timing, for a smoke run
    'time-ms': { type: 'string' },
  },
});
const timeMs = Number(args['time-ms'] ?? (args.quick ? 150 : 600));

interface Case {
  label: string;
  a: Tensor;
  b: Tensor;
  transB: boolean;
  flops: number;
}

function cases(dtype: DType): Case[] {
  const out: Case[] = [];
  for (const n of [256, 512, 1024, 2048]) {
    out.push({ label: `square ${n}`, a: randomTensor([n, n], dtype, 1), b: randomTensor([n, n], dtype, 2), transB: false, flops: 2 * n ** 3 });
  }
  const w = randomTensor([4096, 4096], dtype, 3); // W: [out, in], applied as x @ W^T
  for (const m of [1, 8, 32, 128]) {
    out.push({ label: `M=${m} x W 4096x4096^T`, a: randomTensor([m, 4096], dtype, 4), b: w, transB: true, flops: 2 * m * 4096 * 4096 });
  }
  return out;
}

function configWithThreads(c: Case, threads: number): string {
  const { native, desc } = prepareMatmul('bench', c.a, c.b, { transB: c.transB });
  return native.heuristic(desc).replace(/\.t\d+$/, `.t${threads}`);
}

const inf = info();
console.log(`gemmkit ${inf.version} on ${inf.cpu.model} (${inf.cpu.features.join(' ')}), pool of ${inf.threads} threads`);
const threadCounts = [...new Set([1, inf.threads])];
const rows: string[][] = [['shape', 'dtype', 'threads', 'median ms', 'GFLOP/s', 'config']];
for (const dtype of ['f32', 'bf16'] as DType[]) {
  for (const c of cases(dtype)) {
    for (const threads of threadCounts) {
      const config = configWithThreads(c, threads);
      const bench = new Bench({ time: timeMs, iterations: 3, warmupIterations: 1, warmupTime: 0 });
      bench.add(c.label, () => {
        matmulSync(c.a, c.b, { transB: c.transB, config });
      });
      await bench.run();
      const r = bench.tasks[0].result;
      if (r.state !== 'completed') throw new Error(`${c.label}: benchmark ${r.state}`);
      const ms = r.latency.p50;
      rows.push([c.label, dtype, String(threads), ms.toFixed(3), (c.flops / ms / 1e6).toFixed(1), config]);
      console.log(rows.at(-1)!.join('\t'));
    }
  }
}
console.log();
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const r of rows) console.log(r.map((x, i) => x.padEnd(widths[i])).join('  '));
