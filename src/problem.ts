// A matmul call, validated: user input checked (TypeError/RangeError naming the argument and shapes) and
// turned into the flat problem description the native layer runs, on the backend and device where its
// tensors are. Which config runs is not decided here (src/tuner/dispatch.ts does that); the public API
// (matmul.ts) puts the two together.
import { placeCall } from './backend.js';
import type { BackendName } from './backend.js';
import { type Device, DeviceStorage, type Placement, checkGpuProblem, parseDevice } from './device.js';
import { type DType, dtypeSize, isDType } from './dtype.js';
import { checkOptions, formatShape, shapeSize } from './errors.js';
import { ACTIVATIONS, type Activation, type GpuBackendName, type NativePackedWeight, type NativeSurface, type ProblemDesc } from './native.js';
import { PackedWeight } from './prepack.js';
import { Tensor, checkTensorData, describeValue, hostTensor } from './tensor.js';

export interface MatmulOptions {
  /** a is stored transposed: [K, M] (or [B, K, M]). */
  transA?: boolean;
  /**
   * b is stored transposed: [N, K] (or [B, N, K]); `x @ W^T` for a Linear weight W: [out, in].
   * For a PackedWeight b it may be omitted; if given it must be what prepack was given.
   */
  transB?: boolean;
  /** Scales op(a) op(b). Default 1. */
  alpha?: number;
  /** Scales the existing contents of `out`, which must be given when beta != 0. Default 0. */
  beta?: number;
  /** Where to write the result (and read C from when beta != 0). Allocated when absent. */
  out?: Tensor;
  /** [N], added to every row after alpha/beta and before the activation. */
  bias?: Tensor;
  activation?: Activation;
  /** dtype of the result. Default: out's dtype, else the inputs' dtype when they agree, else f32. */
  outDtype?: DType;
  backend?: BackendName;
  /** A canonical config name (see info().kernels and the tuner) forcing one kernel configuration. */
  config?: string;
}

const OPTION_KEYS = new Set([
  'transA', 'transB', 'alpha', 'beta', 'out', 'bias', 'activation', 'outDtype', 'backend', 'config',
]);

/** A validated call: what the native layer runs, before dispatch picks its config. */
export interface ValidatedMatmul {
  native: NativeSurface;
  /** config is opts.config or '' (the backend's heuristic) until dispatch fills it in. */
  desc: ProblemDesc;
  out: Tensor;
  /** b, when it is a prepack()ed weight (desc then carries its handle). */
  packed?: PackedWeight;
  /** opts.config, when given. */
  forced?: string;
}

export function checkTensor(where: string, name: string, x: unknown): Tensor {
  if (!(x instanceof Tensor)) {
    throw new TypeError(`${where}: ${name} must be a Tensor (see tensor() and zeros()), got ${describeValue(x)}`);
  }
  if (x.storage) {
    x.storage.handle(`${where}: ${name}`); // throws once disposed
    return x;
  }
  // Re-checked at every call: the buffer may have been detached since the tensor was made.
  checkTensorData(`${where}: ${name}`, x.dtype, x.shape, x.data, shapeSize(`${where}: ${name}`, x.shape));
  return x;
}

// What the native layer reads for a tensor: its typed array, or its device buffer.
function operand(where: string, name: string, t: Tensor): NonNullable<ProblemDesc['a']> {
  return t.storage ? t.storage.handle(`${where}: ${name}`) : t.data;
}

function checkFlag(where: string, name: string, v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new TypeError(`${where}: ${name} must be a boolean, got ${describeValue(v)}`);
  return v;
}

/** The largest finite f32: the kernels scale in f32, where anything larger would be infinite. */
const F32_MAX = 3.4028234663852886e38;

function checkScalar(where: string, name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number') throw new TypeError(`${where}: ${name} must be a number, got ${describeValue(v)}`);
  if (!Number.isFinite(v)) throw new RangeError(`${where}: ${name} must be a finite number, got ${v}`);
  if (Math.abs(v) > F32_MAX) throw new RangeError(`${where}: ${name} = ${v} is beyond the f32 range (|${name}| <= ${F32_MAX}); the GEMM scales in f32`);
  return v;
}

function byteRange(t: Tensor): [ArrayBufferLike, number, number] {
  return [t.data.buffer, t.data.byteOffset, t.data.byteOffset + t.data.byteLength];
}

export function overlaps(x: Tensor, y: Tensor): boolean {
  if (x.storage || y.storage) return x.storage === y.storage;
  const [bx, sx, ex] = byteRange(x);
  const [by, sy, ey] = byteRange(y);
  return bx === by && sx < ey && sy < ex && ex > sx && ey > sy;
}

