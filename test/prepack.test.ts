// Prepacked weights: every blocked kernel's packed layout gives results bit-identical to the unpacked call
// with the same config (and exact against the float64 reference on small integers), at awkward sizes,
// both weight orientations, K not a multiple of kc or of the pair layout; lifetime and error paths.
import { describe, expect, it } from 'vitest';
import { type DType, PackedWeight, explain, info, matmul, matmulSync, prepack, tensor } from '../src/index.js';
import { prepareMatmul } from '../src/matmul.js';
import { expectMatches, intTensor, randTensor, referenceMatmul } from './helpers.js';

const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;
const blocked = info().kernels.filter((k) => k.available && k.family === 'blocked');

describe('prepack: packed == unpacked, bit for bit, for every blocked kernel', () => {
  for (const kr of blocked) {
    it(kr.id, () => {
      const dtypes: [DType, DType][] = kr.inputs === 'bf16' ? [['bf16', 'bf16']] : [['f32', 'f32'], ['bf16', 'bf16'], ['f32', 'f16']];
      const kc = roundUp(40, kr.kAlign);
      const config = `cpu.${kr.id}.mc${2 * kr.mr}.kc${kc}.nc${2 * kr.nr}.t2`;
      let seed = 1;
      for (const [n, k] of [[1, 1], [kr.nr + 1, kc + 3], [77, 2 * kc + 1], [2 * kr.nr - 1, 45], [9, 0]]) {
        for (const transB of [false, true]) {
          for (const [da, db] of dtypes) {
            const w = intTensor(transB ? [n, k] : [k, n], db, seed++);
            const packed = prepack(w, { transB, config });
            expect(packed.layout).toBe(`${kr.id}.kc${kc}`);
            for (const m of [1, 7, kr.mr + 1, 45]) {
              const x = intTensor([m, k], da, seed++);
              const bias = intTensor([n], 'f32', seed++);
              const want = matmulSync(x, w, { transB, config, bias });
              const got = matmulSync(x, packed, { config, bias });
              const what = `${m}x${n}x${k} ${da}*${db} transB=${transB} ${config}`;
              expect(Array.from(got.data), what).toEqual(Array.from(want.data));
              expectMatches(got, referenceMatmul(x, w, { transB, bias }), k, what, true);
            }
            packed.dispose();
          }
        }
      }
    });
  }

  it('the default layout and the heuristic: packed == unpacked with the config the packed call uses', () => {
    for (const dtype of ['f32', 'bf16'] as DType[]) {
      const w = randTensor([300, 200], dtype, 3); // [N, K]
      const packed = prepack(w, { transB: true });
      const packedOnly = prepack(w, { transB: true, keepSource: false });
      expect(packed.source).toBe(w);
      expect(packedOnly.source).toBeUndefined();
      for (const m of [1, 2, 8, 33]) {
        const x = randTensor([m, 200], dtype, 4 + m);
        const want = (config: string) => Array.from(matmulSync(x, w, { transB: true, config }).data);
        // With the source kept, small M reads it in place (GEMV); otherwise the packed panel.
        const e = explain(x, packed);
        if (e.weight === 'packed') expect(e.config).toContain(packed.layout.replace(/\.kc\d+$/, ''));
        else expect(e.config).toMatch(/^cpu\.gemv\./);
        expect(Array.from(matmulSync(x, packed).data), `${dtype} m=${m} ${e.config}`).toEqual(want(e.config));
        const only = explain(x, packedOnly);
        expect(only.weight).toBe('packed');
        expect(only.config).toContain(packedOnly.layout.replace(/\.kc\d+$/, ''));
        expect(Array.from(matmulSync(x, packedOnly).data), `${dtype} m=${m} ${only.config}`).toEqual(want(only.config));
      }
    }
  });

  it('without a tuned row: M = 1 reads the kept source, larger M the panel (from M = 64 when the panel is larger)', () => {
    // 300x200 weights: the heuristic of the plain problem picks GEMV up to M = 128 wherever a SIMD GEMV
    // kernel exists; the panel is what the dispatch picks instead at the M the rule names.
    const plainGemv = (x: ReturnType<typeof randTensor>, w: ReturnType<typeof randTensor>) =>
      explain(x, w, { transB: true }).config.startsWith('cpu.gemv.') && !explain(x, w, { transB: true }).config.includes('scalar');
    // bf16 x bf16 runs a bf16 panel where the CPU has a bf16 blocked kernel (AVX512-BF16, AMX); elsewhere
    // the f32 kernel's panel, twice the source's bytes.
    const bf16Panel = info().kernels.some((k) => k.available && k.family === 'blocked' && k.inputs === 'bf16');
    const cases: [DType, DType, number, 'source' | 'packed'][] = [
      ['f32', 'f32', 1, 'source'], ['f32', 'f32', 2, 'packed'], ['f32', 'f32', 33, 'packed'],
      ['bf16', 'bf16', 1, 'source'], ['bf16', 'bf16', 2, bf16Panel ? 'packed' : 'source'],
      // bf16 weights for f32 activations: an f32 panel, twice the source's bytes
      ['f32', 'bf16', 1, 'source'], ['f32', 'bf16', 63, 'source'], ['f32', 'bf16', 64, 'packed'], ['f32', 'bf16', 100, 'packed'],
    ];
    let checkedSmall = 0;
    for (const [da, db, m, form] of cases) {
      const w = randTensor([300, 200], db, 11);
      const packed = prepack(w, { transB: true, inputDtype: da });
      const x = randTensor([m, 200], da, 12 + m);
      // A machine without a SIMD GEMV kernel for these dtypes, or whose GEMV family ends below this M.
      if (!plainGemv(x, w)) continue;
      if (m <= 2) checkedSmall++;
      const e = explain(x, packed);
      expect(e.weight, `${da}*${db} m=${m}: ${e.reason}`).toBe(form);
      if (form === 'packed') expect(e.reason).toMatch(/packed panel beats reading the source/);
      expect(Array.from(matmulSync(x, packed).data)).toEqual(Array.from(matmulSync(x, w, { transB: true, config: e.config }).data));
    }
    if (info().cpu.features.includes('avx2')) expect(checkedSmall).toBe(cases.filter(([, , m]) => m <= 2).length);
  });

  it('batched a with a prepacked b, every output dtype and activation', () => {
    const w = randTensor([45, 77], 'f32', 1);
    const packed = prepack(w);
    const x = randTensor([3, 5, 45], 'f32', 2);
    const bias = randTensor([77], 'bf16', 3);
    for (const outDtype of ['f32', 'bf16', 'f16'] as DType[]) {
      for (const activation of ['relu', 'gelu', 'silu'] as const) {
        const got = matmulSync(x, packed, { outDtype, bias, activation });
        expectMatches(got, referenceMatmul(x, w, { bias, activation }), 45, `batched prepacked ${outDtype} ${activation}`);
      }
    }
  });
});

