// MLP: a sequence of layers described by a small JSON spec kept in the safetensors file's __metadata__
// under "gemmkit.model", so one file is a complete model:
//
//   { "type": "mlp", "layers": [
//       { "op": "linear", "weight": "fc1.weight", "bias": "fc1.bias", "activation": "relu" },
//       { "op": "layernorm", "weight": "ln.weight", "bias": "ln.bias", "eps": 1e-5 },
//       { "op": "rmsnorm", "weight": "norm.weight", "eps": 1e-6 },
//       { "op": "relu" | "gelu" | "silu" | "softmax" } ] }
//
// The model lives on one device ('cpu', 'cuda:<n>', 'hip:<n>'). A Linear's activation runs fused in its
// GEMM; standalone activations, norms and softmax are native ops (src/ops.ts), in place on the model's own
// activations.
import type { Device } from '../device.js';
import { formatShape } from '../errors.js';
import type { Activation } from '../matmul.js';
import { ACTIVATIONS, type OpKindName } from '../native.js';
import { type MatrixView, PreparedOp } from '../ops.js';
import { type Checkpoint, preview } from '../safetensors.js';
import { Tensor } from '../tensor.js';
import { Linear, allocateOn, runsSync } from './layers.js';
import { ModelLifetime, checkMemory, yieldIfBusy } from './resources.js';

export const MLP_METADATA_KEY = 'gemmkit.model';

export type MlpLayerSpec =
  | { op: 'linear'; weight: string; bias?: string; activation?: Activation }
  | { op: 'layernorm'; weight: string; bias?: string; eps?: number }
  | { op: 'rmsnorm'; weight: string; eps?: number }
  | { op: 'relu' | 'gelu' | 'silu' | 'softmax' };

export interface MlpSpec {
  type: 'mlp';
  layers: MlpLayerSpec[];
}

type MlpLayer =
  | { op: 'linear'; linear: Linear; name: string }
  | { op: 'layernorm'; weight: Tensor; bias?: Tensor; eps: number }
  | { op: 'rmsnorm'; weight: Tensor; eps: number }
  | { op: 'relu' | 'gelu' | 'silu' | 'softmax' };

/** A loaded MLP (from loadModel). dispose() frees its weights now instead of at collection. */
export class MlpModel {
  readonly kind = 'mlp' as const;
  readonly spec: MlpSpec;
  readonly inputFeatures: number;
  readonly outputFeatures: number;
  /** The widest activation between layers (for the memory a forward needs). */
  readonly maxWidth: number;
  /** Where its weights live and where it runs: 'cpu', 'cuda:<n>' or 'hip:<n>'. */
  readonly device: Device;
  /** @internal */
  readonly lifetime = new ModelLifetime();
  #layers: MlpLayer[] | undefined;

  /** @internal Use loadModel(). */
  constructor(spec: MlpSpec, layers: MlpLayer[], inputFeatures: number, outputFeatures: number, maxWidth: number, device: Device) {
    this.spec = spec;
    this.device = device;
    this.#layers = layers;
    this.inputFeatures = inputFeatures;
    this.outputFeatures = outputFeatures;
    this.maxWidth = maxWidth;
  }

  get layers(): readonly MlpLayer[] {
    if (!this.#layers) throw new TypeError('MlpModel: the model was disposed');
    return this.#layers;
  }

  /** True once dispose() was called. */
  get disposed(): boolean {
    return this.lifetime.disposed;
  }

  /**
   * Frees the weights (packed panels on the CPU, device memory on a GPU) and lets go of every tensor now
   * (calls in flight finish first); later forward calls are TypeErrors. Idempotent.
   */
  dispose(): void {
    this.lifetime.dispose(() => {
      const layers = this.#layers ?? [];
      this.#layers = undefined;
      disposeLayers(layers);
    });
  }
}

function disposeLayers(layers: MlpLayer[]): void {
  for (const l of layers) {
    if (l.op === 'linear') l.linear.dispose();
    else if (l.op === 'layernorm' || l.op === 'rmsnorm') {
      l.weight.dispose();
      if (l.op === 'layernorm') l.bias?.dispose();
    }
  }
}

/** Parses and checks the spec (not the tensors); errors name the file and the layer. */
export function parseMlpSpec(where: string, text: string): MlpSpec {
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`${where}: __metadata__["${MLP_METADATA_KEY}"] is not valid JSON (${(e as Error).message.slice(0, 120)})`);
  }
  const s = spec as MlpSpec;
  if (s === null || typeof s !== 'object' || s.type !== 'mlp' || !Array.isArray(s.layers) || s.layers.length === 0) {
    throw new TypeError(`${where}: the model spec must be {"type": "mlp", "layers": [...]} with at least one layer`);
  }
  s.layers.forEach((l, i) => {
    const at = `${where}: layer ${i}`;
    if (l === null || typeof l !== 'object') throw new TypeError(`${at} is not an object`);
    switch (l.op) {
      case 'linear':
        if (typeof l.weight !== 'string') throw new TypeError(`${at} (linear) needs "weight", a tensor name`);
        if (l.bias !== undefined && typeof l.bias !== 'string') throw new TypeError(`${at} (linear): "bias" must be a tensor name`);
        if (l.activation !== undefined && !(ACTIVATIONS as readonly string[]).includes(l.activation)) {
          throw new RangeError(`${at} (linear): activation must be one of ${ACTIVATIONS.join(', ')}, got ${preview(l.activation)}`);
        }
        break;
      case 'layernorm':
      case 'rmsnorm':
        if (typeof l.weight !== 'string') throw new TypeError(`${at} (${l.op}) needs "weight", a tensor name`);
        if (l.op === 'layernorm' && l.bias !== undefined && typeof l.bias !== 'string') throw new TypeError(`${at} (layernorm): "bias" must be a tensor name`);
        // The norm ops compute in f32: eps must be one (at most 3.4e38).
        if (l.eps !== undefined && !(typeof l.eps === 'number' && l.eps > 0 && Number.isFinite(Math.fround(l.eps)))) throw new RangeError(`${at} (${l.op}): eps must be a positive number within f32's range`);
        break;
      case 'relu': case 'gelu': case 'silu': case 'softmax':
        break;
      default:
        throw new RangeError(`${at}: unknown op ${preview((l as { op: unknown }).op)} (known: linear, layernorm, rmsnorm, relu, gelu, silu, softmax)`);
    }
  });
  return s;
}