/** A host tensor of `shape` for a result, in ordinary memory (see allocateHostData in tensor.ts). */
export function allocate(where: string, dtype: DType, shape: number[]): Tensor {
  return hostTensor(where, 'the result', dtype, shape, 'ordinary');
}

export function allocateOnDevice(where: string, place: Placement & { backend: GpuBackendName }, dtype: DType, shape: number[]): Tensor {
  const size = shape.reduce((p, d) => p * d, 1);
  return new Tensor(dtype, shape, DeviceStorage.allocate(where, place.backend, place.index, size * dtypeSize(dtype)));
}

// What the checks below need of b: a Tensor, or for a PackedWeight (host memory) its source's dtype and shape.
interface OperandShape {
  dtype: DType;
  shape: readonly number[];
  device: Device;
}

function packedSource(w: PackedWeight): OperandShape {
  return { dtype: w.dtype, shape: w.shape, device: 'cpu' };
}

function checkPackedTransB(where: string, w: PackedWeight, v: unknown): boolean {
  if (v === undefined) return w.transB;
  const t = checkFlag(where, 'transB', v);
  if (t !== w.transB) throw new TypeError(`${where}: transB is ${t} but b was prepacked with transB=${w.transB}`);
  return t;
}

/**
 * Validates a matmul call and returns what the native layer needs; throws TypeError/RangeError. A host
 * result it allocates is addon memory for an async call (`forAsync`: written in place while the call
 * runs) and ordinary memory for a synchronous one, which a loop that never yields frees as it goes
 * (see allocateHostData in tensor.ts).
 */
