// The weight GEMMs of gemmkit's models, on the device the model lives on. Weights stay in the dtype they
// were stored in (f32, f16 or bf16) and accumulate in f32. On the CPU each weight is prepacked once at load
// into the layout of the kernel that will read it, keeping the source so that calls whose best kernel reads
// the weight as stored (GEMV when decoding one token) read it in place; on a GPU it is copied to the device
// once and stays resident. A Linear's GEMM reads its input in linearInputDtype(weight dtype, device).
//
// Every weight GEMM of every model goes through a Linear: Linear.forward() for one call, or a BoundGemm (a
// call validated once on buffers a model reuses at every step) for the Llama decoder. prepareWeight() and
// linearInputDtype() are the single place where a weight's engine form and its input dtype are decided.
// Everything else a model runs (norms, rotary embeddings, attention, softmax, SwiGLU, ...) is a native op
// (src/ops.ts), so no TypeScript loop touches an activation.
import { type Device, parseDevice } from '../device.js';
import type { DType } from '../dtype.js';
import { formatShape } from '../errors.js';
import { info } from '../info.js';
import { type Activation, type MatmulOptions, type PreparedMatmul, matmul, matmulSync, prepareMatmul } from '../matmul.js';
import type { ProblemDesc } from '../native.js';
import { cast } from '../ops.js';
import { type PackedWeight, prepack } from '../prepack.js';
import { allocate, allocateOnDevice, onWeightSource } from '../problem.js';
import { Tensor } from '../tensor.js';
import { type Choice, type PreparedWeightRef, dispatch } from '../tuner/dispatch.js';

/** A new tensor of `shape` on `device`: zeroed on the CPU, uninitialised device memory on a GPU. */
export function allocateOn(where: string, device: Device, dtype: DType, shape: number[]): Tensor {
  const place = parseDevice(where, device);
  return place.backend === 'cpu' ? allocate(where, dtype, shape) : allocateOnDevice(where, place, dtype, shape);
}

/** A Linear weight in the engine's form for its device, made once at load. */
export interface PreparedWeight {
  /** [out, in] row-major on `device`, applied as x @ W^T (transB). */
  readonly weight: Tensor;
  /**
   * On the CPU: the same weight prepacked for inputs of `inputDtype` (its source is `weight`); what every
   * call passes. undefined on a GPU, where the GEMMs read `weight` itself.
   */
  readonly packed: PackedWeight | undefined;
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly dtype: DType;
  /** The dtype the GEMM reads its input in: linearInputDtype(dtype, device). */
  readonly inputDtype: DType;
  readonly device: Device;
}

let bf16Kernels: boolean | undefined;

/**
 * The dtype a Linear's GEMM reads its input in, for a weight of `weight` dtype on `device`:
 * - on a GPU ('cuda:<n>', 'hip:<n>'), the weight's own dtype: bf16 and f16 weights take bf16 / f16 inputs,
 *   so the tensor-core (mma) and matrix-core (mfma) kernels run; f32 weights take f32;
 * - on the CPU, bf16 for bf16 weights where the CPU has bf16 kernels (AVX512-BF16 or AMX), where bf16 x
 *   bf16 runs at twice the f32 rate on a panel of half the bytes; f32 otherwise (f32 and f16 weights, and
 *   bf16 weights where the engine would only widen them to f32).
 * A 16-bit input is rounded once (to nearest even) by the op that writes it, as 16-bit inference does.
 */
export function linearInputDtype(weight: DType, device: Device | string = 'cpu'): DType {
  if (device !== 'cpu') return weight;
  if (weight !== 'bf16') return 'f32';
  bf16Kernels ??= info().kernels.some((k) => k.available && k.family === 'blocked' && k.inputs === 'bf16');
  return bf16Kernels ? 'bf16' : 'f32';
}

/**
 * A Linear weight [out, in] (a host tensor) in its engine form on `device`: prepacked for inputs of
 * linearInputDtype() on the CPU, in the layout the loaded tuned table chose for it (or the heuristic's:
 * load the tuned file, GEMMKIT_TUNED_FILE or setTunedFile, before loading the model); copied to the GPU
 * once, in its stored dtype, elsewhere.
 */
