// npm run bench:ops: the native ops (src/ops.ts) against what the models ran before them (bench/legacy_models.ts:
// attention as two GEMMs per KV head with a JS softmax, JS loops for RMSNorm, rotary embeddings and the SwiGLU
// product), side by side in one run, on the bench model's shapes (bench/models.bench.ts: hidden 1024,
// 16 heads / 4 KV heads, head_dim 64, intermediate 2816): a 128- and a 512-token prefill, and a decode
// step after 127 and 511 cached tokens. Medians in ms; the ratio is current / op (above 1: the op is faster).
// Run it alone on the machine (`flock -x /tmp/gemmkit-cpu.lock npm run bench:ops`). --quick: short runs.
import { parseArgs } from 'node:util';
import { Tensor, attention, info, rmsNorm, rope, ropeTables, swiglu } from '../src/index.js';
import { columns } from '../src/ops.js';
import { attentionAsGemms, rmsNormLoop as jsRmsNorm } from './legacy_models.js';
import { randomTensor } from './inputs.js';
import { printTable, timeAsync, timeSync } from './timing.js';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const quick = args.quick;

const hidden = 1024, heads = 16, kvHeads = 4, headDim = 64, intermediate = 2816, eps = 1e-5, theta = 10000;
const capacity = 1024;
const inf = info();
console.log(`gemmkit ${inf.version} on ${inf.cpu.model} (${inf.cpu.features.join(' ')}), pool of ${inf.threads} threads${quick ? ' [--quick]' : ''}`);
console.log(`shapes: hidden ${hidden}, ${heads} heads / ${kvHeads} KV heads, head_dim ${headDim}, intermediate ${intermediate}; f32 activations`);

// One layer's KV cache, [slots = 1, kvHeads, capacity, headDim] f32, for both.
const keyData = new Float32Array(kvHeads * capacity * headDim), valueData = new Float32Array(kvHeads * capacity * headDim);
for (const a of [keyData, valueData]) for (let i = 0; i < a.length; i++) a[i] = Math.sin(i * 0.37);
const keys = new Tensor('f32', [1, kvHeads, capacity, headDim], keyData);
const values = new Tensor('f32', [1, kvHeads, capacity, headDim], valueData);
const shape = { heads, kvHeads, headDim, capacity };

// The models' former rotary loop, with its float64 tables.
function jsRope(x: Float32Array, nHeads: number, tokens: number, past: number, cos: Float64Array, sin: Float64Array): void {
  const half = headDim / 2;
  for (let r = 0; r < x.length / (nHeads * headDim); r++) {
    const p = (past + (r % tokens)) * half;
    for (let h = 0; h < nHeads; h++) {
      const base = (r * nHeads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const a = x[base + i], b = x[base + half + i], c = cos[p + i], s = sin[p + i];
        x[base + i] = a * c - b * s;
        x[base + half + i] = b * c + a * s;
      }
    }
  }
}
const tables = ropeTables(theta, capacity, headDim);
const cos64 = Float64Array.from(tables.cos.toFloat32()), sin64 = Float64Array.from(tables.sin.toFloat32());

const rows: string[][] = [['op', 'case', 'current ms', 'op ms', 'current / op']];
const runs = (tokens: number) => (quick ? 3 : tokens >= 512 ? 7 : tokens >= 128 ? 15 : 51);
const cases: [number, number][] = quick ? [[32, 0], [1, 31]] : [[128, 0], [512, 0], [1, 127], [1, 511]];
const totals = new Map<string, [number, number]>();

function record(op: string, label: string, current: number, native: number): void {
  rows.push([op, label, current.toFixed(3), native.toFixed(3), `${(current / native).toFixed(1)}x`]);
  const t = totals.get(label) ?? [0, 0];
  totals.set(label, [t[0] + current, t[1] + native]);
}

for (const [tokens, past] of cases) {
  const label = tokens === 1 ? `decode after ${past}` : `prefill ${tokens}`;
  const n = runs(tokens);
  // Attention: q [tokens, heads * headDim] against the cache holding past + tokens positions.
  const q = randomTensor([tokens, heads * headDim], 'f32', tokens);
  const qData = q.data as Float32Array;
  const positions = Int32Array.from({ length: tokens }, (_, t) => past + t);
  const current = await timeAsync(() => attentionAsGemms(shape, keyData, valueData, qData, 1, tokens, past), { minRuns: n });
  const native = timeSync(() => attention(q, keys, values, { slots: [0], past, tokens, heads }), { minRuns: n });
  record('attention', label, current, native);

  // RMSNorm of the residual stream [tokens, hidden].
  const x = randomTensor([tokens, hidden], 'f32', 2), w = randomTensor([hidden], 'f32', 3);
  const xData = x.data as Float32Array, wData = w.data as Float32Array, outData = new Float32Array(tokens * hidden);
  const out = new Tensor('f32', [tokens, hidden], outData);
  record('rmsNorm', label, timeSync(() => jsRmsNorm(xData, hidden, wData, eps, outData), { minRuns: 4 * n }),
    timeSync(() => rmsNorm(x, w, { eps, out }), { minRuns: 4 * n }));

  // Rotary embeddings of q and k, in place (the ops on column blocks of a fused qkv output).
  const qkv = randomTensor([tokens, (heads + 2 * kvHeads) * headDim], 'f32', 4);
  const qBlock = columns(qkv, 0, heads * headDim), kBlock = columns(qkv, heads * headDim, kvHeads * headDim);
  const qJs = randomTensor([tokens, heads * headDim], 'f32', 5).data as Float32Array;
  const kJs = randomTensor([tokens, kvHeads * headDim], 'f32', 6).data as Float32Array;
  record('rope q+k', label, timeSync(() => {
    jsRope(qJs, heads, tokens, past, cos64, sin64);
    jsRope(kJs, kvHeads, tokens, past, cos64, sin64);
  }, { minRuns: 4 * n }), timeSync(() => {
    rope(qBlock, positions, { heads, headDim, cos: tables.cos, sin: tables.sin, inPlace: true });
    rope(kBlock, positions, { heads: kvHeads, headDim, cos: tables.cos, sin: tables.sin, inPlace: true });
  }, { minRuns: 4 * n }));

  // SwiGLU: today silu rides in the gate GEMM's epilogue and a JS loop multiplies; the op does both.
  const gate = randomTensor([tokens, intermediate], 'f32', 7), up = randomTensor([tokens, intermediate], 'f32', 8);
  const g = gate.data as Float32Array, u = up.data as Float32Array, prod = new Tensor('f32', [tokens, intermediate], new Float32Array(tokens * intermediate));
  const p = prod.data as Float32Array; // (the model multiplies into gate in place; a separate output keeps the inputs as they are)
  record('swiglu', label, timeSync(() => {
    for (let j = 0; j < g.length; j++) p[j] = g[j] * u[j];
  }, { minRuns: 4 * n }), timeSync(() => swiglu(gate, up, { out: prod }), { minRuns: 4 * n }));
}
for (const [label, [current, native]] of totals) rows.push(['all four', label, current.toFixed(3), native.toFixed(3), `${(current / native).toFixed(1)}x`]);
console.log('\n== one layer\'s ops beyond GEMM, batch 1 (medians)');
printTable(rows, (c) => c >= 2);
