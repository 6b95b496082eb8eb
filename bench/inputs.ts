import { type DType, Tensor, tensor } from '../src/index.js';

/** Deterministic values in [-1, 1) for benchmarks (a fixed LCG: fast, and the same on every run). */
export function randomTensor(shape: number[], dtype: DType, seed: number): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const v = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2147483648 - 1;
  }
  return tensor(v, shape, dtype);
}
