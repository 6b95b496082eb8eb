// The ops beyond GEMM (src/ops.ts) against float64 references (model-reference.ts) at awkward sizes and
// every dtype combination, on views (column blocks, row strides), attention over a KV cache with ragged
// `past` (sequences of one batch at different cache lengths), every error path, the raw addon calls, and
// the GPU dispatch on the emulated GPU addon (test/gpu_emulator.ts).
import { afterEach, describe, expect, it } from 'vitest';
import {
  type DType, DTYPES, Tensor, activate, add, argmax, attention, cast, embedding, kvStore, layerNorm, rmsNorm, rope, ropeTables,
  softmax, swiglu, tensor, zeros,
} from '../src/index.js';
import { type OpDesc, OP_KINDS, cpuNative, setGpuAddonForTesting } from '../src/native.js';
import { columns, matrixView, runOp, runOpAsync } from '../src/ops.js';
import { EmulatedGpu } from './gpu_emulator.js';
import { EPS, activate as refActivate, randTensor, rng, roundTo, values } from './helpers.js';
import { refArgmax, refAttention, refLayerNorm, refRmsNorm, refRope, refSoftmax, refSwiglu } from './model-reference.js';

const SIZES: [number, number][] = [[1, 1], [7, 7], [45, 45], [3, 77], [2, 127], [127, 3], [5, 300]];

/** Asserts |got - want| <= tol(i) + one rounding to `dtype` (f16 below its normal range: 2^-25). */
function expectClose(got: Tensor, want: Float64Array, tol: (i: number) => number, label: string): void {
  const g = got.toFloat32();
  expect(g.length, label).toBe(want.length);
  for (let i = 0; i < g.length; i++) {
    const bound = tol(i) + EPS[got.dtype] * Math.abs(want[i]) + (got.dtype === 'f16' ? 2 ** -25 : 1e-37);
    if (!(Math.abs(g[i] - want[i]) <= bound)) {
      throw new Error(`${label}: element ${i} is ${g[i]}, want ${want[i]} (tolerance ${bound.toExponential(2)})`);
    }
  }
}

/** (8 + 4 sqrt(n)) f32 ulps: a reduction over n terms with f32 partial sums. */
const sumUlps = (n: number) => (8 + 4 * Math.sqrt(n)) * EPS.f32;

function otherDtype(d: DType, k: number): DType {
  return DTYPES[(DTYPES.indexOf(d) + k) % 3];
}

