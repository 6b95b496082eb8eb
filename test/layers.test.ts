// Model layers against their float64 references (test/model-reference.ts and the reference GEMM).
import { describe, expect, it } from 'vitest';
import { type DType, DTYPES, Linear, Tensor, info, linearInputDtype, tensor } from '../src/index.js';
import type { Activation } from '../src/matmul.js';
import { gemmPolicy, addInPlace, applyActivation, embed, layerNorm, rmsNorm, softmaxRows } from '../src/models/layers.js';
import { expectMatches, randTensor, referenceMatmul, values } from './helpers.js';
import { refActivation, refLayerNorm, refRmsNorm, refSoftmax } from './model-reference.js';

/** Asserts |got - want| <= rtol * |want| + atol elementwise, naming the first element that is not. */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number, label: string): void {
  expect(got.length, `${label}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= rtol * Math.abs(want[i]) + atol)) {
      throw new Error(`${label}: element ${i} is ${got[i]}, want ${want[i]} (error ${err.toExponential(2)} > ${rtol} * |want| + ${atol})`);
    }
  }
}

const ACTS: Activation[] = ['none', 'relu', 'gelu', 'silu'];

describe('Linear: one GEMM with transB and the bias/activation epilogue', () => {
  const sizes: [number, number, number][] = [[1, 7, 5], [7, 45, 77], [45, 129, 33], [3, 1, 1], [0, 8, 4], [128, 96, 130]];
  for (const [m, inF, outF] of sizes) {
    it(`[${m}, ${inF}] x W[${outF}, ${inF}]^T, every weight dtype, bias, activation and residual`, async () => {
      let seed = m * 100 + inF;
      for (const wd of DTYPES) {
        for (const act of ACTS) {
          const x = randTensor([m, inF], 'f32', seed++);
          const w = randTensor([outF, inF], wd, seed++);
          const bias = act === 'none' ? undefined : randTensor([outF], wd, seed++);
          const lin = new Linear('test', w, bias, act);
          const y = await lin.forward(x);
          expect(y.dtype).toBe('f32');
          // The GEMM reads x in linearInputDtype(wd): bf16 weights may take x rounded to bf16.
          const xIn = x.toDType(linearInputDtype(wd));
          expectMatches(y, referenceMatmul(xIn, w, { transB: true, bias, activation: act }), inF, `Linear ${m}x${inF}->${outF} w=${wd} ${act}`);
          // Fused residual: r += x W^T, in place.
          const r = randTensor([m, outF], 'f32', seed++);
          const ref = referenceMatmul(xIn, w, { transB: true, c: r, beta: 1 });
          const plain = new Linear('test', w);
          const out = await plain.forward(x, r);
          expect(out).toBe(r);
          expectMatches(r, ref, inF, `Linear residual ${m}x${inF}->${outF} w=${wd}`);
        }
      }
    });
  }
  it('the sizes above run synchronously; the same Linear through the thread-pool path of gemm() agrees', async () => {
    expect(sizes.every(([m, i, o]) => m * i * o < gemmPolicy.syncBelowMacs)).toBe(true);
    const saved = gemmPolicy.syncBelowMacs;
    gemmPolicy.syncBelowMacs = 0; // every GEMM async, on the pool
    try {
      let seed = 4242;
      for (const [m, inF, outF] of [[45, 129, 33], [128, 96, 130]]) {
        for (const wd of DTYPES) {
          const x = randTensor([m, inF], 'f32', seed++);
          const w = randTensor([outF, inF], wd, seed++);
          const bias = randTensor([outF], 'f32', seed++);
          const y = await new Linear('test', w, bias, 'silu').forward(x);
          expectMatches(y, referenceMatmul(x.toDType(linearInputDtype(wd)), w, { transB: true, bias, activation: 'silu' }), inF, `async Linear ${m}x${inF}->${outF} w=${wd}`);
        }
      }
    } finally {
      gemmPolicy.syncBelowMacs = saved;
    }
  });
  it('rejects weights that are not [out, in] and biases of the wrong size', () => {
    expect(() => new Linear('fc', tensor([1, 2, 3], [3]))).toThrow(/fc: a Linear weight must be \[out, in\], got \[3\]/);
    expect(() => new Linear('fc', tensor([1, 2, 3, 4], [2, 2]), tensor([1, 2, 3], [3]))).toThrow(/fc: bias is \[3\] but the weight is \[2, 2\] \(expected \[2\]\)/);
  });
});

describe('elementwise layers, norms, softmax, embedding', () => {
  it('relu, gelu, silu', () => {
    const x = randTensor([257], 'f32', 5);
    const wide = Float32Array.from(x.toFloat32(), (v) => v * 8);
    for (const act of ['relu', 'gelu', 'silu'] as Activation[]) {
      const got = applyActivation(act, Float32Array.from(wide));
      expectClose(got, refActivation(Float64Array.from(wide), act), 3e-7, 1e-7, act);
    }
  });
  it('LayerNorm with and without bias', () => {
    for (const [rows, n] of [[1, 1], [3, 7], [5, 129]]) {
      const x = values(randTensor([rows, n], 'f32', n));
      const w = values(randTensor([n], 'f32', 2)), b = values(randTensor([n], 'f32', 3));
      for (const bias of [b, undefined]) {
        const got = layerNorm(Float32Array.from(x), n, Float32Array.from(w), bias && Float32Array.from(bias), 1e-5);
        expectClose(got, refLayerNorm(x, n, w, bias, 1e-5), 1e-6, 1e-6, `layerNorm ${rows}x${n}`);
      }
    }
  });
  it('RMSNorm, into a separate buffer and in place', () => {
    for (const [rows, n] of [[1, 1], [3, 7], [5, 129]]) {
      const x = values(randTensor([rows, n], 'f32', n + 1));
      const w = values(randTensor([n], 'f32', 4));
      const want = refRmsNorm(x, n, w, 1e-6);
      const src = Float32Array.from(x);
      expectClose(rmsNorm(src, n, Float32Array.from(w), 1e-6), want, 1e-6, 1e-7, `rmsNorm ${rows}x${n}`);
      expect([...src]).toEqual([...Float32Array.from(x)]); // input untouched
      expectClose(rmsNorm(src, n, Float32Array.from(w), 1e-6, src), want, 1e-6, 1e-7, `rmsNorm in place ${rows}x${n}`);
    }
  });
  it('softmax of rows, and of each row\'s first `valid` entries (causal masking)', () => {
    const n = 9, rows = 4;
    const x = Float64Array.from(Float32Array.from(values(randTensor([rows, n], 'f32', 9)), (v) => v * 30)); // f32-exact
    expectClose(softmaxRows(Float32Array.from(x), n), refSoftmax(x, n), 1e-6, 1e-9, 'softmax');
    const masked = softmaxRows(Float32Array.from(x), n, (r) => r + 1);
    for (let r = 0; r < rows; r++) {
      const want = refSoftmax(x.subarray(r * n, r * n + r + 1), r + 1);
      expectClose(masked.subarray(r * n, r * n + r + 1), want, 1e-6, 1e-9, `masked softmax row ${r}`);
      expect([...masked.subarray(r * n + r + 1, (r + 1) * n)].every((v) => v === 0)).toBe(true);
    }
  });
  it('embedding rows gathered exactly from f32, f16 and bf16 tables', () => {
    for (const dt of DTYPES as DType[]) {
      const table = randTensor([11, 6], dt, 3);
      const all = table.toFloat32();
      const ids = [3, 0, 10, 3];
      const got = embed(table, ids);
      ids.forEach((id, t) => expect([...got.subarray(t * 6, t * 6 + 6)]).toEqual([...all.subarray(id * 6, id * 6 + 6)]));
    }
  });
  it('residual add', () => {
    expect([...addInPlace(new Float32Array([1, 2]), new Float32Array([3, -5]))]).toEqual([4, -3]);
    expect(() => addInPlace(new Float32Array(2), new Float32Array(3))).toThrow(/residual add: 2 vs 3 elements/);
  });
  it('bf16 weights take bf16 inputs exactly where the CPU has bf16 kernels; f32 and f16 weights take f32', () => {
    const bf16Kernels = info().kernels.some((k) => k.available && k.family === 'blocked' && k.inputs === 'bf16');
    expect(linearInputDtype('bf16')).toBe(bf16Kernels ? 'bf16' : 'f32');
    expect(linearInputDtype('f32')).toBe('f32');
    expect(linearInputDtype('f16')).toBe('f32');
    const lin = new Linear('t', randTensor([40, 24], 'bf16', 3));
    expect(lin.weight.inputDtype).toBe(linearInputDtype('bf16'));
    // The panel is packed for that input: a bf16 kernel's layout, or an f32 one.
    expect(lin.weight.packed.layout.split('.')[1]).toBe(linearInputDtype('bf16') === 'bf16' ? 'bf16' : 'f32');
  });
  it('Tensor inputs of other dtypes go through Linear (converted to the dtype the weight reads)', async () => {
    const x = randTensor([3, 8], 'bf16', 1), w = randTensor([5, 8], 'bf16', 2);
    const y = await new Linear('t', w).forward(x);
    expect(y).toBeInstanceOf(Tensor);
    expectMatches(y, referenceMatmul(x, w, { transB: true }), 8, 'bf16 x bf16 Linear');
  });
});
