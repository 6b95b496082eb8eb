// npm run bench:tuned -- --tuned file.csv [--shapes bench/shapes/llama.csv ...] [--time-ms 1000]
// Tuned dispatch against the default (heuristic) kernel, side by side in one run: for each shape the two
// configs run alternately (so drift on a shared machine hits both alike) on inputs rotating through
// copies of at least --rotating-mb MiB, as the tuner timed them. Prints the median of each, the speedup
// and where the tuned config came from (tuned row, padded-M bucket, or default), then the geometric mean.
// Without --shapes it benchmarks every row of the tuned file. --prepacked treats every shape as a
// prepack()ed weight (as models run them): the default is then what dispatch runs without a tuned table
// (GEMV on the kept source at M = 1, or up to M = 63 for a panel larger than the source; else the heuristic
// on the default packed layout), the tuned side a weight prepacked in the layout the tuned table chose.
import { parseArgs } from 'node:util';
import { type DType, type PackedWeight, Tensor, explain, info, matmulSync, prepack, setTunedFile } from '../src/index.js';
import { prepareMatmul } from '../src/matmul.js';
import { cpuNative } from '../src/native.js';
import { packedLayoutOf } from '../src/tuner/dispatch.js';
import { type GemmSpec, describeSpec } from '../src/tuner/key.js';
import { readShapesFile } from '../src/tuner/shapes.js';
import { readTunedFile } from '../src/tuner/tuned_file.js';
import { randomTensor } from './inputs.js';
import { median, printTable, rotationCopies } from './timing.js';

const { values: args } = parseArgs({
  options: {
    tuned: { type: 'string' },
    shapes: { type: 'string', multiple: true },
    'time-ms': { type: 'string', default: '1000' },
    'rotating-mb': { type: 'string', default: '64' },
    prepacked: { type: 'boolean', default: false },
  },
});
if (!args.tuned) {
  console.error('usage: npm run bench:tuned -- --tuned file.csv [--shapes shapes.csv ...] [--time-ms 1000] [--rotating-mb 64]');
  process.exit(2);
}
const timeMs = Number(args['time-ms']);
const rotatingBytes = Number(args['rotating-mb']) * 1024 * 1024;
setTunedFile(args.tuned);
const defaults = { dtype: 'f32' as DType, transA: false, transB: false, bias: false, activation: 'none' as const };
const shapes: GemmSpec[] = (args.shapes ? args.shapes.flatMap((f) => readShapesFile(f, defaults)) : readTunedFile(args.tuned).rows)
  .map((s) => (args.prepacked ? { ...s, prepacked: true } : s));

const inf = info();
console.log(`gemmkit ${inf.version} on ${inf.cpu.model} (${inf.cpu.features.join(' ')}), ${inf.threads} threads, tuned file ${args.tuned}`);
const rows: string[][] = [['shape', 'default ms', 'tuned ms', 'speedup', 'source', 'tuned config']];
const logs: number[] = [];
for (const s of shapes) {
  const bytes = (s.m * s.k + s.n * s.k) * (s.dtypeA === 'f32' ? 4 : 2);
  const copies = rotationCopies(bytes, rotatingBytes);
  const inputs: [Tensor, Tensor][] = [];
  for (let i = 0; i < copies; i++) {
    inputs.push([
      randomTensor(s.transA ? [s.k, s.m] : [s.m, s.k], s.dtypeA, 2 * i + 1),
      randomTensor(s.transB ? [s.n, s.k] : [s.k, s.n], s.dtypeB, 2 * i + 2),
    ]);
  }
  const bias = s.bias ? randomTensor([s.n], 'f32', 99) : undefined;
  const opts = { transA: s.transA, transB: s.transB, bias, activation: s.activation, outDtype: s.outDtype };
  const [a0, b0] = inputs[0];
  const { native, desc } = prepareMatmul('bench', a0, b0, opts, false);
  // b operands of the two sides: the plain weights, or the weights prepacked for each side's layout.
  let defaultB: (Tensor | PackedWeight)[] = inputs.map(([, b]) => b);
  let tunedB = defaultB;
  let defaultConfig = native.heuristic(desc);
  if (s.prepacked) {
    const packedConfig = cpuNative().defaultPackedConfig({ ...desc, dtypeA: s.dtypeA }); // prepacked weights are CPU-only
    defaultB = inputs.map(([, b]) => prepack(b, { transB: s.transB, inputDtype: s.dtypeA, config: packedConfig }));
    tunedB = inputs.map(([, b]) => prepack(b, { transB: s.transB, inputDtype: s.dtypeA }));
    // Without a tuned table dispatch runs the plain heuristic where it can (on the kept source or the
    // default layout), else the heuristic for the default layout.
    const layout = packedLayoutOf(native, 'cpu', defaultConfig);
    if (layout !== null && layout !== (defaultB[0] as PackedWeight).layout) {
      defaultConfig = native.heuristic({ ...desc, packedLayout: (defaultB[0] as PackedWeight).layout });
    }
  }
  const e = explain(a0, tunedB[0], opts);
  const configs = [defaultConfig, e.config];
  const operands = [defaultB, tunedB];
  const samples: number[][] = [[], []];
  const started = performance.now();
  for (let it = 0; it < 1000 && (it < 4 || performance.now() - started < 2 * timeMs); it++) {
    const a = inputs[it % copies][0];
    for (let side = 0; side < 2; side++) {
      const b = operands[side][it % copies];
      const t0 = performance.now();
      matmulSync(a, b, { ...opts, config: configs[side] });
      samples[side].push(performance.now() - t0);
    }
  }
  // The first pair warms both (packing buffers, pages of the rotating copies): not counted.
  const [def, tuned] = samples.map((x) => median(x.slice(1)));
  logs.push(Math.log(def / tuned));
  rows.push([describeSpec(s), def.toFixed(3), tuned.toFixed(3), `${(def / tuned).toFixed(2)}x`, e.source, e.config]);
  for (const w of [...defaultB, ...tunedB]) if (!(w instanceof Tensor)) w.dispose();
  console.error(rows.at(-1)!.join('  '));
}
printTable(rows, (column) => column >= 1 && column <= 3); // the figures right-aligned
console.log(`\ngeometric-mean speedup of tuned dispatch over the default: ${Math.exp(logs.reduce((x, y) => x + y, 0) / logs.length).toFixed(3)}x over ${logs.length} shapes`);