describe('row ops against float64', () => {
  it('rmsNorm and layerNorm, every size and dtype combination, with and without a bias', () => {
    for (const [rows, cols] of SIZES) {
      for (const dx of DTYPES) {
        for (const dout of DTYPES) {
          const x = randTensor([rows, cols], dx, rows * 31 + cols);
          const w = randTensor([cols], otherDtype(dx, 1), 5), b = randTensor([cols], otherDtype(dx, 1), 6);
          const xv = values(x), wv = values(w), bv = values(b);
          const label = `[${rows}, ${cols}] ${dx} -> ${dout}`;
          const r = rmsNorm(x, w, { eps: 1e-5, outDtype: dout });
          expect(r.dtype).toBe(dout);
          expect(r.shape).toEqual([rows, cols]);
          const rWant = refRmsNorm(xv, cols, wv, 1e-5);
          expectClose(r, rWant, (i) => sumUlps(cols) * Math.abs(rWant[i]), `rmsNorm ${label}`);
          for (const bias of [b, undefined]) {
            const l = layerNorm(x, w, bias, { eps: 1e-3, outDtype: dout });
            const lWant = refLayerNorm(xv, cols, wv, bias ? bv : undefined, 1e-3);
            // Centring costs up to the row's largest magnitude: the error scales with it, not with the result.
            const row = (i: number) => Math.floor(i / cols);
            const rowMax = (i: number) => Math.max(...xv.subarray(row(i) * cols, (row(i) + 1) * cols).map(Math.abs));
            const inv = (i: number) => {
              const rr = xv.subarray(row(i) * cols, (row(i) + 1) * cols);
              const mean = rr.reduce((s, v) => s + v, 0) / cols;
              return 1 / Math.sqrt(rr.reduce((s, v) => s + (v - mean) ** 2, 0) / cols + 1e-3);
            };
            expectClose(l, lWant, (i) => sumUlps(cols) * (2 * rowMax(i) * inv(i) * Math.abs(wv[i % cols]) + Math.abs(bias ? bv[i % cols] : 0)), `layerNorm ${label}`);
          }
        }
      }
    }
  });

  it('softmax, swiglu (fused and two inputs), add, activate and cast', () => {
    for (const [rows, cols] of SIZES) {
      for (const dx of DTYPES) {
        const dout = otherDtype(dx, 2);
        const label = `[${rows}, ${cols}] ${dx} -> ${dout}`;
        const x = randTensor([rows, cols], dx, rows + 7 * cols), y = randTensor([rows, cols], otherDtype(dx, 1), cols);
        const xv = values(x), yv = values(y);
        const sWant = refSoftmax(xv.map((v) => 4 * v), cols);
        const sIn = tensor(xv.map((v) => 4 * v), [rows, cols], dx); // x4 is exact in every dtype
        expectClose(softmax(sIn, { outDtype: dout }), sWant, (i) => sumUlps(cols) * sWant[i], `softmax ${label}`);
        const gWant = refSwiglu(xv, yv);
        expectClose(swiglu(x, y, { outDtype: dout }), gWant, (i) => 16 * EPS.f32 * Math.abs(xv[i] * yv[i]), `swiglu ${label}`);
        const aWant = xv.map((v, i) => v + yv[i]);
        expectClose(add(x, y, { outDtype: dout }), aWant, (i) => EPS.f32 * (Math.abs(xv[i]) + Math.abs(yv[i])), `add ${label}`);
        for (const act of ['relu', 'gelu', 'silu'] as const) {
          const wide = tensor(xv.map((v) => 24 * v), [rows, cols], dx); // reaches exp's and erf's tails
          const wv = values(wide), want = wv.map((v) => refActivate(act, v));
          expectClose(activate(wide, act, { outDtype: dout }), want, (i) => 16 * EPS.f32 * Math.abs(wv[i]), `${act} ${label}`);
        }
        const c = cast(x, dout);
        expect(c.dtype).toBe(dout);
        expect([...c.toFloat32()]).toEqual([...xv].map((v) => roundTo(dout, v)));
        // Fused gate/up: [rows, 2I] with gate the first half of the columns.
        const fused = tensor(Float64Array.from({ length: rows * 2 * cols }, (_, i) => (Math.floor(i / cols) % 2 === 0 ? xv : yv)[Math.floor(i / (2 * cols)) * cols + (i % cols)]), [rows, 2 * cols], dx === 'f32' ? 'f32' : dx);
        const fWant = refSwiglu(values(fused).filter((_, i) => i % (2 * cols) < cols), values(fused).filter((_, i) => i % (2 * cols) >= cols));
        const f = swiglu(fused, undefined, { outDtype: dout });
        expect(f.shape).toEqual([rows, cols]);
        expectClose(f, fWant, (i) => 16 * EPS.f32 * 4, `fused swiglu ${label}`);
      }
    }
  });

  it('argmax: ties go to the lowest index, NaN never wins, an all-NaN row gives 0; on every dtype', () => {
    const rowsIn = [[1, 3, 3, 2], [NaN, 1, NaN, 1], [NaN, NaN, NaN, NaN], [-Infinity, -Infinity, -Infinity, -Infinity], [NaN, -Infinity, 5, NaN], [-1, -2, -0.5, -7]];
    for (const dtype of DTYPES) {
      const x = tensor(rowsIn.flat(), [rowsIn.length, 4], dtype);
      expect([...argmax(x)]).toEqual(refArgmax(values(x), 4));
    }
    for (const [rows, cols] of SIZES) {
      const x = randTensor([rows, cols], 'bf16', rows * cols); // bf16: many ties
      expect([...argmax(x)], `[${rows}, ${cols}]`).toEqual(refArgmax(values(x), cols));
    }
    expect(argmax(zeros([0, 5]))).toEqual(new Int32Array(0));
  });

  it('embedding gathers rows by id in any dtype pair', () => {
    for (const dx of DTYPES) {
      const table = randTensor([50, 77], dx, 3);
      const ids = [49, 0, 7, 7, 13];
      for (const dout of DTYPES) {
        const e = embedding(table, Int32Array.from(ids), { outDtype: dout });
        expect(e.shape).toEqual([5, 77]);
        const tv = values(table);
        expect([...e.toFloat32()]).toEqual(ids.flatMap((id) => [...tv.subarray(id * 77, (id + 1) * 77)].map((v) => roundTo(dout, v))));
      }
      expect(embedding(table, []).shape).toEqual([0, 77]);
    }
  });

  it('in place (out is x), higher ranks and zero-sized shapes', () => {
    const x = randTensor([2, 3, 45], 'f32', 9), w = randTensor([45], 'f32', 10);
    const want = refRmsNorm(values(x), 45, values(w), 1e-6);
    expect(rmsNorm(x, w, { eps: 1e-6, out: x })).toBe(x);
    expect(x.shape).toEqual([2, 3, 45]);
    expectClose(x, want, (i) => sumUlps(45) * Math.abs(want[i]), 'rmsNorm in place');
    const r = randTensor([7, 9], 'f32', 11), s = randTensor([7, 9], 'f32', 12);
    const sum = values(r).map((v, i) => v + values(s)[i]);
    expect(add(r, s, { out: r })).toBe(r);
    expectClose(r, sum, () => 2 * EPS.f32, 'add in place');
    for (const shape of [[0, 5], [4, 0], [0]]) {
      expect(softmax(zeros(shape)).shape).toEqual(shape);
      expect(rmsNorm(zeros(shape), zeros([shape.at(-1)!]), { eps: 1e-5 }).shape).toEqual(shape);
    }
  });
});

