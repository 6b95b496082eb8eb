// Float64 references of every model layer and of the whole Llama decoder, written from the definitions
// (Hugging Face's LlamaForCausalLM: rotate_half rotary embeddings, grouped-query causal attention, SwiGLU,
// RMSNorm), sharing no code with src/models. Everything is a plain Float64Array, row-major.
import { activate, roundTo } from './helpers.js';
import type { Activation } from '../src/matmul.js';

/** The dtype a reference GEMM rounds its input to first: true is bf16; false or undefined rounds nothing. */
export type RefRounding = boolean | 'bf16' | 'f16' | undefined;

/**
 * y[M, out] = act(x[M, in] W[out, in]^T + bias); with roundInput, x is rounded to bf16 (true) or to the
 * dtype given (nearest even) first, as a model feeds a GEMM whose weight reads 16-bit inputs.
 */
export function refLinear(x: Float64Array, m: number, w: Float64Array, out: number, bias?: Float64Array, act: Activation = 'none', roundInput: RefRounding = false): Float64Array {
  if (roundInput) {
    const dtype = roundInput === true ? 'bf16' : roundInput;
    x = x.map((v) => roundTo(dtype, v));
  }
  const inF = x.length / m;
  const y = new Float64Array(m * out);
  for (let i = 0; i < m; i++) {
    for (let o = 0; o < out; o++) {
      let s = bias ? bias[o] : 0;
      for (let k = 0; k < inF; k++) s += x[i * inF + k] * w[o * inF + k];
      y[i * out + o] = activate(act, s);
    }
  }
  return y;
}

export function refLayerNorm(x: Float64Array, n: number, w: Float64Array, b: Float64Array | undefined, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    const row = x.subarray(r * n, (r + 1) * n);
    const mean = row.reduce((s, v) => s + v, 0) / n;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / n;
    for (let i = 0; i < n; i++) y[r * n + i] = ((row[i] - mean) / Math.sqrt(variance + eps)) * w[i] + (b ? b[i] : 0);
  }
  return y;
}

export function refRmsNorm(x: Float64Array, n: number, w: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let ms = 0;
    for (let i = 0; i < n; i++) ms += x[r * n + i] ** 2;
    ms /= n;
    for (let i = 0; i < n; i++) y[r * n + i] = (x[r * n + i] / Math.sqrt(ms + eps)) * w[i];
  }
  return y;
}

export function refSoftmax(x: Float64Array, n: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    const row = x.subarray(r * n, (r + 1) * n);
    const max = Math.max(...row);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.exp(row[i] - max);
    for (let i = 0; i < n; i++) y[r * n + i] = Math.exp(row[i] - max) / sum;
  }
  return y;
}

export function refActivation(x: Float64Array, act: Activation): Float64Array {
  return x.map((v) => activate(act, v));
}

// --- Llama -----------------------------------------------------------------------------------------------

export interface RefLlamaConfig {
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  layers: number;
  vocab: number;
  eps: number;
  theta: number;
  tied: boolean;
  /**
   * Every weight GEMM reads its input rounded to bf16 (true: a bf16 model on a CPU with bf16 kernels, or on
   * a GPU) or to f16 (an f16 model on a GPU).
   */
  roundInputs?: RefRounding;
}

/** Weights by Hugging Face name, as float64 (projection biases, `<name>.bias`, are used when present). */
export type RefWeights = Map<string, Float64Array>;

