// matmul against the float64 reference: every dtype combination and transpose at awkward sizes, every
// micro-kernel forced in turn with small cache blocks (so every blocking loop and edge runs), output
// dtypes, the epilogue, zero sizes and batches.
import { describe, expect, it } from 'vitest';
import { type DType, DTYPES, info, matmul, matmulSync, tensor, zeros } from '../src/index.js';
import type { Activation } from '../src/matmul.js';
import { expectMatches, intTensor, randTensor, referenceMatmul } from './helpers.js';

type Shape3 = [m: number, n: number, k: number];
const AWKWARD: Shape3[] = [
  [1, 1, 1], [7, 7, 7], [45, 45, 45], [77, 45, 129], [127, 127, 127], [255, 255, 255], [257, 257, 257],
  [5, 6, 3000], // K much larger than M and N
  [64, 1, 100], // N = 1
  [1, 64, 100], // M = 1
];
const TRANSPOSES: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

function operands(m: number, n: number, k: number, ta: boolean, tb: boolean, da: DType, db: DType, seed: number, exact = true) {
  const make = exact ? intTensor : randTensor;
  const a = make(ta ? [k, m] : [m, k], da, seed);
  const b = make(tb ? [n, k] : [k, n], db, seed + 1);
  return { a, b };
}

const label = (m: number, n: number, k: number, extra: string) => `${m}x${n}x${k} ${extra}`;

describe('matmul: dtypes x transposes at awkward sizes (exact small-integer inputs)', () => {
  for (const [m, n, k] of AWKWARD) {
    it(`${m}x${n}x${k}`, () => {
      let seed = m * 1000 + n * 10 + k;
      for (const [ta, tb] of TRANSPOSES) {
        for (const da of DTYPES) {
          for (const db of DTYPES) {
            const { a, b } = operands(m, n, k, ta, tb, da, db, seed++);
            const ref = referenceMatmul(a, b, { transA: ta, transB: tb });
            const c = matmulSync(a, b, { transA: ta, transB: tb });
            expect(c.dtype).toBe(da === db ? da : 'f32');
            expectMatches(c, ref, k, label(m, n, k, `${da}*${db} ta=${ta} tb=${tb} default config`), true);
          }
        }
      }
    });
  }
});

describe('matmul: random values within the K-scaled f32 error bound', () => {
  for (const [m, n, k] of [[45, 45, 45], [77, 45, 129], [5, 6, 3000], [1, 64, 100]] as Shape3[]) {
    it(`${m}x${n}x${k}, every dtype combination and output dtype`, () => {
      let seed = 99;
      for (const [ta, tb] of TRANSPOSES) {
        for (const da of DTYPES) {
          for (const db of DTYPES) {
            const { a, b } = operands(m, n, k, ta, tb, da, db, seed++, false);
            const ref = referenceMatmul(a, b, { transA: ta, transB: tb });
            for (const outDtype of DTYPES) {
              const c = matmulSync(a, b, { transA: ta, transB: tb, outDtype });
              expect(c.dtype).toBe(outDtype);
              expectMatches(c, ref, k, label(m, n, k, `${da}*${db}->${outDtype} ta=${ta} tb=${tb}`));
            }
          }
        }
      }
    });
  }
});

describe('matmul: every micro-kernel forced in turn', () => {
  const kernels = info().kernels.filter((kr) => kr.available);
  it('this machine offers the scalar kernel and its SIMD kernels', () => {
    const ids = kernels.map((kr) => kr.id);
    expect(ids).toContain('scalar.f32.4x8');
    expect(ids).toContain('gemv.scalar');
    const features = info().cpu.features;
    if (features.includes('avx2') && features.includes('fma')) expect(ids.some((id) => id.startsWith('avx2.'))).toBe(true);
    if (features.includes('avx512')) expect(ids).toEqual(expect.arrayContaining(['avx512.f32.14x32', 'gemv.avx512']));
    if (features.includes('avx512_bf16')) expect(ids).toContain('avx512bf16.bf16.14x32');
  });
  const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;
  for (const kr of kernels) {
    // Blocked: blocks of two register tiles and a short K block, so every loop of the frame wraps several
    // times. GEMV: short depth blocks (several per sum) and K split into parts, with several thread counts.
    const configs = kr.family === 'gemv'
      ? [`cpu.${kr.id}.kc32.ks1.t1`, `cpu.${kr.id}.kc64.ks3.t2`, `cpu.${kr.id}.kc1024.ks2.t3`]
      : [
          `cpu.${kr.id}.mc${2 * kr.mr}.kc${roundUp(13, kr.kAlign)}.nc${2 * kr.nr}.t1`,
          `cpu.${kr.id}.mc${3 * kr.mr}.kc${roundUp(64, kr.kAlign)}.nc${3 * kr.nr}.t2`,
          `cpu.${kr.id}.mc${kr.mr}.kc${roundUp(300, kr.kAlign)}.nc${kr.nr}.t3`,
        ];
    const dtypePairs: [DType, DType][] = kr.inputs === 'bf16' ? [['bf16', 'bf16']] : [['f32', 'f32'], ['bf16', 'bf16'], ['f16', 'f32']];
    // GEMV: every block of rows of x (1..8), rows of W not a multiple of the 3- and 4-row groups, depths
    // not a multiple of the vector.
    const extra: Shape3[] = kr.family === 'gemv'
      ? [[16, 67, 33], [3, 129, 257], [2, 5, 0], [8, 67, 129], [9, 13, 300], [6, 5, 41], [4, 130, 95], [13, 70, 17]]
      : [[2 * kr.mr + 1, 2 * kr.nr - 1, 27], [kr.mr - 1, kr.nr + 1, 14], [kr.mr, kr.nr, 33]];
    it(`${kr.id}`, () => {
      let seed = 5;
      for (const [m, n, k] of AWKWARD.filter(([m]) => m < 250).concat(extra)) {
        for (const [ta, tb] of TRANSPOSES) {
          for (const [da, db] of dtypePairs) {
            const { a, b } = operands(m, n, k, ta, tb, da, db, seed++);
            const ref = referenceMatmul(a, b, { transA: ta, transB: tb });
            for (const config of configs) {
              const c = matmulSync(a, b, { transA: ta, transB: tb, config, outDtype: 'f32' });
              expectMatches(c, ref, k, label(m, n, k, `${da}*${db} ta=${ta} tb=${tb} ${config}`), true);
            }
          }
        }
      }
    });
  }
});