describe('views: column blocks and row strides, without copies', () => {
  it('rmsNorm writes into a column block of a wider tensor; the other columns stay untouched', () => {
    const x = randTensor([5, 77], 'f32', 1), w = randTensor([77], 'bf16', 2);
    const wide = tensor(new Float32Array(5 * 100).fill(7), [5, 100]);
    rmsNorm(x, w, { eps: 1e-5, out: columns(wide, 10, 77) });
    const want = refRmsNorm(values(x), 77, values(w), 1e-5);
    const got = wide.toFloat32();
    for (let r = 0; r < 5; r++) {
      for (let c = 0; c < 100; c++) {
        const v = got[r * 100 + c];
        if (c < 10 || c >= 87) expect(v).toBe(7);
        else expect(Math.abs(v - want[r * 77 + c - 10])).toBeLessThanOrEqual(sumUlps(77) * Math.abs(want[r * 77 + c - 10]) + 1e-37);
      }
    }
  });

  it('rope on the q and k blocks of a fused qkv output, in place, and on a copy', () => {
    const heads = 4, kvHeads = 2, d = 64, rows = 9;
    const qkv = randTensor([rows, (heads + 2 * kvHeads) * d], 'f32', 3);
    const before = values(qkv);
    const { cos, sin } = ropeTables(10000, 64, d);
    const positions = Int32Array.from({ length: rows }, (_, r) => (r * 7) % 64);
    const q = columns(qkv, 0, heads * d), k = columns(qkv, heads * d, kvHeads * d);
    const copy = rope(q, positions, { heads, headDim: d, cos, sin });
    expect(copy.shape).toEqual([rows, heads * d]);
    expect(values(qkv)).toEqual(before); // a copy leaves qkv alone
    rope(q, positions, { heads, headDim: d, cos, sin, inPlace: true });
    rope(k, positions, { heads: kvHeads, headDim: d, cos, sin, inPlace: true });
    const cv = values(cos), sv = values(sin), after = values(qkv), cols = (heads + 2 * kvHeads) * d;
    const block = (src: Float64Array, c0: number, w: number) => Float64Array.from({ length: rows * w }, (_, i) => src[Math.floor(i / w) * cols + c0 + (i % w)]);
    const qWant = refRope(block(before, 0, heads * d), heads, d, positions, cv, sv);
    const kWant = refRope(block(before, heads * d, kvHeads * d), kvHeads, d, positions, cv, sv);
    const tol = (x: Float64Array) => (i: number) => 4 * EPS.f32 * 2 * Math.max(...x.map(Math.abs));
    expectClose(tensor(block(after, 0, heads * d), [rows, heads * d]), qWant, tol(before), 'rope q block');
    expectClose(tensor(block(after, heads * d, kvHeads * d), [rows, kvHeads * d]), kWant, tol(before), 'rope k block');
    expectClose(copy, qWant, tol(before), 'rope copy');
    expect(block(after, (heads + kvHeads) * d, kvHeads * d)).toEqual(block(before, (heads + kvHeads) * d, kvHeads * d)); // v untouched
  });

  it('rope on 16-bit rows, odd head counts, head_dim 6 and 128', () => {
    for (const [heads, d] of [[3, 6], [1, 128], [5, 2]]) {
      for (const dtype of DTYPES) {
        const x = randTensor([7, heads * d], dtype, heads * d);
        const { cos, sin } = ropeTables(500000, 300, d);
        const positions = Array.from({ length: 7 }, (_, r) => (r * 41 + 3) % 300);
        const want = refRope(values(x), heads, d, positions, values(cos), values(sin));
        expectClose(rope(x, positions, { heads, headDim: d, cos, sin }), want, () => 8 * EPS.f32, `rope ${heads}x${d} ${dtype}`);
      }
    }
  });

  it('ropeTables are cos and sin of p * theta^(-2i/d), computed in float64 and rounded once', () => {
    const { cos, sin } = ropeTables(10000, 130, 64);
    expect(cos.shape).toEqual([130, 32]);
    const c = cos.toFloat32(), s = sin.toFloat32();
    for (const [p, i] of [[0, 0], [1, 0], [129, 31], [77, 5]]) {
      const a = p / 10000 ** ((2 * i) / 64);
      expect(c[p * 32 + i]).toBe(Math.fround(Math.cos(a)));
      expect(s[p * 32 + i]).toBe(Math.fround(Math.sin(a)));
    }
  });
});

