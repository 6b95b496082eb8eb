// Element types and exact conversions between numbers / f32 and the 16-bit formats f16 and bf16.
// Every conversion rounds once, to nearest even, and keeps +-Inf, +-0 and NaN (quietened); the native
// engine (native/core/dtype.h) rounds identically, which the tests check bit for bit.

export type DType = 'f32' | 'f16' | 'bf16';
export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16'];

export function isDType(x: unknown): x is DType {
  return x === 'f32' || x === 'f16' || x === 'bf16';
}

export function dtypeSize(t: DType): number {
  return t === 'f32' ? 4 : 2;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

// --- from f32 bit patterns (integer arithmetic only, used for Float32Array inputs) ------------------

function bf16FromF32Bits(u: number): number {
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry into the exponent is correct.
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

function f16FromF32Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const a = (u & 0x7fffffff) >>> 0;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  if (a >= 0x477ff000) return sign | 0x7c00; // rounds to 65520 or more: Inf
  if (a < 0x38800000) {
    if (a < 0x33000000) return sign; // below half the smallest subnormal
    const exp = a >>> 23;
    const man = (a & 0x7fffff) | 0x800000;
    const shift = 126 - exp; // brings the mantissa to units of 2^-24
    let q = man >>> shift;
    const rem = man & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) !== 0)) q++;
    return sign | q;
  }
  const v = a - 0x38000000; // rebias the exponent from 127 to 15
  let q = v >>> 13;
  const rem = v & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (q & 1) !== 0)) q++;
  return sign | q;
}

// --- from any JS number (float64), rounded once ------------------------------------------------------

// Rounds |x| to a binary format with `precision` significand bits (implicit bit included), minimum
// normal exponent `emin` and maximum exponent `emax`; returns the format's bits for the magnitude.
function roundMagnitude(a: number, precision: number, emin: number, emax: number, expBits: number): number {
  const manBits = precision - 1;
  const infBits = ((1 << expBits) - 1) << manBits;
  if (a === Infinity) return infBits;
  if (a === 0) return 0;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 may be off by one next to powers of two
  else if (2 ** (e + 1) <= a) e++;
  if (e < emin) e = emin;
  const ulp = 2 ** (e - manBits);
  const q = a / ulp; // exact: division by a power of two within range
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  if (r >= 2 ** precision) {
    r /= 2;
    e++;
  }
  if (e > emax) return infBits;
  if (r < 2 ** manBits) return r; // subnormal (e === emin): exponent field 0
  return ((e - emin + 1) << manBits) | (r - 2 ** manBits);
}

// A non-number would round to a meaningless pattern (Math.abs('x') is NaN, but the NaN check is not
// reached for strings), so the scalar conversions refuse it; tensor() and the array conversions name the
// element.
function checkNumber(where: string, x: unknown): void {
  if (typeof x !== 'number') throw new TypeError(`${where}: expected a number, got ${x === null ? 'null' : typeof x}`);
}

export function toBf16Bits(x: number): number {
  checkNumber('toBf16Bits', x);
  if (Number.isNaN(x)) return 0x7fc0;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  return sign | roundMagnitude(Math.abs(x), 8, -126, 127, 8);
}

export function toF16Bits(x: number): number {
  checkNumber('toF16Bits', x);
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  return sign | roundMagnitude(Math.abs(x), 11, -14, 15, 5);
}

export function fromBf16Bits(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0];
}

let f16Table: Float32Array | undefined;

function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >> 10) & 0x1f;
      const man = h & 0x3ff;
      let v: number;
      if (exp === 0x1f) v = man === 0 ? sign * Infinity : NaN;
      else if (exp === 0) v = sign * man * 2 ** -24;
      else v = sign * (1 + man / 1024) * 2 ** (exp - 15);
      f16Table[h] = v;
    }
  }
  return f16Table;
}

export function fromF16Bits(bits: number): number {
  return f16ToF32Table()[bits & 0xffff];
}

// --- arrays ------------------------------------------------------------------------------------------

/**
 * A TypeError naming the first element of `src` that is not a number (typed arrays of numbers are not
 * scanned). Every conversion and tensor() treat non-numbers alike: refused, never coerced.
 */
export function checkNumbers(where: string, src: ArrayLike<unknown>): void {
  if (ArrayBuffer.isView(src)) {
    if (src instanceof BigInt64Array || src instanceof BigUint64Array) throw new TypeError(`${where}: values must be numbers, not a ${src.constructor.name}`);
    return;
  }
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    if (typeof v !== 'number') throw new TypeError(`${where}: values[${i}] is ${v === null ? 'null' : typeof v}, not a number`);
  }
}

function outputFor(where: string, length: number, out: Uint16Array | undefined): Uint16Array {
  if (out === undefined) return new Uint16Array(length);
  if (!(out instanceof Uint16Array) || out.length !== length) {
    throw new RangeError(`${where}: out must be a Uint16Array of ${length} elements`);
  }
  return out;
}

/** Converts numbers or f32 values to bf16 bit patterns (round to nearest even), into `out` when given. */
export function f32ToBf16(src: ArrayLike<number>, out?: Uint16Array): Uint16Array {
  checkNumbers('f32ToBf16', src);
  const dst = outputFor('f32ToBf16', src.length, out);
  if (src instanceof Float32Array) {
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < bits.length; i++) dst[i] = bf16FromF32Bits(bits[i]);
  } else {
    for (let i = 0; i < src.length; i++) dst[i] = toBf16Bits(src[i]);
  }
  return dst;
}

/** Converts numbers or f32 values to f16 bit patterns (round to nearest even), into `out` when given. */
export function f32ToF16(src: ArrayLike<number>, out?: Uint16Array): Uint16Array {
  checkNumbers('f32ToF16', src);
  const dst = outputFor('f32ToF16', src.length, out);
  if (src instanceof Float32Array) {
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < bits.length; i++) dst[i] = f16FromF32Bits(bits[i]);
  } else {
    for (let i = 0; i < src.length; i++) dst[i] = toF16Bits(src[i]);
  }
  return dst;
}

/** bf16 bit patterns to f32 values (exact). */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

/** f16 bit patterns to f32 values (exact). */
export function f16ToF32(src: Uint16Array): Float32Array {
  const table = f16ToF32Table();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

/** The value of one f32 bit pattern; used by tests that enumerate patterns. */
export function fromF32Bits(bits: number): number {
  u32Scratch[0] = bits >>> 0;
  return f32Scratch[0];
}