describe('prepack: lifetime and errors', () => {
  it('a disposed weight is a clear error; dispose is idempotent', () => {
    const packed = prepack(intTensor([8, 4], 'f32', 1));
    expect(packed).toBeInstanceOf(PackedWeight);
    expect(packed.bytes).toBeGreaterThan(0);
    expect(packed.disposed).toBe(false);
    packed.dispose();
    packed.dispose();
    expect(packed.disposed).toBe(true);
    expect(() => matmulSync(intTensor([2, 8], 'f32', 2), packed)).toThrow(/was disposed/);
    return expect(matmul(intTensor([2, 8], 'f32', 2), packed)).rejects.toThrow(/was disposed/);
  });

  it('a call in flight keeps the packed data alive when the weight is disposed', async () => {
    const w = intTensor([400, 300], 'f32', 1);
    const packed = prepack(w);
    const x = intTensor([200, 400], 'f32', 2);
    const pending = matmul(x, packed);
    packed.dispose();
    expectMatches(await pending, referenceMatmul(x, w), 400, 'dispose during async matmul', true);
  });

  it('shape, transpose and config mismatches are errors that say why', () => {
    const packed = prepack(intTensor([6, 4], 'f32', 1), { transB: true }); // op(B) is [4, 6]
    expect(() => matmulSync(intTensor([2, 5], 'f32', 2), packed)).toThrow(RangeError);
    expect(() => matmulSync(intTensor([2, 4], 'f32', 2), packed, { transB: false })).toThrow(/prepacked with transB=true/);
    // A config that reads B as stored runs on the kept source, and is an error without one.
    const x = intTensor([2, 4], 'f32', 2);
    expectMatches(matmulSync(x, packed, { config: 'cpu.gemv.scalar.kc256.ks1.t1' }), referenceMatmul(x, packed.source!, { transB: true }), 4, 'gemv on the source', true);
    const packedOnly = prepack(intTensor([6, 4], 'f32', 1), { transB: true, keepSource: false });
    expect(() => matmulSync(x, packedOnly, { config: 'cpu.gemv.scalar.kc256.ks1.t1' })).toThrow(/keepSource: false/);
    expect(() => prepack(intTensor([6, 4], 'f32', 1), { keepSource: 'no' as never })).toThrow(/keepSource must be a boolean/);
    expect(() => matmulSync(intTensor([2, 4], 'f32', 2), packed, { config: 'cpu.scalar.f32.4x8.mc8.kc7.nc8.t1' }))
      .toThrow(/packed as scalar\.f32\.4x8\.kc7, but it was prepacked as/);
    expect(() => prepack(intTensor([2, 3, 4], 'f32', 1))).toThrow(/expected a 2-D/);
    expect(() => prepack(tensor([1], [1, 1]), { config: 'cpu.gemv.scalar.kc256.ks1.t1' })).toThrow(/blocked-GEMM config/);
    expect(() => prepack(tensor([1], [1, 1]), { transB: 1 as unknown as boolean })).toThrow(TypeError);
    expect(() => prepack(tensor([1], [1, 1]), { colour: 1 } as never)).toThrow(/unknown option 'colour'/);
    if (blocked.some((k) => k.inputs === 'bf16')) {
      const k = blocked.find((x) => x.inputs === 'bf16')!;
      const config = `cpu.${k.id}.mc${2 * k.mr}.kc64.nc${2 * k.nr}.t1`;
      expect(() => prepack(intTensor([4, 4], 'f32', 1), { config })).toThrow(/bf16 weights only/);
    }
    expect(() => matmulSync(intTensor([2, 4], 'f32', 2), packed, { out: tensor([0, 0], [1, 2]) })).toThrow(RangeError);
  });
});