// A KV cache [slots, kvHeads, capacity, headDim] filled through kvStore with random keys and values.
function cacheWith(slots: number, kvHeads: number, capacity: number, d: number, seed: number) {
  const keys = zeros([slots, kvHeads, capacity, d]), vals = zeros([slots, kvHeads, capacity, d]);
  const r = rng(seed);
  const k = keys.data as Float32Array, v = vals.data as Float32Array;
  for (let i = 0; i < k.length; i++) [k[i], v[i]] = [r() * 2 - 1, r() * 2 - 1];
  return { keys, vals };
}

// Tolerance of attention: scores off by ~sqrt(d) ulps of their magnitude, the weighted sum by ~sqrt(span).
function attentionTolerance(span: number, d: number) {
  return (16 + 4 * Math.sqrt(span) + 4 * Math.sqrt(d)) * EPS.f32;
}

describe('attention over the KV cache', () => {
  const shapes = [
    { heads: 1, kvHeads: 1, d: 64, tokens: 1, past: [0] },                 // one position
    { heads: 16, kvHeads: 4, d: 64, tokens: 1, past: [127] },              // decode, GQA 4
    { heads: 8, kvHeads: 1, d: 128, tokens: 1, past: [300, 5] },           // GQA 8, ragged past
    { heads: 4, kvHeads: 4, d: 7, tokens: 1, past: [0, 77, 200] },         // GQA 1, odd head_dim, ragged
    { heads: 4, kvHeads: 1, d: 64, tokens: 70, past: [0] },                // prefill crossing key tiles
    { heads: 8, kvHeads: 8, d: 45, tokens: 9, past: [5, 0] },              // ragged prefill
    { heads: 16, kvHeads: 2, d: 128, tokens: 3, past: [64, 0, 129] },      // chunks of 3 tokens, ragged
  ];
  for (const s of shapes) {
    it(`heads ${s.heads}/${s.kvHeads}, head_dim ${s.d}, ${s.tokens} token(s) after past ${s.past.join(', ')}`, () => {
      const batch = s.past.length, capacity = Math.max(...s.past) + s.tokens + 2, slotCount = batch + 1;
      const slots = s.past.map((_, b) => (b * 2 + 1) % slotCount); // not in order
      const { keys, vals } = cacheWith(slotCount, s.kvHeads, capacity, s.d, s.d + s.tokens);
      for (const dtype of DTYPES) {
        const q = randTensor([batch * s.tokens, s.heads * s.d], dtype, s.heads);
        const out = attention(q, keys, vals, { slots, past: s.past, tokens: s.tokens, heads: s.heads, outDtype: 'f32' });
        expect(out.shape).toEqual([batch * s.tokens, s.heads * s.d]);
        const want = refAttention(values(q), values(keys), values(vals), {
          heads: s.heads, kvHeads: s.kvHeads, headDim: s.d, capacity, tokens: s.tokens, slots, past: s.past, scale: 1 / Math.sqrt(s.d),
        });
        const tol = attentionTolerance(Math.max(...s.past) + s.tokens, s.d);
        expectClose(out, want, () => tol, `attention ${dtype}`);
        const half = attention(q, keys, vals, { slots, past: s.past, tokens: s.tokens, heads: s.heads, outDtype: 'bf16' });
        expectClose(half, want, () => tol, `attention ${dtype} -> bf16`);
      }
    });
  }

  it('a batch joined at different times: prefill, kvStore and decode steps per sequence match one ragged batch', () => {
    // Three requests, cached 0, 17 and 130 positions; each then decodes 3 steps in one batch.
    const heads = 8, kvHeads = 2, d = 64, capacity = 140, past = [0, 17, 130], slots = [2, 0, 1];
    const { keys, vals } = cacheWith(3, kvHeads, capacity, d, 99);
    const keys64 = values(keys), vals64 = values(vals);
    let cached = [...past];
    for (let step = 0; step < 3; step++) {
      const k = randTensor([3, kvHeads * d], 'bf16', 10 + step), v = randTensor([3, kvHeads * d], 'f32', 20 + step);
      kvStore(keys, k, { slots, past: cached, tokens: 1 });
      kvStore(vals, v, { slots, past: cached, tokens: 1 });
      // The stores landed where the reference puts them.
      for (let b = 0; b < 3; b++) {
        for (let h = 0; h < kvHeads; h++) {
          const at = ((slots[b] * kvHeads + h) * capacity + cached[b]) * d;
          keys64.set(values(k).subarray((b * kvHeads + h) * d, (b * kvHeads + h + 1) * d), at);
          vals64.set(values(v).subarray((b * kvHeads + h) * d, (b * kvHeads + h + 1) * d), at);
        }
      }
      expect(values(keys)).toEqual(keys64);
      expect(values(vals)).toEqual(vals64);
      const q = randTensor([3, heads * d], 'f32', 30 + step);
      const out = attention(q, keys, vals, { slots, past: cached, tokens: 1, heads, kvHeads, headDim: d, scale: 0.2 });
      const want = refAttention(values(q), keys64, vals64, { heads, kvHeads, headDim: d, capacity, tokens: 1, slots, past: cached, scale: 0.2 });
      expectClose(out, want, () => attentionTolerance(140, d), `step ${step}`);
      cached = cached.map((p) => p + 1);
    }
  });

  it('prefill of T tokens equals T decode steps (causality)', () => {
    const heads = 4, kvHeads = 2, d = 16, T = 20;
    const { keys, vals } = cacheWith(1, kvHeads, T, d, 5);
    const q = randTensor([T, heads * d], 'f32', 6);
    const all = attention(q, keys, vals, { slots: [0], past: 0, tokens: T, heads }).toFloat32();
    for (const t of [0, 1, 13, 19]) {
      const one = attention(matrixView(q, { offset: t * heads * d, rows: 1, cols: heads * d }), keys, vals, { slots: [0], past: t, tokens: 1, heads });
      const o = one.toFloat32();
      for (let i = 0; i < heads * d; i++) expect(Math.abs(o[i] - all[t * heads * d + i])).toBeLessThanOrEqual(1e-6);
    }
  });

  it('q as a column block of a fused qkv tensor, out into a column block', () => {
    const heads = 4, kvHeads = 2, d = 32;
    const qkv = randTensor([6, (heads + 2 * kvHeads) * d], 'f32', 1);
    const { keys, vals } = cacheWith(2, kvHeads, 8, d, 2);
    const wide = tensor(new Float32Array(6 * 200).fill(-3), [6, 200]);
    attention(columns(qkv, 0, heads * d), keys, vals, { slots: [1, 0], past: [2, 5], tokens: 3, heads, out: columns(wide, 40, heads * d) });
    const dense = attention(tensor(values(qkv).filter((_, i) => i % ((heads + 2 * kvHeads) * d) < heads * d), [6, heads * d]), keys, vals, {
      slots: [1, 0], past: [2, 5], tokens: 3, heads,
    }).toFloat32();
    const w = wide.toFloat32();
    for (let r = 0; r < 6; r++) {
      for (let c = 0; c < 200; c++) {
        if (c < 40 || c >= 40 + heads * d) expect(w[r * 200 + c]).toBe(-3);
        else expect(w[r * 200 + c]).toBe(dense[r * heads * d + c - 40]);
      }
    }
  });
});

