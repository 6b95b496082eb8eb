// The building blocks of gemmkit's models. Activations are f32 tensors; weights stay in the dtype they
// were stored in (f32, f16 or bf16) and are prepacked once at load into the layout of the kernel that will
// read them, accumulating in f32. A Linear's GEMM reads its input in linearInputDtype(weight dtype): f32,
// except that bf16 weights take bf16 inputs where the CPU has bf16 kernels (as bf16 inference does; twice
// the f32 rate and half the panel's bytes). The source is kept, so calls whose best kernel reads the
// weight as stored (GEMV when decoding one token) read it in place.
//
// Every weight GEMM of every model goes through linearForward(), with its weight made ready once at load by
// prepareWeight(): those two functions are the single place where the weight's engine form is decided.
// Everything else (norms, softmax, rotary embeddings, the elementwise products) is plain TypeScript over
// Float32Arrays, with sums in float64 (JS numbers).
import { type DType, bf16ToF32, f16ToF32 } from '../dtype.js';
import { formatShape } from '../errors.js';
import { info } from '../info.js';
import { type Activation, matmul, matmulSync } from '../matmul.js';
import { type PackedWeight, prepack } from '../prepack.js';
import { Tensor } from '../tensor.js';

/** A Linear weight in the engine's preferred form, made once at load. */
export interface PreparedWeight {
  /** [out, in] row-major, applied as x @ W^T (transB). */
  readonly weight: Tensor;
  /** The same weight prepacked for inputs of `inputDtype` (its source is `weight`); what every call passes. */
  readonly packed: PackedWeight;
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly dtype: DType;
  /** The dtype the GEMM reads its input in: linearInputDtype(dtype). */
  readonly inputDtype: DType;
}

let bf16Kernels: boolean | undefined;

/**
 * The dtype a Linear's GEMM reads its input in, for a weight of `weight` dtype: bf16 for bf16 weights on a
 * CPU with bf16 kernels (AVX512-BF16 or AMX), where bf16 x bf16 runs at twice the f32 rate on a panel of
 * half the bytes; the input is then rounded to bf16 once per call, as in bf16 inference elsewhere.
 * f32 otherwise: f32 and f16 weights, and bf16 weights where the engine would only widen them to f32.
 */
export function linearInputDtype(weight: DType): DType {
  if (weight !== 'bf16') return 'f32';
  bf16Kernels ??= info().kernels.some((k) => k.available && k.family === 'blocked' && k.inputs === 'bf16');
  return bf16Kernels ? 'bf16' : 'f32';
}

/**
 * Prepacks a Linear weight for inputs of linearInputDtype(), in the layout the loaded tuned table chose
 * for it (or the heuristic's): load the tuned file (GEMMKIT_TUNED_FILE or setTunedFile) before loading
 * the model.
 */
export function prepareWeight(name: string, weight: Tensor): PreparedWeight {
  if (weight.shape.length !== 2) throw new RangeError(`${name}: a Linear weight must be [out, in], got ${formatShape(weight.shape)}`);
  const inputDtype = linearInputDtype(weight.dtype);
  const packed = prepack(weight, { transB: true, inputDtype });
  return { weight, packed, outFeatures: weight.shape[0], inFeatures: weight.shape[1], dtype: weight.dtype, inputDtype };
}

// Below `syncBelowMacs` multiply-adds a GEMM runs synchronously (still on the engine's threads, the caller
// being one of them): an async call costs 65-100 us more than a sync one for small GEMMs on a 2-core VM
// (bench/models.bench.ts measures it), which is most of a decode step's GEMM at M = 1 (a 1024x2816 bf16
// weight streams in about 0.2 ms). 2^24 MACs is a few ms at most (M = 1 over 32 MB of bf16 weight), so
// decoding one token blocks the event loop only in such short slices; prefill GEMMs stay async. Measured on
// the bench's Llama model (hidden 1024): decode 24.3 ms/token with 2^20, 16.6 ms with 2^24.
export const gemmPolicy = { syncBelowMacs: 1 << 24 };

export interface GemmExtras {
  bias?: Tensor;
  activation?: Activation;
  /** Scales the product (attention's 1/sqrt(d)). */
  alpha?: number;
  /** When given, the product is added into this tensor in place (a fused residual add): out = residual + y. */
  residual?: Tensor;
  transB?: boolean;
}

/** act(alpha * a @ op(b) + bias) (+ residual in place), f32 out; small ones run synchronously. */
export async function gemm(a: Tensor, b: Tensor | PackedWeight, extras: GemmExtras = {}): Promise<Tensor> {
  const { bias, activation, alpha, residual, transB } = extras;
  const opts = {
    transB: transB ?? false, bias, activation, alpha,
    ...(residual ? { out: residual, beta: 1 } : { outDtype: 'f32' as const }),
  };
  const [m, k] = a.shape.slice(-2);
  const n = transB ? b.shape.at(-2)! : b.shape.at(-1)!;
  if (m * n * k < gemmPolicy.syncBelowMacs) return matmulSync(a, b, opts);
  return matmul(a, b, opts);
}

/** What linearForward is about to run; see observeLinear. */
export interface LinearCall {
  x: Tensor;
  weight: PreparedWeight;
  bias: Tensor | undefined;
  activation: Activation;
  residual: Tensor | undefined;
}

