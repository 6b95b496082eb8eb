import { describe, expect, it } from 'vitest';
import {
  bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, fromBf16Bits, fromF16Bits, matmulSync, tensor, toBf16Bits, toF16Bits,
} from '../src/index.js';
import { fromF32Bits } from '../src/dtype.js';
import { rng } from './helpers.js';

const ALL = Uint16Array.from({ length: 65536 }, (_, i) => i);

function isNaN16(bits: number, expBits: number, manBits: number): boolean {
  const expMask = ((1 << expBits) - 1) << manBits;
  return (bits & expMask) === expMask && (bits & ((1 << manBits) - 1)) !== 0;
}

describe('f16 and bf16 conversions', () => {
  it('bf16 -> f32 -> bf16 is the identity on all 65,536 bit patterns (NaN stays NaN)', () => {
    const back = f32ToBf16(bf16ToF32(ALL));
    const viaNumbers = f32ToBf16(Array.from(bf16ToF32(ALL)));
    for (let i = 0; i < 65536; i++) {
      if (isNaN16(i, 8, 7)) {
        expect(isNaN16(back[i], 8, 7), `pattern ${i}`).toBe(true);
        expect(isNaN16(viaNumbers[i], 8, 7), `pattern ${i}`).toBe(true);
      } else {
        expect(back[i], `pattern ${i}`).toBe(i);
        expect(viaNumbers[i], `pattern ${i}`).toBe(i);
      }
    }
  });

  it('f16 -> f32 -> f16 is the identity on all 65,536 bit patterns (NaN stays NaN)', () => {
    const back = f32ToF16(f16ToF32(ALL));
    const viaNumbers = f32ToF16(Array.from(f16ToF32(ALL)));
    for (let i = 0; i < 65536; i++) {
      if (isNaN16(i, 5, 10)) {
        expect(isNaN16(back[i], 5, 10), `pattern ${i}`).toBe(true);
        expect(isNaN16(viaNumbers[i], 5, 10), `pattern ${i}`).toBe(true);
      } else {
        expect(back[i], `pattern ${i}`).toBe(i);
        expect(viaNumbers[i], `pattern ${i}`).toBe(i);
      }
    }
  });

  it('decodes known values', () => {
    expect(fromBf16Bits(0x3f80)).toBe(1);
    expect(fromBf16Bits(0xc000)).toBe(-2);
    expect(fromBf16Bits(0x7f80)).toBe(Infinity);
    expect(fromF16Bits(0x3c00)).toBe(1);
    expect(fromF16Bits(0x7bff)).toBe(65504);
    expect(fromF16Bits(0x0001)).toBe(2 ** -24);
    expect(fromF16Bits(0xfc00)).toBe(-Infinity);
    expect(Object.is(fromF16Bits(0x8000), -0)).toBe(true);
    expect(Number.isNaN(fromF16Bits(0x7e00))).toBe(true);
  });

  it('rounds to nearest, ties to even, at the edges of each format', () => {
    // bf16 has 8 significand bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> even (1).
    expect(toBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(toBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // halfway, rounds up to even
    expect(toBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81); // above halfway
    expect(toBf16Bits(3.4e38)).toBe(0x7f80); // rounds past the largest finite bf16 -> Inf
    expect(toF16Bits(65504)).toBe(0x7bff);
    expect(toF16Bits(65519.99)).toBe(0x7bff);
    expect(toF16Bits(65520)).toBe(0x7c00); // halfway to 65536 ties to even -> Inf
    expect(toF16Bits(2 ** -25)).toBe(0x0000); // half the smallest subnormal ties to even (zero)
    expect(toF16Bits(2 ** -25 * 1.0001)).toBe(0x0001);
    expect(toF16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 subnormal ulps ties to even (2)
    expect(toF16Bits(-0)).toBe(0x8000);
    expect(toF16Bits(-Infinity)).toBe(0xfc00);
    expect(toBf16Bits(NaN) & 0x7fc0).toBe(0x7fc0);
    expect(toF16Bits(NaN) & 0x7e00).toBe(0x7e00);
  });

  it('the f32 bit path and the float64 path agree on a million random f32 patterns', () => {
    const r = rng(7);
    const n = 1 << 20;
    const f = new Float32Array(n);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i < n; i++) u[i] = Math.floor(r() * 4294967296) >>> 0;
    const bf = f32ToBf16(f), bfNum = f32ToBf16(Array.from(f));
    const h = f32ToF16(f), hNum = f32ToF16(Array.from(f));
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(f[i])) continue;
      if (bf[i] !== bfNum[i] || h[i] !== hNum[i]) {
        throw new Error(`f32 bits 0x${u[i].toString(16)} (${fromF32Bits(u[i])}): bf16 ${bf[i]} vs ${bfNum[i]}, f16 ${h[i]} vs ${hNum[i]}`);
      }
    }
  });

  it('the engine rounds f32 results to bf16 and f16 bit for bit like the TypeScript conversion', () => {
    // Random values give f32 sums whose low bits exercise every rounding case.
    const r = rng(11);
    const m = 33, k = 19, n = 47;
    const a = tensor(Float32Array.from({ length: m * k }, () => r() * 200 - 100), [m, k]);
    const b = tensor(Float32Array.from({ length: k * n }, () => r() * 2 - 1), [k, n]);
    const bias = tensor(Float32Array.from({ length: n }, () => r() * 1e-3), [n]);
    for (const config of [undefined, 'cpu.scalar.f32.4x8.mc8.kc7.nc16.t1']) {
      const c32 = matmulSync(a, b, { config, bias });
      for (const outDtype of ['bf16', 'f16'] as const) {
        const c16 = matmulSync(a, b, { config, bias, outDtype });
        const want = outDtype === 'bf16' ? f32ToBf16(c32.data as Float32Array) : f32ToF16(c32.data as Float32Array);
        expect(Array.from(c16.data)).toEqual(Array.from(want));
      }
    }
  });
});
