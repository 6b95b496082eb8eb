// The models' weight GEMMs (Linear, BoundGemm) on the CPU and on a GPU against the float64 reference GEMM.
// (The other layers are native ops: test/ops.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DTYPES, Linear, Tensor, info, linearInputDtype, tensor, zeros } from '../src/index.js';
import type { Activation } from '../src/matmul.js';
import { BoundGemm, gemmPolicy } from '../src/models/layers.js';
import { setGpuAddonForTesting } from '../src/native.js';
import { EmulatedGpu } from './gpu_emulator.js';
import { expectMatches, randTensor, referenceMatmul } from './helpers.js';

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

describe('the input dtype of a Linear\'s GEMM, per device', () => {
  it('bf16 weights take bf16 inputs on a CPU with bf16 kernels; f32 and f16 weights take f32; a GPU takes the weight\'s dtype', () => {
    const bf16Kernels = info().kernels.some((k) => k.available && k.family === 'blocked' && k.inputs === 'bf16');
    expect(linearInputDtype('bf16')).toBe(bf16Kernels ? 'bf16' : 'f32');
    expect(linearInputDtype('f32')).toBe('f32');
    expect(linearInputDtype('f16')).toBe('f32');
    for (const device of ['cuda:0', 'hip:1'] as const) for (const d of DTYPES) expect(linearInputDtype(d, device)).toBe(d);
    const lin = new Linear('t', randTensor([40, 24], 'bf16', 3));
    expect(lin.weight.inputDtype).toBe(linearInputDtype('bf16'));
    // The panel is packed for that input: a bf16 kernel's layout, or an f32 one.
    expect(lin.weight.packed!.layout.split('.')[1]).toBe(linearInputDtype('bf16') === 'bf16' ? 'bf16' : 'f32');
  });
  it('Tensor inputs of other dtypes go through Linear (converted to the dtype the weight reads)', async () => {
    const x = randTensor([3, 8], 'bf16', 1), w = randTensor([5, 8], 'bf16', 2);
    const y = await new Linear('t', w).forward(x);
    expect(y).toBeInstanceOf(Tensor);
    expectMatches(y, referenceMatmul(x, w, { transB: true }), 8, 'bf16 x bf16 Linear');
  });
});

describe('Linear and BoundGemm on a GPU (the stand-in addon)', () => {
  let gpu: EmulatedGpu;
  beforeAll(() => {
    gpu = new EmulatedGpu('cuda', 1, 64 << 20);
    setGpuAddonForTesting('cuda', gpu);
  });
  afterAll(() => setGpuAddonForTesting('cuda', undefined));

  it('the weight is copied once in its dtype and stays there; x @ W^T (+ bias, activation, residual) runs where it is', async () => {
    let seed = 900;
    for (const [m, inF, outF] of [[1, 7, 5], [7, 45, 77], [45, 129, 33]] as [number, number, number][]) {
      for (const wd of DTYPES) {
        const x = randTensor([m, inF], 'f32', seed++), w = randTensor([outF, inF], wd, seed++), bias = randTensor([outF], 'f32', seed++);
        const lin = new Linear('gpu', w, bias, 'silu', 'cuda:0');
        expect(lin.device).toBe('cuda:0');
        expect(lin.weight.packed).toBeUndefined();
        expect(lin.weight.weight.device).toBe('cuda:0');
        expect(lin.weight.weight.dtype).toBe(wd);
        expect(lin.weight.inputDtype).toBe(wd);
        const xDevice = x.to('cuda:0');
        const y = await lin.forward(xDevice);
        expect(y.device).toBe('cuda:0');
        const xIn = x.toDType(wd); // the GPU's GEMM reads the weight's dtype: the cast op rounded x to it
        expectMatches(y.to('cpu'), referenceMatmul(xIn, w, { transB: true, bias, activation: 'silu' }), inF, `GPU Linear ${m}x${inF}->${outF} w=${wd}`);
        // A BoundGemm: bound once to its buffers, run many times; with accumulate it adds into out (beta = 1).
        const plain = new Linear('gpu', w, undefined, 'none', 'cuda:0');
        const xs = xIn.to('cuda:0'), r = randTensor([m, outF], 'f32', seed++), out = r.to('cuda:0');
        const bound = new BoundGemm('test', xs, plain, out, true);
        expect(bound.macs).toBe(m * inF * outF);
        bound.run();
        await bound.runAsync();
        const once = tensor(referenceMatmul(xIn, w, { transB: true, c: r, beta: 1 }).value, [m, outF]);
        const twice = referenceMatmul(xIn, w, { transB: true, c: once, beta: 1 });
        expectMatches(out.to('cpu'), twice, 2 * inF, `GPU BoundGemm x2 ${m}x${inF}->${outF} w=${wd}`);
        for (const t of [y, xDevice, xs, out]) t.dispose();
        lin.dispose();
        plain.dispose();
      }
    }
    expect(gpu.used).toBe(0);
  });
  it('x on another device than the weight is a TypeError naming both', async () => {
    const lin = new Linear('fc', randTensor([4, 3], 'f32', 1), undefined, 'none', 'cuda:0');
    await expect(lin.forward(randTensor([2, 3], 'f32', 2))).rejects.toThrow(/Linear: x is on cpu but the weight is on cuda:0; copy it with .to\("cuda:0"\)/);
    lin.dispose();
  });
});

describe('BoundGemm on the CPU: a prepacked weight, validated once', () => {
  it('equals the reference, run synchronously and off the event loop, with and without accumulate', async () => {
    let seed = 700;
    for (const wd of DTYPES) {
      const x = randTensor([5, 33], linearInputDtype(wd), seed++), w = randTensor([17, 33], wd, seed++), bias = randTensor([17], 'f32', seed++);
      const lin = new Linear('cpu', w, bias, 'gelu');
      const out = zeros([5, 17]);
      const g = new BoundGemm('test', x, lin, out, false);
      g.run();
      expectMatches(out, referenceMatmul(x, w, { transB: true, bias, activation: 'gelu' }), 33, `BoundGemm w=${wd}`);
      out.data.fill(0);
      await g.runAsync();
      expectMatches(out, referenceMatmul(x, w, { transB: true, bias, activation: 'gelu' }), 33, `BoundGemm async w=${wd}`);
      expect(() => new BoundGemm('test', randTensor([5, 32], 'f32', 1), lin, out, false)).toThrow(/test: a is \[5, 32\] but b is \[17, 33\] \(K mismatch/);
    }
  });
});