describe('errors name the argument and the shapes', () => {
  const x = randTensor([3, 8], 'f32', 1);
  const w = randTensor([8], 'f32', 2);
  const { keys, vals } = cacheWith(2, 2, 4, 4, 3);
  const q = randTensor([2, 8], 'f32', 4);
  const { cos, sin } = ropeTables(10000, 4, 4);

  it('row ops', () => {
    expect(() => rmsNorm(x, randTensor([7], 'f32', 1), { eps: 1e-5 })).toThrow(new RangeError('rmsNorm: weight is [7] but x has 8 columns (expected [8])'));
    expect(() => rmsNorm(x, w, { eps: -1 })).toThrow(/rmsNorm: eps must be a finite number >= 0, got -1/);
    expect(() => rmsNorm(x, w, {} as never)).toThrow(RangeError);
    expect(() => rmsNorm(x, w, { eps: 1e-5, bogus: 1 } as never)).toThrow(new TypeError("rmsNorm: unknown option 'bogus' (known: eps, outDtype, out)"));
    expect(() => rmsNorm([1, 2] as never, w, { eps: 1e-5 })).toThrow(/rmsNorm: x must be a Tensor/);
    expect(() => rmsNorm(x, w, { eps: 1e-5, out: zeros([3, 7]) })).toThrow(new RangeError('rmsNorm: out is [3, 7] but the result is [3, 8]'));
    expect(() => rmsNorm(x, w, { eps: 1e-5, out: zeros([3, 8], 'bf16'), outDtype: 'f32' })).toThrow(/outDtype is 'f32' but out is bf16/);
    expect(() => rmsNorm(x, w, { eps: 1e-5, outDtype: 'f64' as DType })).toThrow(/outDtype must be 'f32', 'f16' or 'bf16'/);
    expect(() => layerNorm(x, w, randTensor([8], 'bf16', 1), { eps: 1e-5 })).toThrow(/weight is f32 but bias is bf16/);
    expect(() => softmax(tensor([1], []))).toThrow(/softmax: x is a scalar/);
    expect(() => add(x, randTensor([3, 9], 'f32', 1))).toThrow(new RangeError('add: x is [3, 8] but y is [3, 9]'));
    expect(() => swiglu(randTensor([3, 7], 'f32', 1))).toThrow(/swiglu: a fused gate\/up input has an even number of columns; gate is \[3, 7\]/);
    expect(() => swiglu(x, randTensor([2, 8], 'f32', 1))).toThrow(new RangeError('swiglu: gate is [3, 8] but up is [2, 8]'));
    expect(() => activate(x, 'tanh' as never)).toThrow(/activation must be 'relu', 'gelu' or 'silu', got "tanh"/);
    expect(() => activate(x, 'none' as never)).toThrow(TypeError);
    expect(() => cast(x, 'int8' as DType)).toThrow(/cast: dtype must be/);
    expect(() => argmax(zeros([2, 0]))).toThrow(/argmax: x is \[2, 0\]; rows of no values have no argmax/);
    expect(() => embedding(randTensor([4, 3], 'f32', 1), [0, 4])).toThrow(new RangeError("embedding: ids[1] = 4 is outside the table's [0, 4)"));
    expect(() => embedding(randTensor([4, 3], 'f32', 1), [0.5])).toThrow(/ids\[0\] is 0.5; expected an integer/);
    expect(() => embedding(randTensor([12], 'f32', 1), [0])).toThrow(/table is \[12\]; expected \[vocab, dim\]/);
    // out may be x exactly, not a shifted part of it.
    expect(() => add(x, w.reshape([1, 8]), { out: matrixView(x, { offset: 1, rows: 1, cols: 8 }) } as never)).toThrow(RangeError);
    expect(() => softmax(columns(x, 0, 4), { out: columns(x, 4, 4) })).not.toThrow(); // disjoint blocks
    expect(() => softmax(columns(x, 0, 5), { out: columns(x, 3, 5) })).toThrow(/out shares memory with x/);
    expect(() => cast(x, 'f32', { out: x })).toThrow(/out shares memory with x/);
  });

  it('views', () => {
    expect(() => columns(x, 5, 4)).toThrow(new RangeError('columns: [5, 9) is not inside the 8 columns of [3, 8]'));
    expect(() => matrixView(x, { offset: 1, rows: 3, cols: 8 })).toThrow(/spans 25 elements but the tensor \[3, 8\] has 24/);
    expect(() => matrixView(x, { rows: 2, cols: 8, ld: 4 })).toThrow(/ld = 4 is less than cols = 8/);
    expect(() => softmax({ tensor: x, offset: 20, rows: 1, cols: 8, ld: 8 } as never)).toThrow(/softmax: x: \[1, 8\] with ld 8 from element 20 spans 28/);
  });

  it('rope', () => {
    expect(() => rope(q, [0, 1], { heads: 2, headDim: 3, cos, sin })).toThrow(/headDim even and >= 2/);
    expect(() => rope(q, [0, 1], { heads: 3, headDim: 4, cos, sin })).toThrow(new RangeError('rope: x is [2, 8] but heads * headDim = 3 * 4 = 12'));
    expect(() => rope(q, [0, 4], { heads: 2, headDim: 4, cos, sin })).toThrow(new RangeError("rope: positions[1] = 4 is outside the tables' [0, 4)"));
    expect(() => rope(q, [0], { heads: 2, headDim: 4, cos, sin })).toThrow(/positions has 1 entries; expected 2/);
    expect(() => rope(q, [0, 1], { heads: 2, headDim: 4, cos: cos.toDType('bf16'), sin })).toThrow(/cos is bf16 \[4, 2\]; expected f32 \[positions, 2\]/);
    expect(() => rope(q, [0, 1], { heads: 2, headDim: 4, cos, sin, inPlace: true, out: zeros([2, 8]) })).toThrow(/give inPlace or out, not both/);
    expect(() => ropeTables(-1, 4, 4)).toThrow(/theta must be a positive number/);
    expect(() => ropeTables(10000, 4, 5)).toThrow(/headDim must be even/);
  });

  it('kvStore and attention', () => {
    const q16 = randTensor([2, 16], 'f32', 4);
    const opts = { slots: [0, 1], past: [0, 3], tokens: 1, heads: 4 };
    expect(() => attention(q16, keys, vals, { ...opts, past: [0, 4] })).toThrow(new RangeError('attention: sequence 1: past = 4 plus 1 new positions exceed the cache capacity of 4'));
    expect(() => attention(q16, keys, vals, { ...opts, slots: [0, 2] })).toThrow(new RangeError("attention: slots[1] = 2 is outside the cache's [0, 2)"));
    expect(() => attention(q16, keys, vals, { ...opts, slots: [0] })).toThrow(/2 rows but 1 sequences \(slots\) x 1 tokens = 1/);
    expect(() => attention(q16, keys, vals, { ...opts, heads: 3 })).toThrow(/heads = 3 is not a positive multiple of kvHeads = 2/);
    expect(() => attention(q16, keys, vals, { ...opts, headDim: 8 })).toThrow(/headDim is 8 but the cache \[2, 2, 4, 4\] has 4/);
    expect(() => attention(randTensor([2, 12], 'f32', 1), keys, vals, opts)).toThrow(new RangeError('attention: q is [2, 12] but heads * headDim = 4 * 4 = 16'));
    expect(() => attention(q16, keys, zeros([2, 2, 4, 5]), opts)).toThrow(/keys are \[2, 2, 4, 4\] but values are f32 \[2, 2, 4, 5\]/);
    expect(() => attention(q16, zeros([2, 2, 4, 4], 'bf16'), vals, opts)).toThrow(/keys is bf16 \[2, 2, 4, 4\]; expected f32 \[slots, kvHeads, capacity, headDim\]/);
    expect(() => attention(q16, keys, vals, { ...opts, scale: NaN })).toThrow(/scale must be a finite number/);
    expect(() => attention(q16, keys, vals, { ...opts, out: keys } as never)).toThrow(RangeError);
    expect(() => kvStore(keys, randTensor([2, 8], 'f32', 1), { slots: [1, 1], past: 0, tokens: 1 })).toThrow(/slots \[1,1\] name one slot twice/);
    expect(() => kvStore(keys, randTensor([2, 6], 'f32', 1), { slots: [0, 1], past: 0, tokens: 1 })).toThrow(/x is \[2, 6\] but the cache holds kvHeads \* headDim = 8 per position/);
    expect(() => kvStore(keys, randTensor([2, 8], 'f32', 1), { slots: [0, 1], past: 0, tokens: 0 })).toThrow(/tokens must be >= 1/);
    expect(() => kvStore(keys, keys.reshape([8, 8]) as never, { slots: [0, 1, 0, 1], past: 0, tokens: 2 })).toThrow(/slots .* name one slot twice|shares memory/);
  });
});

