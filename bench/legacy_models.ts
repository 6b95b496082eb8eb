// What the models ran before every layer beyond the weight GEMMs became a native op, kept for the benches
// that compare against it (bench/ops.bench.ts, bench/models.bench.ts): attention as two GEMMs per KV head
// (scores = Q K^T / sqrt(d), out = P V) with a TypeScript softmax, and the TypeScript RMSNorm loop.
import { Tensor } from '../src/index.js';
import { gemm } from '../src/models/layers.js';

/** Softmax of each row of x: [rows, n] over its first `valid(row)` entries; later entries become 0. In place. */
export function softmaxRows(x: Float32Array, n: number, valid: (row: number) => number = () => n): Float32Array {
  for (let r = 0, row = 0; r < x.length; r += n, row++) {
    const len = valid(row);
    let max = -Infinity;
    for (let i = 0; i < len; i++) if (x[r + i] > max) max = x[r + i];
    let sum = 0;
    for (let i = 0; i < len; i++) {
      const e = Math.exp(x[r + i] - max);
      x[r + i] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let i = 0; i < len; i++) x[r + i] *= inv;
    x.fill(0, r + len, r + n);
  }
  return x;
}

/** Rows of x: [rows, n] scaled by 1/rms (x * rsqrt(mean(x^2) + eps) * weight), written to out. */
export function rmsNormLoop(x: Float32Array, n: number, weight: Float32Array, eps: number, out: Float32Array = new Float32Array(x.length)): Float32Array {
  for (let r = 0; r < x.length; r += n) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[r + i] * x[r + i];
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) out[r + i] = x[r + i] * inv * weight[i];
  }
  return out;
}

const f32 = (data: Float32Array, shape: number[]) => new Tensor('f32', shape, data);

/** The shapes attentionAsGemms reads. */
export interface LegacyAttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  capacity: number;
}

/**
 * q: [B*T, heads*d] (rotated); keys/values [B, kvHeads, capacity, d] f32 hold positions [0, past + T) of
 * each sequence. Returns [B*T, heads*d]: per (sequence, KV head), scores = Q K^T / sqrt(d) over the query
 * heads sharing it, a causal softmax in TypeScript, then P V.
 */
export async function attentionAsGemms(s: LegacyAttentionShape, keys: Float32Array, values: Float32Array, q: Float32Array, batch: number, tokens: number, past: number): Promise<Float32Array> {
  const { heads, kvHeads, headDim: d, capacity } = s;
  const groups = heads / kvHeads;
  const span = past + tokens;
  const out = new Float32Array(batch * tokens * heads * d); // [B*T, heads*d]
  const qGroup = new Float32Array(groups * tokens * d); // [groups*T, d]: the query heads sharing one KV head
  const scale = 1 / Math.sqrt(d);
  for (let b = 0; b < batch; b++) {
    for (let g = 0; g < kvHeads; g++) {
      for (let hh = 0; hh < groups; hh++) {
        for (let t = 0; t < tokens; t++) {
          const src = ((b * tokens + t) * heads + g * groups + hh) * d;
          qGroup.set(q.subarray(src, src + d), (hh * tokens + t) * d);
        }
      }
      const at = (b * kvHeads + g) * capacity * d;
      const k = f32(keys.subarray(at, at + span * d), [span, d]); // [S, d]
      const v = f32(values.subarray(at, at + span * d), [span, d]); // [S, d]
      const scores = await gemm(f32(qGroup, [groups * tokens, d]), k, { transB: true, alpha: scale }); // [groups*T, S]
      softmaxRows(scores.data as Float32Array, span, (row) => past + (row % tokens) + 1);
      const mixed = (await gemm(scores, v)).data as Float32Array; // [groups*T, d]
      for (let hh = 0; hh < groups; hh++) {
        for (let t = 0; t < tokens; t++) {
          const dst = ((b * tokens + t) * heads + g * groups + hh) * d;
          out.set(mixed.subarray((hh * tokens + t) * d, (hh * tokens + t + 1) * d), dst);
        }
      }
    }
  }
  return out;
}
