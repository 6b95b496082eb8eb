// The fused epilogue on every CPU path: f16/bf16 outputs are the f32 result rounded once, bit for bit as
// f32ToBf16 / f32ToF16 round it (the same config with an f32 output gives that f32 result), and the vector
// activations stay within the reference tolerance, tails included.
import { describe, expect, it } from 'vitest';
import { type DType, f32ToBf16, f32ToF16, info, matmulSync, prepack, tensor } from '../src/index.js';
import { expectMatches, randTensor, referenceMatmul } from './helpers.js';

const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;

function configsFor(dtype: DType): string[] {
  const out: string[] = [];
  for (const k of info().kernels) {
    if (!k.available || (k.inputs === 'bf16' && dtype !== 'bf16')) continue;
    out.push(k.family === 'gemv' ? `cpu.${k.id}.kc32.ks2.t2` : `cpu.${k.id}.mc${2 * k.mr}.kc${roundUp(24, k.kAlign)}.nc${2 * k.nr}.t2`);
  }
  return out;
}

describe('output rounding: f16/bf16 outputs equal the rounded f32 output bit for bit, every path', () => {
  for (const dtype of ['f32', 'bf16'] as DType[]) {
    it(`${dtype} inputs`, () => {
      const [m, n, k] = [19, 70, 37];
      // Scaled so that values span many binades, including f16 subnormals and overflow to Inf.
      const x = tensor(randTensor([m, k], 'f32', 1).toFloat32().map((v, i) => v * 2 ** ((i % 40) - 20)), [m, k], dtype);
      const w = randTensor([n, k], dtype, 2);
      const bias = tensor(randTensor([n], 'f32', 3).toFloat32().map((v, i) => (i % 7 === 0 ? v * 70000 : v)), [n]);
      for (const config of configsFor(dtype)) {
        for (const activation of ['none', 'relu', 'gelu', 'silu'] as const) {
          const f32 = matmulSync(x, w, { transB: true, bias, activation, config, outDtype: 'f32' }).toFloat32();
          const bf16 = matmulSync(x, w, { transB: true, bias, activation, config, outDtype: 'bf16' });
          const f16 = matmulSync(x, w, { transB: true, bias, activation, config, outDtype: 'f16' });
          expect(Array.from(bf16.data), `bf16 ${config} ${activation}`).toEqual(Array.from(f32ToBf16(f32)));
          expect(Array.from(f16.data), `f16 ${config} ${activation}`).toEqual(Array.from(f32ToF16(f32)));
        }
      }
    });
  }

  it('prepacked weights round the same way', () => {
    const x = randTensor([9, 33], 'f32', 1), w = randTensor([33, 50], 'f32', 2);
    const packed = prepack(w);
    const f32 = matmulSync(x, packed, { activation: 'gelu' }).toFloat32();
    expect(Array.from(matmulSync(x, packed, { activation: 'gelu', outDtype: 'bf16' }).data)).toEqual(Array.from(f32ToBf16(f32)));
    expect(Array.from(matmulSync(x, packed, { activation: 'gelu', outDtype: 'f16' }).data)).toEqual(Array.from(f32ToF16(f32)));
  });
});

describe('vector activations against the float64 reference, tails and special values included', () => {
  it('gelu and silu over [-40, 40], every path', () => {
    const n = 161; // bias sweeps the pre-activation over [-40, 40] in steps of 0.5
    const x = tensor(new Float32Array(3 * 8).fill(0.125), [3, 8]);
    const w = randTensor([8, n], 'f32', 5);
    const bias = tensor(Array.from({ length: n }, (_, j) => -40 + 0.5 * j), [n]);
    for (const config of configsFor('f32')) {
      for (const activation of ['gelu', 'silu', 'relu'] as const) {
        for (const outDtype of ['f32', 'bf16', 'f16'] as DType[]) {
          const got = matmulSync(x, w, { bias, activation, config, outDtype });
          expectMatches(got, referenceMatmul(x, w, { bias, activation }), 8, `${activation} ${config} ->${outDtype}`);
        }
      }
    }
  });

  it('NaN passes through every activation; relu maps -0 and negatives to +0', () => {
    const x = tensor([1, 1], [1, 2]);
    const w = tensor([0, 0, 0, 0, 0, 0, 0, 0], [2, 4]);
    const bias = tensor([NaN, -0, -3, 2], [4]);
    for (const config of configsFor('f32')) {
      for (const activation of ['relu', 'gelu', 'silu'] as const) {
        const got = matmulSync(x, w, { bias, activation, config }).toFloat32();
        expect(Number.isNaN(got[0]), `${activation} ${config}`).toBe(true);
        if (activation === 'relu') expect(Array.from(got.slice(1)), config).toEqual([0, 0, 2]);
      }
    }
  });
});