export function prepareWeight(name: string, weight: Tensor, device: Device = 'cpu'): PreparedWeight {
  if (weight.shape.length !== 2) throw new RangeError(`${name}: a Linear weight must be [out, in], got ${formatShape(weight.shape)}`);
  parseDevice(name, device);
  const inputDtype = linearInputDtype(weight.dtype, device);
  const common = { outFeatures: weight.shape[0], inFeatures: weight.shape[1], dtype: weight.dtype, inputDtype, device };
  if (device === 'cpu') {
    const onHost = weight.to('cpu');
    return { weight: onHost, packed: prepack(onHost, { transB: true, inputDtype }), ...common };
  }
  return { weight: weight.to(device), packed: undefined, ...common };
}

// Below `syncBelowMacs` multiply-adds a CPU GEMM runs synchronously (still on the engine's threads, the
// caller being one of them): an async call costs 65-100 us more than a sync one for small GEMMs on a 2-core
// VM (bench/models.bench.ts measures it), which is most of a decode step's GEMM at M = 1 (a 1024x2816 bf16
// weight streams in about 0.2 ms). 2^24 MACs is a few ms at most (M = 1 over 32 MB of bf16 weight), so
// decoding one token blocks the event loop only in such short slices; prefill GEMMs stay async. Measured on
// the bench's Llama model (hidden 1024): decode 24.3 ms/token with 2^20, 16.6 ms with 2^24. The models' ops
// follow the same rule (their multiply-adds, or elements for the row ops). On a GPU a sync call only queues
// the work on the device's stream, so models queue everything and wait once, off the event loop, at the end.
export const gemmPolicy = { syncBelowMacs: 1 << 24 };

/** Whether work of `macs` multiply-adds runs synchronously on `device` (see gemmPolicy). */
export function runsSync(device: Device, macs: number): boolean {
  return device !== 'cpu' || macs < gemmPolicy.syncBelowMacs;
}

export interface GemmExtras {
  bias?: Tensor;
  activation?: Activation;
  /** Scales the product. */
  alpha?: number;
  /** When given, the product is added into this tensor in place (a fused residual add): out = residual + y. */
  residual?: Tensor;
  transB?: boolean;
}

/**
 * act(alpha * a @ op(b) + bias) (+ residual in place), f32 out, where a lives. Small CPU GEMMs run
 * synchronously; on a GPU the promise settles once the result is written (matmul waits off the event loop).
 */
export async function gemm(a: Tensor, b: Tensor | PackedWeight, extras: GemmExtras = {}): Promise<Tensor> {
  const { bias, activation, alpha, residual, transB } = extras;
  const opts: MatmulOptions = {
    transB: transB ?? false, bias, activation, alpha,
    ...(residual ? { out: residual, beta: 1 } : { outDtype: 'f32' as const }),
  };
  const [m, k] = a.shape.slice(-2);
  const n = transB ? b.shape.at(-2)! : b.shape.at(-1)!;
  if (a.device === 'cpu' && m * n * k < gemmPolicy.syncBelowMacs) return matmulSync(a, b, opts);
  return matmul(a, b, opts);
}

/** What a Linear's GEMM is about to run; see observeLinear. */
export interface LinearCall {
  /** The GEMM's input, in the weight's input dtype. */
  x: Tensor;
  weight: PreparedWeight;
  bias: Tensor | undefined;
  activation: Activation;
  /** The tensor the product is added into (beta = 1), when it is. */
  residual: Tensor | undefined;
}

let linearObserver: ((call: LinearCall) => void) | undefined;

/** Calls `fn` before every weight GEMM (undefined: stop). Lets tests and tools see exactly what runs. */
export function observeLinear(fn: ((call: LinearCall) => void) | undefined): void {
  linearObserver = fn;
}

/**
 * y = act(x @ W^T + bias): [M, in] -> [M, out] f32 on the weight's device, one GEMM with bias and activation
 * in its epilogue; with `residual` ([M, out] f32) the result is added into it in place (beta = 1) and it is
 * returned. x (any dtype) must be on the weight's device; it is converted to the weight's input dtype by the
 * cast op when it is in another.
 */
export async function linearForward(x: Tensor, w: PreparedWeight, bias?: Tensor, activation: Activation = 'none', residual?: Tensor): Promise<Tensor> {
  if (x instanceof Tensor && x.device !== w.device) {
    throw new TypeError(`Linear: x is on ${x.device} but the weight is on ${w.device}; copy it with .to(${JSON.stringify(w.device)})`);
  }
  const input = x.dtype === w.inputDtype ? x : cast(x, w.inputDtype); // rounded to nearest even when the weight reads 16-bit inputs
  try {
    linearObserver?.({ x: input, weight: w, bias, activation, residual });
    return await gemm(input, w.packed ?? w.weight, { transB: true, bias, activation, residual });
  } finally {
    if (input !== x) input.dispose(); // the converted copy (device memory on a GPU) goes at once
  }
}