let linearObserver: ((call: LinearCall) => void) | undefined;

/** Calls `fn` before every weight GEMM (undefined: stop). Lets tests and tools see exactly what runs. */
export function observeLinear(fn: ((call: LinearCall) => void) | undefined): void {
  linearObserver = fn;
}

/**
 * y = act(x @ W^T + bias): [M, in] -> [M, out], one GEMM with bias and activation in its epilogue; with
 * `residual` ([M, out] f32) the result is added into it in place (beta = 1) and it is returned.
 */
export function linearForward(x: Tensor, w: PreparedWeight, bias?: Tensor, activation: Activation = 'none', residual?: Tensor): Promise<Tensor> {
  const input = x.toDType(w.inputDtype); // rounded to nearest even when the weight reads bf16
  linearObserver?.({ x: input, weight: w, bias, activation, residual });
  return gemm(input, w.packed, { transB: true, bias, activation, residual });
}

/** A Linear layer: weight [out, in], optional bias [out], an optional fused activation. */
export class Linear {
  readonly weight: PreparedWeight;
  readonly bias: Tensor | undefined;
  readonly activation: Activation;

  constructor(name: string, weight: Tensor, bias?: Tensor, activation: Activation = 'none') {
    this.weight = prepareWeight(name, weight);
    if (bias && (bias.shape.length !== 1 || bias.shape[0] !== this.weight.outFeatures)) {
      throw new RangeError(`${name}: bias is ${formatShape(bias.shape)} but the weight is ${formatShape(weight.shape)} (expected [${this.weight.outFeatures}])`);
    }
    this.bias = bias;
    this.activation = activation;
  }

  forward(x: Tensor, residual?: Tensor): Promise<Tensor> {
    return linearForward(x, this.weight, this.bias, this.activation, residual);
  }

  /** Frees the packed weight now (calls already running finish first) and the tensors' device memory, if any. */
  dispose(): void {
    this.weight.packed.dispose();
    this.weight.weight.dispose();
    this.bias?.dispose();
  }
}

// --- elementwise activations (the same formulas as the GEMM epilogue) --------------------------------

export function relu(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) if (x[i] < 0) x[i] = 0;
  return x;
}

export function silu(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = x[i] / (1 + Math.exp(-x[i]));
  return x;
}

/** gelu, erf form: 0.5 x (1 + erf(x / sqrt 2)). */
export function gelu(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = 0.5 * x[i] * (1 + erf(x[i] * Math.SQRT1_2));
  return x;
}

// erf from the Chebyshev fit of erfc in Numerical Recipes (relative error below 1.2e-7): f32 accuracy.
function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

export function applyActivation(act: Activation, x: Float32Array): Float32Array {
  switch (act) {
    case 'relu': return relu(x);
    case 'gelu': return gelu(x);
    case 'silu': return silu(x);
    default: return x;
  }
}

// --- norms, softmax, residual, embedding ---------------------------------------------------------------

/** Rows of x: [rows, n] normalised to zero mean and unit variance, then * weight + bias. In place. */
export function layerNorm(x: Float32Array, n: number, weight: Float32Array, bias: Float32Array | undefined, eps: number): Float32Array {
  for (let r = 0; r < x.length; r += n) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[r + i];
    mean /= n;
    let variance = 0;
    for (let i = 0; i < n; i++) variance += (x[r + i] - mean) ** 2;
    const inv = 1 / Math.sqrt(variance / n + eps);
    for (let i = 0; i < n; i++) x[r + i] = (x[r + i] - mean) * inv * weight[i] + (bias ? bias[i] : 0);
  }
  return x;
}

/** Rows of x: [rows, n] scaled by 1/rms (x * rsqrt(mean(x^2) + eps) * weight), written to out. */
export function rmsNorm(x: Float32Array, n: number, weight: Float32Array, eps: number, out: Float32Array = new Float32Array(x.length)): Float32Array {
  for (let r = 0; r < x.length; r += n) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[r + i] * x[r + i];
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) out[r + i] = x[r + i] * inv * weight[i];
  }
  return out;
}

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

/** x += y, elementwise (the residual add when it cannot ride in a GEMM's epilogue). */
export function addInPlace(x: Float32Array, y: Float32Array): Float32Array {
  if (x.length !== y.length) throw new RangeError(`residual add: ${x.length} vs ${y.length} elements`);
  for (let i = 0; i < x.length; i++) x[i] += y[i];
  return x;
}

/** Rows of an embedding table [vocab, dim] (any dtype) gathered as f32: [ids.length, dim]. */
export function embed(table: Tensor, ids: ArrayLike<number>): Float32Array {
  const [, dim] = table.shape;
  const out = new Float32Array(ids.length * dim);
  const data = table.data;
  for (let t = 0; t < ids.length; t++) {
    const row = data.subarray(ids[t] * dim, (ids[t] + 1) * dim);
    // f16/bf16 rows are widened one by one (exactly): the table stays in its stored dtype.
    out.set(row instanceof Float32Array ? row : table.dtype === 'bf16' ? bf16ToF32(row) : f16ToF32(row), t * dim);
  }
  return out;
}

/** An f32 tensor over a Float32Array (no copy). */
export function f32(data: Float32Array, shape: readonly number[]): Tensor {
  return new Tensor('f32', shape, data);
}