describe('matmul: epilogue', () => {
  it('alpha and beta with out, every output dtype (exact)', () => {
    const [m, n, k] = [37, 29, 41];
    const a = intTensor([m, k], 'f32', 1), b = intTensor([k, n], 'bf16', 2);
    for (const outDtype of DTYPES) {
      for (const config of [undefined, 'cpu.scalar.f32.4x8.mc8.kc9.nc16.t2']) {
        const c0 = intTensor([m, n], outDtype, 3);
        const out = tensor(c0.toFloat32(), [m, n], outDtype);
        const ref = referenceMatmul(a, b, { alpha: 0.5, beta: -2, c: c0 });
        const got = matmulSync(a, b, { alpha: 0.5, beta: -2, out, config });
        expect(got).toBe(out);
        expectMatches(got, ref, k, `alpha/beta ->${outDtype} ${config}`, true);
      }
    }
  });

  it('bias of every dtype with each activation, every output dtype', () => {
    const [m, n, k] = [19, 45, 77];
    const acts: Activation[] = ['none', 'relu', 'gelu', 'silu'];
    for (const biasDtype of DTYPES) {
      const a = randTensor([m, k], 'f32', 4), w = randTensor([n, k], 'bf16', 5);
      const bias = randTensor([n], biasDtype, 6);
      for (const activation of acts) {
        const ref = referenceMatmul(a, w, { transB: true, bias, activation });
        for (const outDtype of DTYPES) {
          for (const config of [undefined, 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t2']) {
            const got = matmulSync(a, w, { transB: true, bias, activation, outDtype, config });
            expectMatches(got, ref, k, `bias ${biasDtype} ${activation} ->${outDtype} ${config}`);
          }
        }
      }
    }
  });

  it('activation without bias, and beta with bias and activation', () => {
    const a = randTensor([9, 33], 'f32', 7), b = randTensor([33, 17], 'f32', 8);
    const c0 = randTensor([9, 17], 'f32', 9);
    const bias = randTensor([17], 'f32', 10);
    for (const outDtype of DTYPES) {
      const out = tensor(c0.toFloat32(), [9, 17], outDtype);
      const cRounded = tensor(out.toFloat32(), [9, 17]);
      const ref = referenceMatmul(a, b, { beta: 0.75, c: cRounded, bias, activation: 'gelu', alpha: -1.5 });
      matmulSync(a, b, { beta: 0.75, out, bias, activation: 'gelu', alpha: -1.5 });
      expectMatches(out, ref, 33, `beta+bias+gelu ->${outDtype}`);
    }
    const ref = referenceMatmul(a, b, { activation: 'silu' });
    expectMatches(matmulSync(a, b, { activation: 'silu' }), ref, 33, 'silu');
  });
});

describe('matmul: zero sizes', () => {
  it('M = 0 and N = 0 give empty results', () => {
    expect(matmulSync(zeros([0, 5]), zeros([5, 3])).shape).toEqual([0, 3]);
    expect(matmulSync(zeros([4, 5]), zeros([5, 0])).shape).toEqual([4, 0]);
    expect(matmulSync(zeros([2, 0, 5]), zeros([5, 3])).shape).toEqual([2, 0, 3]);
    expect(matmulSync(zeros([0, 4, 5]), zeros([5, 3])).shape).toEqual([0, 4, 3]);
  });

  it('K = 0 gives beta*C plus bias, through the activation', () => {
    for (const outDtype of DTYPES) {
      const c0 = intTensor([3, 4], outDtype, 1);
      const out = tensor(Float32Array.from(c0.toFloat32()), [3, 4], outDtype);
      const bias = tensor([1, -2, 3, -4], [4]);
      matmulSync(zeros([3, 0]), zeros([0, 4]), { out, beta: 2, bias, activation: 'relu' });
      const want = Array.from(c0.toFloat32()).map((v, i) => Math.max(0, 2 * v + [1, -2, 3, -4][i % 4]));
      expect(Array.from(out.toFloat32())).toEqual(want);
      const fresh = matmulSync(zeros([3, 0], outDtype), zeros([0, 4], outDtype), { bias });
      expect(Array.from(fresh.toFloat32())).toEqual([1, -2, 3, -4, 1, -2, 3, -4, 1, -2, 3, -4]);
    }
  });

  it('K = 0 with beta = 0 overwrites NaN in out', () => {
    const out = tensor([NaN, NaN], [1, 2]);
    matmulSync(zeros([1, 0]), zeros([0, 2]), { out });
    expect(Array.from(out.data)).toEqual([0, 0]);
  });

  it('beta = 0 never reads out, so NaN there does not leak', () => {
    const out = tensor(new Float32Array(6).fill(NaN), [2, 3]);
    matmulSync(intTensor([2, 4], 'f32', 1), intTensor([4, 3], 'f32', 2), { out });
    expect(out.toFloat32().every((v) => !Number.isNaN(v))).toBe(true);
  });
});

describe('matmul: batched', () => {
  const [batch, m, n, k] = [3, 17, 23, 31];
  it('[B, M, K] x [K, N], [B, M, K] x [B, K, N] and [M, K] x [B, K, N], every transpose', () => {
    let seed = 1;
    for (const [ta, tb] of TRANSPOSES) {
      const aShape = ta ? [k, m] : [m, k], bShape = tb ? [n, k] : [k, n];
      const cases: [number[], number[]][] = [
        [[batch, ...aShape], bShape],
        [[batch, ...aShape], [batch, ...bShape]],
        [aShape, [batch, ...bShape]],
      ];
      for (const [as, bs] of cases) {
        for (const config of [undefined, 'cpu.scalar.f32.4x8.mc8.kc8.nc16.t2']) {
          const a = intTensor(as, 'bf16', seed++), b = intTensor(bs, 'f32', seed++);
          const bias = intTensor([n], 'f32', seed++);
          const ref = referenceMatmul(a, b, { transA: ta, transB: tb, bias });
          const got = matmulSync(a, b, { transA: ta, transB: tb, bias, config });
          expect(got.shape).toEqual([batch, m, n]);
          expectMatches(got, ref, k, `batched a=[${as}] b=[${bs}] ta=${ta} tb=${tb} ${config}`, true);
        }
      }
    }
  });

  it('async matmul agrees with matmulSync on a batch', async () => {
    const a = randTensor([batch, m, k], 'f32', 3), b = randTensor([k, n], 'f16', 4);
    const x = await matmul(a, b);
    const y = matmulSync(a, b);
    expect(Array.from(x.data)).toEqual(Array.from(y.data));
  });
});

describe('matmul: thread count does not change results', () => {
  // 150x170 splits N between threads; 300x130 splits M, where the threads work as a team sharing packed
  // panels of B; x @ W^T runs the GEMV family's dot kernels.
  it('1, 2 and 3 threads give bit-identical results', () => {
    for (const [m, n, k] of [[150, 170, 300], [300, 130, 257]]) {
      const a = randTensor([m, k], 'f32', 1), b = randTensor([k, n], 'f32', 2), bt = randTensor([n, k], 'f32', 3);
      const [a16, b16, bt16] = [a, b, bt].map((t) => t.toDType('bf16'));
      for (const kernel of info().kernels.filter((kr) => kr.available)) {
        const config = (t: number) => kernel.family === 'gemv'
          ? `cpu.${kernel.id}.kc64.ks2.t${t}`
          : `cpu.${kernel.id}.mc${4 * kernel.mr}.kc128.nc${4 * kernel.nr}.t${t}`;
        for (const transB of [false, true]) {
          const [x, y] = kernel.inputs === 'bf16' ? [a16, transB ? bt16 : b16] : [a, transB ? bt : b];
          for (const outDtype of ['f32', 'bf16'] as DType[]) {
            const results = [1, 2, 3].map((t) => matmulSync(x, y, { transB, config: config(t), outDtype }));
            const what = (t: number) => `${m}x${n}x${k} ${config(t)} transB=${transB} ->${outDtype}`;
            expect(Array.from(results[1].data), what(2)).toEqual(Array.from(results[0].data));
            expect(Array.from(results[2].data), what(3)).toEqual(Array.from(results[0].data));
          }
        }
      }
    }
  });
});