interface MlpPlan {
  inputFeatures: number;
  outputFeatures: number;
  maxWidth: number;
}

/**
 * Checks the spec against the file's headers before anything is read or allocated: every tensor exists
 * in a dtype gemmkit loads, Linear weights are [out, in] with in = the features flowing in, biases and
 * norm weights are [width], and every dimension is at least 1 (an empty weight is no model, and its other
 * dimension could be anything up to MAX_TENSOR_DIM).
 */
export function checkMlpTensors(ck: Checkpoint, spec: MlpSpec): MlpPlan {
  let width: number | undefined; // features flowing between layers; fixed by the first layer with weights
  let inputFeatures: number | undefined;
  let maxWidth = 0;
  const shapeOf = (at: string, name: string) => {
    const shape = ck.info(name).shape; // a SafetensorsError naming the tensor when it is not there
    ck.loadedDtype(name);
    if (shape.some((d) => d === 0)) throw new RangeError(`${at}: '${name}' is ${formatShape(shape)}; a model's weights need every dimension >= 1`);
    return shape;
  };
  const vector = (at: string, name: string, n: number, what: string) => {
    const shape = shapeOf(at, name);
    if (shape.length !== 1 || shape[0] !== n) throw new RangeError(`${ck.path}: ${what} '${name}' is ${formatShape(shape)}, expected [${n}]`);
  };
  spec.layers.forEach((l, i) => {
    const at = `${ck.path}: layer ${i} (${l.op})`;
    if (l.op === 'linear') {
      const shape = shapeOf(at, l.weight);
      if (shape.length !== 2) throw new RangeError(`${at}: '${l.weight}': a Linear weight must be [out, in], got ${formatShape(shape)}`);
      const [out, inFeatures] = shape;
      if (width !== undefined && inFeatures !== width) {
        throw new RangeError(`${at}: '${l.weight}' is ${formatShape(shape)} but its input has ${width} features`);
      }
      if (l.bias !== undefined) {
        const b = shapeOf(at, l.bias);
        if (b.length !== 1 || b[0] !== out) throw new RangeError(`${at}: '${l.weight}': bias is ${formatShape(b)} but the weight is ${formatShape(shape)} (expected [${out}])`);
      }
      inputFeatures ??= inFeatures;
      width = out;
    } else if (l.op === 'layernorm' || l.op === 'rmsnorm') {
      if (width === undefined) {
        width = shapeOf(at, l.weight)[0] ?? 1;
        inputFeatures ??= width;
      }
      vector(at, l.weight, width, 'weight');
      if (l.op === 'layernorm' && l.bias !== undefined) vector(at, l.bias, width, 'bias');
    }
    maxWidth = Math.max(maxWidth, width ?? 0);
  });
  if (inputFeatures === undefined || width === undefined) throw new RangeError(`${ck.path}: the model spec has no layer with weights`);
  return { inputFeatures, outputFeatures: width, maxWidth: Math.max(maxWidth, inputFeatures) };
}

/**
 * The model from a checkpoint whose spec checkMlpTensors has passed (loadModel's describe() checks it), with
 * its weights on `device` (checked by resolveDevice) in their stored dtype.
 */