/** A Linear layer: weight [out, in], optional bias [out], an optional fused activation, on one device. */
export class Linear {
  readonly weight: PreparedWeight;
  readonly bias: Tensor | undefined;
  readonly activation: Activation;

  /** `weight` and `bias` are host tensors (or already on `device`); they are copied to `device` once. */
  constructor(name: string, weight: Tensor, bias?: Tensor, activation: Activation = 'none', device: Device = 'cpu') {
    if (bias && (bias.shape.length !== 1 || bias.shape[0] !== weight.shape[0])) {
      throw new RangeError(`${name}: bias is ${formatShape(bias.shape)} but the weight is ${formatShape(weight.shape)} (expected [${weight.shape[0]}])`);
    }
    this.weight = prepareWeight(name, weight, device);
    try {
      this.bias = bias?.to(device);
    } catch (e) {
      this.weight.packed?.dispose();
      if (this.weight.weight !== weight) this.weight.weight.dispose();
      throw e;
    }
    this.activation = activation;
  }

  get device(): Device {
    return this.weight.device;
  }

  forward(x: Tensor, residual?: Tensor): Promise<Tensor> {
    return linearForward(x, this.weight, this.bias, this.activation, residual);
  }

  /** Frees the packed weight now (calls already running finish first) and the tensors' device memory, if any. */
  dispose(): void {
    this.weight.packed?.dispose();
    this.weight.weight.dispose();
    this.bias?.dispose();
  }
}

/**
 * One weight GEMM of a model bound to the buffers it reads and writes at every step: out = x @ W^T (+ bias,
 * activation), or out += x @ W^T (`accumulate`: the residual add in the epilogue, beta = 1). The call is
 * validated once, here; each run asks tuned dispatch for the config (a map lookup for a prepacked weight),
 * so a tuned file loaded later is used. A tuned row that fails to run gives way to the heuristic through
 * matmul's own fallback.
 */
export class BoundGemm {
  /** Multiply-adds per run. */
  readonly macs: number;
  readonly #where: string;
  readonly #x: Tensor;
  readonly #b: Tensor | PackedWeight;
  readonly #opts: MatmulOptions;
  readonly #call: PreparedMatmul;
  readonly #ref: PreparedWeightRef | undefined;
  readonly #observed: LinearCall;
  #choice: Choice | undefined;
  #desc: ProblemDesc | undefined;

  constructor(where: string, x: Tensor, linear: Linear, out: Tensor, accumulate: boolean) {
    const w = linear.weight;
    this.#where = where;
    this.#x = x;
    this.#b = w.packed ?? w.weight;
    this.#opts = { transB: true, bias: linear.bias, activation: linear.activation, out, ...(accumulate ? { beta: 1 } : {}) };
    this.#call = prepareMatmul(where, x, this.#b, this.#opts, false);
    this.#ref = w.packed?.dispatchRef();
    this.#observed = { x, weight: w, bias: linear.bias, activation: linear.activation, residual: accumulate ? out : undefined };
    this.macs = this.#call.desc.m * this.#call.desc.n * this.#call.desc.k;
  }

  // The description for what dispatch picks now (rebuilt only when that changes).
  #current(): ProblemDesc {
    const call = this.#call;
    const choice = dispatch(call.native, call.validated, this.#ref);
    const last = this.#choice;
    if (last === undefined || choice.config !== last.config || choice.weight !== last.weight) {
      const desc = { ...call.validated, config: choice.config };
      this.#desc = choice.weight === 'source' ? onWeightSource(this.#where, desc, call.packed!) : desc;
      this.#choice = choice;
    }
    return this.#desc!;
  }

  /** Runs it synchronously (on a GPU: queues it on the device's stream). */
  run(): void {
    linearObserver?.(this.#observed);
    const desc = this.#current();
    try {
      this.#call.native.matmulSync(desc);
    } catch {
      // A tuned row that cannot run this call: matmul drops it and runs the heuristic (another error is thrown again).
      matmulSync(this.#x, this.#b, this.#opts);
    }
  }

  /** Runs it off the event loop; settles once the result is written. */
  async runAsync(): Promise<void> {
    linearObserver?.(this.#observed);
    const desc = this.#current();
    try {
      await this.#call.native.matmulAsync(desc);
    } catch {
      await matmul(this.#x, this.#b, this.#opts);
    }
  }
}
