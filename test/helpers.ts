// Shared test helpers: deterministic inputs, the float64 reference GEMM and error-bounded comparison.
import { type DType, Tensor, tensor, fromBf16Bits, fromF16Bits, toBf16Bits, toF16Bits } from '../src/index.js';
import type { Activation } from '../src/matmul.js';

/** Small deterministic PRNG (mulberry32), so failures reproduce. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Small integers in [-range, range]: exact in f32, f16 and bf16, and their dot products are exact in f32. */
export function intTensor(shape: number[], dtype: DType, seed: number, range = 3): Tensor {
  const r = rng(seed);
  const n = shape.reduce((p, d) => p * d, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.floor(r() * (2 * range + 1)) - range;
  return tensor(v, shape, dtype);
}

/** Uniform values in [-1, 1), rounded to dtype. */
export function randTensor(shape: number[], dtype: DType, seed: number): Tensor {
  const r = rng(seed);
  const n = shape.reduce((p, d) => p * d, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = r() * 2 - 1;
  return tensor(v, shape, dtype);
}

export function values(t: Tensor): Float64Array {
  return Float64Array.from(t.toFloat32());
}

export interface RefOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  c?: Tensor;
  bias?: Tensor;
  activation?: Activation;
}

export function activate(act: Activation | undefined, x: number): number {
  switch (act ?? 'none') {
    case 'relu': return x > 0 ? x : Number.isNaN(x) ? x : 0;
    case 'gelu': return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'silu': return x / (1 + Math.exp(-x));
    default: return x;
  }
}

// erf to ~1e-15 (series for small |x|, continued fraction otherwise); Math has no erf.
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = x, term = x;
    for (let n = 1; n < 100; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz), accurate for |x| >= 2.5
  let f = ax, C = ax, D = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    D = ax + an * D; D = 1 / D;
    C = ax + an / C;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (f * Math.sqrt(Math.PI));
  return x > 0 ? 1 - erfc : erfc - 1;
}

export interface Reference {
  shape: number[];
  value: Float64Array; // exact-as-float64 result, before rounding to the output dtype
  bound: Float64Array; // sum_k |a_ik b_kj| (+ |beta c| + |bias|): scales the rounding error
}

/** float64 reference of C = act(alpha op(a) op(b) + beta c + bias), 2-D or batched. */
export function referenceMatmul(a: Tensor, b: Tensor, o: RefOptions = {}): Reference {
  const av = values(a), bv = values(b);
  const batched = a.shape.length === 3 || b.shape.length === 3;
  const batch = a.shape.length === 3 ? a.shape[0] : b.shape.length === 3 ? b.shape[0] : 1;
  const [ra, ca] = a.shape.slice(-2);
  const [rb, cb] = b.shape.slice(-2);
  const m = o.transA ? ca : ra, k = o.transA ? ra : ca, n = o.transB ? rb : cb;
  const sa = a.shape.length === 3 ? ra * ca : 0, sb = b.shape.length === 3 ? rb * cb : 0;
  const cv = o.c ? values(o.c) : undefined;
  const biasv = o.bias ? values(o.bias) : undefined;
  const alpha = o.alpha ?? 1, beta = o.beta ?? 0;
  const value = new Float64Array(batch * m * n), bound = new Float64Array(batch * m * n);
  for (let t = 0; t < batch; t++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0, mag = 0;
        for (let l = 0; l < k; l++) {
          const x = av[t * sa + (o.transA ? l * ca + i : i * ca + l)];
          const y = bv[t * sb + (o.transB ? j * cb + l : l * cb + j)];
          acc += x * y;
          mag += Math.abs(x * y);
        }
        const idx = (t * m + i) * n + j;
        let v = alpha * acc;
        mag = Math.abs(alpha) * mag;
        if (beta !== 0 && cv) { v += beta * cv[idx]; mag += Math.abs(beta * cv[idx]); }
        if (biasv) { v += biasv[j]; mag += Math.abs(biasv[j]); }
        value[idx] = activate(o.activation, v);
        bound[idx] = mag;
      }
    }
  }
  return { shape: batched ? [batch, m, n] : [m, n], value, bound };
}

export function roundTo(dtype: DType, x: number): number {
  if (dtype === 'f32') return Math.fround(x);
  return dtype === 'bf16' ? fromBf16Bits(toBf16Bits(x)) : fromF16Bits(toF16Bits(x));
}

export const EPS: Record<DType, number> = { f32: 2 ** -24, f16: 2 ** -11, bf16: 2 ** -8 };

/**
 * Asserts |got - want| <= K-scaled f32 accumulation error on the magnitude bound plus one rounding to
 * the output dtype. `exact` demands bit equality with the reference rounded to the output dtype.
 */
export function expectMatches(got: Tensor, ref: Reference, k: number, label: string, exact = false): void {
  if (got.shape.join() !== ref.shape.join()) {
    throw new Error(`${label}: shape [${got.shape}] but the reference is [${ref.shape}]`);
  }
  const g = got.toFloat32();
  // 2K ulps for the f32 accumulation, 8 more for alpha/beta/bias and the f32 activation's own rounding.
  const accTol = (2 * Math.max(k, 1) + 8) * EPS.f32;
  for (let i = 0; i < g.length; i++) {
    const want = ref.value[i];
    const have = g[i];
    if (Number.isNaN(want) || Number.isNaN(have)) {
      if (Number.isNaN(want) !== Number.isNaN(have)) throw new Error(`${label}: element ${i} is ${have}, want ${want}`);
      continue;
    }
    if (exact) {
      const w = roundTo(got.dtype, want);
      if (!Object.is(have, w) && !(have === 0 && w === 0)) {
        throw new Error(`${label}: element ${i} (row ${Math.floor(i / ref.shape.at(-1)!)}) is ${have}, want exactly ${w}`);
      }
      continue;
    }
    // gelu's slope peaks at ~1.13, so errors before the activation may grow by that much.
    const tol = 1.2 * accTol * ref.bound[i] + EPS[got.dtype] * Math.abs(want) + 1e-30 + (got.dtype === 'f32' ? 0 : 2 ** -24);
    if (!(Math.abs(have - want) <= tol)) {
      throw new Error(`${label}: element ${i} (row ${Math.floor(i / ref.shape.at(-1)!)}) is ${have}, want ${want} (tolerance ${tol.toExponential(2)})`);
    }
  }
}