/** Logits [T, vocab] of one sequence, every position, recomputed from scratch (no cache). */
export function refLlama(c: RefLlamaConfig, w: RefWeights, ids: number[]): Float64Array {
  const T = ids.length, H = c.hidden, d = H / c.heads, half = d / 2;
  const get = (name: string) => {
    const v = w.get(name);
    if (!v) throw new Error(`reference: missing ${name}`);
    return v;
  };
  const emb = get('model.embed_tokens.weight');
  let x = new Float64Array(T * H);
  ids.forEach((id, t) => x.set(emb.subarray(id * H, (id + 1) * H), t * H));
  const rope = (v: Float64Array, heads: number) => {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < heads; h++) {
        const base = (t * heads + h) * d;
        const rotated = new Float64Array(d);
        for (let i = 0; i < d; i++) {
          const freq = 1 / c.theta ** ((2 * (i % half)) / d);
          const rotateHalf = i < half ? -v[base + i + half] : v[base + i - half];
          rotated[i] = v[base + i] * Math.cos(t * freq) + rotateHalf * Math.sin(t * freq);
        }
        v.set(rotated, base);
      }
    }
  };
  const r = c.roundInputs ?? false;
  const bias = (name: string) => w.get(`${name}.bias`); // absent unless the checkpoint has it
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`;
    const h = refRmsNorm(x, H, get(`${p}.input_layernorm.weight`), c.eps);
    const q = refLinear(h, T, get(`${p}.self_attn.q_proj.weight`), c.heads * d, bias(`${p}.self_attn.q_proj`), 'none', r);
    const k = refLinear(h, T, get(`${p}.self_attn.k_proj.weight`), c.kvHeads * d, bias(`${p}.self_attn.k_proj`), 'none', r);
    const v = refLinear(h, T, get(`${p}.self_attn.v_proj.weight`), c.kvHeads * d, bias(`${p}.self_attn.v_proj`), 'none', r);
    rope(q, c.heads);
    rope(k, c.kvHeads);
    const attn = new Float64Array(T * c.heads * d);
    for (let head = 0; head < c.heads; head++) {
      const kvHead = Math.floor(head / (c.heads / c.kvHeads));
      for (let t = 0; t < T; t++) {
        const scores = new Float64Array(t + 1);
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[(t * c.heads + head) * d + i] * k[(s * c.kvHeads + kvHead) * d + i];
          scores[s] = dot / Math.sqrt(d);
        }
        const prob = refSoftmax(scores, t + 1);
        for (let i = 0; i < d; i++) {
          let sum = 0;
          for (let s = 0; s <= t; s++) sum += prob[s] * v[(s * c.kvHeads + kvHead) * d + i];
          attn[(t * c.heads + head) * d + i] = sum;
        }
      }
    }
    const o = refLinear(attn, T, get(`${p}.self_attn.o_proj.weight`), H, bias(`${p}.self_attn.o_proj`), 'none', r);
    x = x.map((val, i) => val + o[i]);
    const h2 = refRmsNorm(x, H, get(`${p}.post_attention_layernorm.weight`), c.eps);
    const gate = refLinear(h2, T, get(`${p}.mlp.gate_proj.weight`), c.intermediate, bias(`${p}.mlp.gate_proj`), 'silu', r);
    const up = refLinear(h2, T, get(`${p}.mlp.up_proj.weight`), c.intermediate, bias(`${p}.mlp.up_proj`), 'none', r);
    const down = refLinear(gate.map((g, i) => g * up[i]), T, get(`${p}.mlp.down_proj.weight`), H, bias(`${p}.mlp.down_proj`), 'none', r);
    x = x.map((val, i) => val + down[i]);
  }
  const final = refRmsNorm(x, H, get('model.norm.weight'), c.eps);
  return refLinear(final, T, get(c.tied ? 'model.embed_tokens.weight' : 'lm_head.weight'), c.vocab, c.tied ? undefined : bias('lm_head'), 'none', r);
}

// --- the ops beyond GEMM (src/ops.ts) ----------------------------------------------------------------------

/** Rows of x [rows, heads * d] rotated per head (rotate_half) by the tables' angles [P, d/2] at positions[r]. */
export function refRope(x: Float64Array, heads: number, d: number, positions: ArrayLike<number>, cos: Float64Array, sin: Float64Array): Float64Array {
  const half = d / 2, cols = heads * d;
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    const p = positions[r] * half;
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const lo = r * cols + h * d + i, hi = lo + half;
        y[lo] = x[lo] * cos[p + i] - x[hi] * sin[p + i];
        y[hi] = x[hi] * cos[p + i] + x[lo] * sin[p + i];
      }
    }
  }
  return y;
}

/** silu(gate) * up, element by element. */
export function refSwiglu(gate: Float64Array, up: Float64Array): Float64Array {
  return gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
}

/** The index of each row's largest value, the lowest on ties, NaN never winning (all NaN: 0). */
export function refArgmax(x: Float64Array, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / cols; r++) {
    let best = 0, value = NaN;
    for (let c = 0; c < cols; c++) {
      const v = x[r * cols + c];
      if (!Number.isNaN(v) && (Number.isNaN(value) || v > value)) [best, value] = [c, v];
    }
    out.push(best);
  }
  return out;
}

export interface RefCacheLayout {
  heads: number;
  kvHeads: number;
  headDim: number;
  capacity: number;
  tokens: number;
  /** Cache slot and cached positions of each sequence. */
  slots: ArrayLike<number>;
  past: ArrayLike<number>;
  scale: number;
}

/**
 * Causal grouped-query attention over a KV cache [slots][kvHeads][capacity][headDim] (keys, values):
 * q [batch * tokens, heads * headDim]; row b * tokens + t, head h attends to positions 0 .. past[b] + t
 * of KV head h / (heads / kvHeads) in slot slots[b].
 */
export function refAttention(q: Float64Array, keys: Float64Array, values: Float64Array, c: RefCacheLayout): Float64Array {
  const d = c.headDim, cols = c.heads * d, group = c.heads / c.kvHeads;
  const out = new Float64Array(q.length);
  for (let b = 0; b < c.slots.length; b++) {
    for (let t = 0; t < c.tokens; t++) {
      const r = b * c.tokens + t, span = c.past[b] + t + 1;
      for (let h = 0; h < c.heads; h++) {
        const base = (c.slots[b] * c.kvHeads + Math.floor(h / group)) * c.capacity * d;
        const scores = new Float64Array(span);
        for (let j = 0; j < span; j++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[r * cols + h * d + i] * keys[base + j * d + i];
          scores[j] = c.scale * dot;
        }
        const p = refSoftmax(scores, span);
        for (let i = 0; i < d; i++) {
          let sum = 0;
          for (let j = 0; j < span; j++) sum += p[j] * values[base + j * d + i];
          out[r * cols + h * d + i] = sum;
        }
      }
    }
  }
  return out;
}