describe('the raw addon calls check every extent and index', () => {
  const native = cpuNative();
  const base = (over: Partial<OpDesc>): OpDesc => ({ kind: OP_KINDS.softmax, rows: 2, cols: 4, ldx: 4, ldout: 4, x: new Float32Array(8), out: new Float32Array(8), ...over });
  it('rejects malformed descriptions with TypeError / RangeError', () => {
    expect(() => native.opSync(base({ x: new Float32Array(7) }))).toThrow(new RangeError('gemmkit native: x has 7 elements but the op spans 8'));
    expect(() => native.opSync(base({ ldx: 3 }))).toThrow(/softmax: ldx = 3 is less than cols = 4/);
    expect(() => native.opSync(base({ x: new Uint16Array(8) }))).toThrow(new TypeError('gemmkit native: x must be a Float32Array for f32'));
    expect(() => native.opSync(base({ out: undefined }))).toThrow(/out is missing/);
    expect(() => native.opSync(base({ kind: 99 }))).toThrow(/kind = 99/);
    expect(() => native.opSync(base({ rows: -1 }))).toThrow(RangeError);
    expect(() => native.opSync(base({ dtypeX: 'f64' as DType }))).toThrow(/dtypeX must be 'f32', 'f16' or 'bf16'/);
    expect(() => native.opSync({ kind: OP_KINDS.embedding, rows: 2, cols: 4, ldx: 4, ldout: 4, vocab: 2, x: new Float32Array(8), out: new Float32Array(8), ids: new Int32Array([0, 2]) }))
      .toThrow(/embedding: ids\[1\] = 2 is outside the table's \[0, 2\)/);
    expect(() => native.opSync({ kind: OP_KINDS.embedding, rows: 2, cols: 4, ldx: 4, ldout: 4, vocab: 2, x: new Float32Array(8), out: new Float32Array(8), ids: new Int32Array([0]) }))
      .toThrow(/ids has 1 elements but the op reads 2/);
    expect(() => native.opSync({ kind: OP_KINDS.argmax, rows: 2, cols: 4, ldx: 4, x: new Float32Array(8), idsOut: [0, 0] as never })).toThrow(/idsOut must be an Int32Array/);
    expect(() => native.opSync(base({ kind: OP_KINDS.attention, heads: 2, kvHeads: 2, headDim: 2, batch: 2, tokens: 1, slots: 1, capacity: 2, kCache: new Float32Array(8), vCache: new Float32Array(8), slotIndex: new Int32Array([0, 1]), past: new Int32Array([0, 0]) })))
      .toThrow(/attention: slotIndex\[1\] = 1 is outside the cache's \[0, 1\)/);
  });

  it('opAsync runs off the event loop and rejects like opSync throws', async () => {
    const x = randTensor([64, 300], 'f32', 1);
    const out = zeros([64, 300]);
    await runOpAsync('test', 'softmax', { rows: 64, cols: 300 }, { x: matrixView(x, { rows: 64, cols: 300 }), out: matrixView(out, { rows: 64, cols: 300 }) });
    expect([...out.toFloat32()]).toEqual([...softmax(x).toFloat32()]);
    expect(() => native.opAsync(base({ x: new Float32Array(3) }))).toThrow(RangeError);
  });

  it('runOp checks that all operands are on one device', () => {
    const gpu = new EmulatedGpu('cuda', 1, 1 << 20);
    setGpuAddonForTesting('cuda', gpu);
    try {
      const a = randTensor([2, 4], 'f32', 1), b = a.to('cuda:0');
      expect(() => add(a, b)).toThrow(/add: x is on cpu but y is on cuda:0/);
      expect(() => runOp('t', 'add', { rows: 2, cols: 4 }, { x: matrixView(a, { rows: 2, cols: 4 }), y: matrixView(b, { rows: 2, cols: 4 }), out: matrixView(a, { rows: 2, cols: 4 }) }))
        .toThrow(/t: x is on cpu but y is on cuda:0/);
    } finally {
      setGpuAddonForTesting('cuda', undefined);
    }
  });
});

describe('on a GPU device (emulated GPU addon)', () => {
  afterEach(() => setGpuAddonForTesting('cuda', undefined));

  it('every op runs through the GPU addon\'s opSync with { buffer, byteOffset } operands, results on the device', () => {
    const gpu = new EmulatedGpu('cuda', 1, 64 << 20);
    setGpuAddonForTesting('cuda', gpu);
    const dev = 'cuda:0' as const;
    const heads = 4, kvHeads = 2, d = 16;
    const qkv = randTensor([6, (heads + 2 * kvHeads) * d], 'f32', 1);
    const w = randTensor([heads * d], 'bf16', 2);
    const { cos, sin } = ropeTables(10000, 16, d);
    const positions = [0, 1, 2, 3, 4, 5];
    const { keys, vals } = cacheWith(2, kvHeads, 8, d, 3);
    const onDevice = { qkv: qkv.to(dev), w: w.to(dev), cos: cos.to(dev), sin: sin.to(dev), keys: keys.to(dev), vals: vals.to(dev) };
    // The same sequence of ops on the CPU and on the device.
    const run = (t: typeof onDevice) => {
      const cols = (heads + 2 * kvHeads) * d;
      const q = columns(t.qkv, 0, heads * d), k = columns(t.qkv, heads * d, kvHeads * d), v = columns(t.qkv, (heads + kvHeads) * d, kvHeads * d);
      rope(q, positions, { heads, headDim: d, cos: t.cos, sin: t.sin, inPlace: true });
      rope(k, positions, { heads: kvHeads, headDim: d, cos: t.cos, sin: t.sin, inPlace: true });
      kvStore(t.keys, k, { slots: [1, 0], past: [2, 0], tokens: 3 });
      kvStore(t.vals, v, { slots: [1, 0], past: [2, 0], tokens: 3 });
      const attn = attention(q, t.keys, t.vals, { slots: [1, 0], past: [2, 0], tokens: 3, heads });
      const normed = rmsNorm(attn, t.w, { eps: 1e-5 });
      const sum = add(normed, attn);
      const g = swiglu(matrixView(t.qkv, { rows: 6, cols: 2 * heads * d, ld: cols }));
      const out = [attn, normed, sum, g, activate(sum, 'gelu'), softmax(sum), cast(sum, 'bf16'), embedding(t.w.reshape([4, 16]), [3, 0])];
      return { out, ids: argmax(sum), keys: t.keys };
    };
    const host = run({ qkv, w, cos, sin, keys, vals });
    const device = run(onDevice);
    expect(device.ids).toEqual(host.ids);
    for (let i = 0; i < host.out.length; i++) {
      expect(device.out[i].device).toBe(dev);
      expect(device.out[i].shape).toEqual(host.out[i].shape);
      expect([...device.out[i].to('cpu').toFloat32()], `op ${i}`).toEqual([...host.out[i].toFloat32()]);
    }
    expect([...device.keys.to('cpu').toFloat32()]).toEqual([...host.keys.toFloat32()]);
    // Column blocks travel as byte offsets into one device buffer.
    const ropeK = gpu.opCalls.filter((c) => c.kind === OP_KINDS.rope)[1];
    expect(ropeK.x).toMatchObject({ byteOffset: heads * d * 4 });
    expect(ropeK.ldx).toBe((heads + 2 * kvHeads) * d);
    expect(ropeK.positions).toBeInstanceOf(Int32Array);
    expect(gpu.opCalls.map((c) => c.device)).toEqual(gpu.opCalls.map(() => 0));
  });

  it('a GPU addon without ops says to rebuild it', () => {
    const gpu = new EmulatedGpu('cuda', 1, 1 << 20) as EmulatedGpu & { opSync?: unknown };
    Object.defineProperty(gpu, 'opSync', { value: undefined });
    setGpuAddonForTesting('cuda', gpu);
    const x = randTensor([2, 4], 'f32', 1).to('cuda:0');
    expect(() => softmax(x)).toThrow(/softmax: the cuda addon has no ops beyond GEMM; rebuild it with `npm run build:cuda`/);
  });
});
