// Prepacked weights accept every call the unpacked weight accepts: the whole grid of input dtype x weight
// dtype x orientation x keepSource x inputDtype, at M from 1 to past the GEMV range, against the float64
// reference; explain() names what runs (the unpacked call with explain's config gives the same bits), and
// where the unpacked call runs that config too, the results are the same bits.
import { describe, expect, it } from 'vitest';
import { type DType, explain, info, matmul, matmulSync, prepack } from '../src/index.js';
import type { PrepackOptions } from '../src/prepack.js';
import { expectMatches, randTensor, referenceMatmul } from './helpers.js';

const DTYPES: DType[] = ['f32', 'f16', 'bf16'];
const MS = [1, 2, 7, 33, 64, 130];
// N not a multiple of any register block; K past two depth blocks of every default kc (512 and 1024).
const N = 45, K = 1100;

const bits = (t: { data: ArrayLike<number> }) => Array.from(t.data);

describe('prepack: every dtype combination that works unpacked works prepacked', () => {
  for (const dtypeB of DTYPES) {
    for (const transB of [false, true]) {
      it(`${dtypeB} weight, transB=${transB}`, async () => {
        const w = randTensor(transB ? [N, K] : [K, N], dtypeB, 7 + Number(transB));
        for (const dtypeA of DTYPES) {
          const xs = MS.map((m, i) => randTensor([m, K], dtypeA, 100 + i));
          const refs = xs.map((x) => referenceMatmul(x, w, { transB }));
          for (const keepSource of [true, false]) {
            for (const inputDtype of [undefined, ...DTYPES]) {
              const opts: PrepackOptions = { transB, keepSource, ...(inputDtype ? { inputDtype } : {}) };
              const packed = prepack(w, opts);
              for (let i = 0; i < MS.length; i++) {
                const x = xs[i];
                const what = `${MS[i]}x${N}x${K} ${dtypeA}*${dtypeB} transB=${transB} keepSource=${keepSource} inputDtype=${inputDtype} (${packed.layout})`;
                const unpacked = matmulSync(x, w, { transB });
                let got;
                try {
                  got = i % 2 === 0 ? matmulSync(x, packed) : await matmul(x, packed);
                } catch (e) {
                  throw new Error(`${what}: the unpacked call works, the prepacked one throws: ${(e as Error).message}`);
                }
                expectMatches(got, refs[i], K, what);
                // explain() says what runs: the same config on the unpacked weight gives the same bits.
                const e = explain(x, packed);
                expect(e.weight, `${what}: ${e.reason}`).toBeDefined();
                expect(bits(got), `${what}: explain says ${e.config} on the ${e.weight} (${e.reason})`)
                  .toEqual(bits(matmulSync(x, w, { transB, config: e.config })));
                if (explain(x, w, { transB }).config === e.config) expect(bits(got), `${what}: same config as unpacked`).toEqual(bits(unpacked));
              }
              packed.dispose();
            }
          }
        }
      });
    }
  }
});

describe('prepack: a bf16 panel serves f32 and f16 inputs', () => {
  const bf16Kernels = info().kernels.filter((k) => k.available && k.family === 'blocked' && k.inputs === 'bf16');
  const f32Kernels = info().kernels.filter((k) => k.available && k.family === 'blocked' && k.inputs === 'any' && k.isa !== 'scalar');

  it('without its source: f32 configs of any register block and kc read the panel, widening it exactly', () => {
    if (bf16Kernels.length === 0) return; // no bf16 kernel on this CPU: every panel is f32
    const kcs = [64, 384, 1024];
    for (const panelKernel of bf16Kernels) {
      for (const panelKc of [64, 512]) {
        for (const transB of [false, true]) {
          const w = randTensor(transB ? [N, K] : [K, N], 'bf16', panelKc + Number(transB));
          const packed = prepack(w, { transB, keepSource: false, config: `cpu.${panelKernel.id}.mc${panelKernel.mr}.kc${panelKc}.nc${2 * panelKernel.nr}.t1` });
          for (const kernel of f32Kernels) {
            for (const kc of kcs) {
              for (const [m, threads] of [[1, 1], [9, 2], [70, 2]]) {
                const config = `cpu.${kernel.id}.mc${2 * kernel.mr}.kc${kc}.nc${2 * kernel.nr}.t${threads}`;
                for (const dtypeA of ['f32', 'f16'] as DType[]) {
                  const x = randTensor([m, K], dtypeA, m + kc);
                  const what = `${m}x${N}x${K} ${dtypeA} x bf16 panel ${packed.layout} read by ${config}`;
                  const got = matmulSync(x, packed, { config });
                  expect(bits(got), what).toEqual(bits(matmulSync(x, w, { transB, config })));
                  expectMatches(got, referenceMatmul(x, w, { transB }), K, what);
                }
              }
            }
          }
          // bf16 inputs still need the panel's own layout.
          const other = f32Kernels[0];
          expect(() => matmulSync(randTensor([2, K], 'bf16', 1), packed, { config: `cpu.${other.id}.mc${other.mr}.kc64.nc${other.nr}.t1` }))
            .toThrow(/needs a weight packed as/);
          packed.dispose();
        }
      }
    }
  });

  it('explain says how: the kept source, or the panel widened', () => {
    if (bf16Kernels.length === 0) return;
    const w = randTensor([N, K], 'bf16', 3);
    const x = randTensor([33, K], 'f32', 4);
    const kept = explain(x, prepack(w, { transB: true }));
    expect(kept).toMatchObject({ source: 'default', weight: 'source' });
    expect(kept.reason).toMatch(/bf16 inputs only, and a is f32, so the unpacked call's heuristic runs on the kept source/);
    const only = explain(x, prepack(w, { transB: true, keepSource: false }));
    expect(only).toMatchObject({ source: 'default', weight: 'packed' });
    expect(only.config).toMatch(/^cpu\.(avx512|avx2)\.f32\./);
    expect(only.reason).toMatch(/widening each block to f32/);
  });
});