export function validateMatmul(where: string, aIn: unknown, bIn: unknown, optsIn: unknown, forAsync = false): ValidatedMatmul {
  const opts = checkOptions(where, optsIn, OPTION_KEYS) as MatmulOptions;
  const a = checkTensor(where, 'a', aIn);
  // b is a Tensor or a PackedWeight (prepack.ts); the packed one stands for its 2-D source weight.
  const packed = bIn instanceof PackedWeight ? bIn : undefined;
  const packedHandle: NativePackedWeight | undefined = packed?.nativeHandle(where);
  const bTensor = packed ? undefined : checkTensor(where, 'b', bIn);
  const b: OperandShape = packed ? packedSource(packed) : bTensor!;
  const transA = checkFlag(where, 'transA', opts.transA);
  const transB = packed ? checkPackedTransB(where, packed, opts.transB) : checkFlag(where, 'transB', opts.transB);
  const alpha = checkScalar(where, 'alpha', opts.alpha, 1);
  const beta = checkScalar(where, 'beta', opts.beta, 0);

  const ra = a.shape.length, rb = b.shape.length;
  if (ra !== 2 && ra !== 3) throw new RangeError(`${where}: a is ${formatShape(a.shape)}; expected [M, K] or [B, M, K]`);
  if (rb !== 2 && rb !== 3) throw new RangeError(`${where}: b is ${formatShape(b.shape)}; expected [K, N] or [B, K, N]`);
  const [rowsA, colsA] = a.shape.slice(-2);
  const [rowsB, colsB] = b.shape.slice(-2);
  const m = transA ? colsA : rowsA;
  const kA = transA ? rowsA : colsA;
  const kB = transB ? colsB : rowsB;
  const n = transB ? rowsB : colsB;
  if (kA !== kB) {
    const how = transA || transB ? `; transA=${transA}, transB=${transB}` : '';
    throw new RangeError(`${where}: a is ${formatShape(a.shape)} but b is ${formatShape(b.shape)} (K mismatch: ${kA} vs ${kB}${how})`);
  }
  const batchA = ra === 3 ? a.shape[0] : undefined;
  const batchB = rb === 3 ? b.shape[0] : undefined;
  if (batchA !== undefined && batchB !== undefined && batchA !== batchB) {
    throw new RangeError(`${where}: a is ${formatShape(a.shape)} but b is ${formatShape(b.shape)} (batch mismatch: ${batchA} vs ${batchB})`);
  }
  const batched = batchA !== undefined || batchB !== undefined;
  const batch = batchA ?? batchB ?? 1;
  const outShape = batched ? [batch, m, n] : [m, n];

  let activation: Activation = 'none';
  if (opts.activation !== undefined) {
    if (!ACTIVATIONS.includes(opts.activation)) {
      throw new TypeError(`${where}: activation must be one of ${ACTIVATIONS.map((x) => `'${x}'`).join(', ')}, got ${JSON.stringify(opts.activation)}`);
    }
    activation = opts.activation;
  }
  if (opts.outDtype !== undefined && !isDType(opts.outDtype)) {
    throw new TypeError(`${where}: outDtype must be 'f32', 'f16' or 'bf16', got ${JSON.stringify(opts.outDtype)}`);
  }
  let bias: Tensor | undefined;
  if (opts.bias !== undefined) {
    bias = checkTensor(where, 'bias', opts.bias);
    if (bias.shape.length !== 1 || bias.shape[0] !== n) {
      throw new RangeError(`${where}: bias is ${formatShape(bias.shape)} but the result has N = ${n} columns (expected [${n}])`);
    }
  }
  let out: Tensor | undefined;
  if (opts.out !== undefined) {
    out = checkTensor(where, 'out', opts.out);
    if (opts.outDtype !== undefined && opts.outDtype !== out.dtype) {
      throw new TypeError(`${where}: outDtype is '${opts.outDtype}' but out is ${out.dtype}`);
    }
    if (out.shape.length !== outShape.length || out.shape.some((d, i) => d !== outShape[i])) {
      throw new RangeError(`${where}: out is ${formatShape(out.shape)} but the result of ${formatShape(a.shape)} x ${formatShape(b.shape)} is ${formatShape(outShape)}`);
    }
    for (const [name, t] of [['a', a], ['b', packed ? packed.source : bTensor], ['bias', bias]] as const) {
      if (t && overlaps(out, t)) throw new TypeError(`${where}: out shares memory with ${name}; the result would overwrite its own input`);
    }
  } else if (beta !== 0) {
    throw new TypeError(`${where}: beta = ${beta} needs out (the C that beta scales)`);
  }
  // The call runs where its tensors are, all on one device (a PackedWeight lives on the CPU).
  for (const [name, t] of [['b', b], ['bias', bias], ['out', out]] as const) {
    if (t && t.device !== a.device) {
      throw new TypeError(`${where}: a is on ${a.device} but ${name} is on ${t.device}; move them to one device with .to(${JSON.stringify(a.device)})`);
    }
  }
  const place = parseDevice(where, a.device);
  const run = placeCall(where, opts.backend, place);
  if (run.name !== 'cpu') checkGpuProblem(where, a.shape, b.shape, m, n, kA, batch);
  if (opts.config !== undefined && (typeof opts.config !== 'string' || opts.config.length === 0)) {
    throw new TypeError(`${where}: config must be a non-empty config name, got ${JSON.stringify(opts.config)}`);
  }
  if (!out) {
    const outDtype: DType = opts.outDtype ?? (a.dtype === b.dtype ? a.dtype : 'f32');
    out = place.backend === 'cpu' ? hostTensor(where, 'the result', outDtype, outShape, forAsync ? 'result' : 'ordinary') : allocateOnDevice(where, place, outDtype, outShape);
  }
  const desc: ProblemDesc = {
    backend: run.name,
    ...(run.name === 'cpu' ? {} : { device: run.device }),
    config: opts.config ?? '',
    m, n, k: kA, batch, transA, transB,
    lda: Math.max(1, colsA), // a zero-width row still has a stride of at least one
    ldb: Math.max(1, colsB),
    ldc: Math.max(1, n),
    // A batch of 0 reads and writes nothing: its strides are 0 (one item's size may not even be a safe
    // integer then: [0, 3, 2^52]). Otherwise each tensor holds at least one item, so they are.
    strideA: batchA !== undefined && batch > 0 ? rowsA * colsA : 0,
    strideB: batchB !== undefined && batch > 0 ? rowsB * colsB : 0,
    strideC: batch > 0 ? m * n : 0,
    dtypeA: a.dtype,
    dtypeB: b.dtype,
    dtypeC: out.dtype,
    alpha, beta, activation,
    a: operand(where, 'a', a),
    c: operand(where, 'out', out),
  };
  if (packedHandle) desc.packedB = packedHandle;
  else desc.b = operand(where, 'b', bTensor!);
  if (bias) {
    desc.bias = operand(where, 'bias', bias);
    desc.biasDtype = bias.dtype;
  }
  return { native: run.native, desc, out, ...(packed ? { packed } : {}), ...(opts.config !== undefined ? { forced: opts.config } : {}) };
}

/**
 * The description of a call on a prepack()ed weight that reads the weight as stored (GEMV, a system BLAS,
 * or inputs its panel cannot serve): the handle's kept source (pinned at prepack) instead of its panel.
 * A RangeError naming `where` and the config when the weight was made with keepSource: false.
 */
export function onWeightSource(where: string, desc: ProblemDesc, packed: PackedWeight): ProblemDesc {
  packed.checkSource(where, desc.config);
  return { ...desc, packedSource: true };
}