export function loadMlp(ck: Checkpoint, spec: MlpSpec, plan: MlpPlan, device: Device = 'cpu'): MlpModel {
  const layers: MlpLayer[] = [];
  // Norm weights and biases in their stored dtype: the ops widen them to f32 exactly.
  const made: Tensor[] = [];
  const vector = (name: string, dtype?: 'f32') => {
    const host = ck.tensor(name);
    const t = (dtype ? host.toDType(dtype) : host).to(device);
    made.push(t);
    return t;
  };
  try {
    spec.layers.forEach((l, i) => {
      if (l.op === 'linear') {
        const at = `${ck.path}: layer ${i} (${l.op})`;
        const linear = new Linear(`${at}: '${l.weight}'`, ck.tensor(l.weight), l.bias !== undefined ? ck.tensor(l.bias) : undefined, l.activation ?? 'none', device);
        layers.push({ op: 'linear', linear, name: l.weight });
      } else if (l.op === 'layernorm') {
        // The op reads weight and bias in one dtype: f32 when they differ (exact for every dtype).
        const mixed = l.bias !== undefined && ck.loadedDtype(l.bias) !== ck.loadedDtype(l.weight) ? 'f32' : undefined;
        layers.push({ op: 'layernorm', weight: vector(l.weight, mixed), bias: l.bias !== undefined ? vector(l.bias, mixed) : undefined, eps: l.eps ?? 1e-5 });
      } else if (l.op === 'rmsnorm') {
        layers.push({ op: 'rmsnorm', weight: vector(l.weight), eps: l.eps ?? 1e-5 });
      } else {
        layers.push({ op: l.op });
      }
    });
  } catch (e) {
    disposeLayers(layers);
    for (const t of made) t.dispose();
    throw e;
  }
  return new MlpModel(spec, layers, plan.inputFeatures, plan.outputFeatures, plan.maxWidth, device);
}

// One of the MLP's row ops on x [rows, cols], written over x (our own f32 activation) or into a new f32
// tensor. On a GPU the last layer waits for the device, off the event loop, so forward settles once its
// result is written.
async function rowOp(x: Tensor, inPlace: boolean, kind: OpKindName, fields: { eps?: number; activation?: Activation }, weights: { weight?: Tensor; bias?: Tensor }, last: boolean): Promise<Tensor> {
  const [rows, cols] = x.shape;
  const out = inPlace ? x : allocateOn('forward', x.device, 'f32', [rows, cols]);
  const view = (t: Tensor): MatrixView => ({ tensor: t, offset: 0, rows, cols, ld: cols });
  const op = new PreparedOp('forward', kind, { rows, cols, ...fields, ...(weights.weight ? { dtypeWeight: weights.weight.dtype } : {}) },
    { x: view(x), out: view(out), ...weights });
  if (x.device === 'cpu' ? runsSync('cpu', rows * cols) : !last) op.run();
  else await op.runAsync();
  return out;
}

/** [batch, in] (any dtype, on any device: it is copied to the model's) -> [batch, out] f32 on the model's device. */
export async function mlpForward(model: MlpModel, input: Tensor): Promise<Tensor> {
  if (!(input instanceof Tensor)) throw new TypeError('forward: an MLP takes a Tensor [batch, features]');
  if (input.shape.length !== 2 || input.shape[1] !== model.inputFeatures) {
    throw new RangeError(`forward: input is ${formatShape(input.shape)} but the model takes [batch, ${model.inputFeatures}]`);
  }
  const batch = input.shape[0];
  // Two activations of the widest layer live at once (a Linear's input and output).
  if (model.device === 'cpu') checkMemory('forward', `a batch of ${batch}`, 2 * 4 * batch * model.maxWidth, batch * model.maxWidth);
  let x = input.to(model.device);
  // The caller's tensor is never written: an op writes over x only once x is the model's own f32 activation.
  let own = x !== input && x.dtype === 'f32';
  const layers = model.layers;
  // Our own activations (the input's copy, each layer's result) are freed as soon as the next layer has
  // read them, so a GPU model does not leave device memory to the collector.
  let ours = x !== input;
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i], last = i === layers.length - 1;
    if (i > 0) await yieldIfBusy();
    let y: Tensor;
    if (layer.op === 'linear') {
      y = await layer.linear.forward(x);
    } else if (layer.op === 'layernorm') {
      y = await rowOp(x, own, 'layerNorm', { eps: layer.eps }, { weight: layer.weight, bias: layer.bias }, last);
    } else if (layer.op === 'rmsnorm') {
      y = await rowOp(x, own, 'rmsNorm', { eps: layer.eps }, { weight: layer.weight }, last);
    } else if (layer.op === 'softmax') {
      y = await rowOp(x, own, 'softmax', {}, {}, last);
    } else {
      y = await rowOp(x, own, 'activate', { activation: layer.op }, {}, last);
    }
    if (ours && y !== x) x.dispose();
    x = y;
    own = ours = true; // every layer's result is a new f32 tensor of ours
  }
  return x;
}
