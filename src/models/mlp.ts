// MLP: a sequence of layers described by a small JSON spec kept in the safetensors file's __metadata__
// under "gemmkit.model", so one file is a complete model:
//
//   { "type": "mlp", "layers": [
//       { "op": "linear", "weight": "fc1.weight", "bias": "fc1.bias", "activation": "relu" },
//       { "op": "layernorm", "weight": "ln.weight", "bias": "ln.bias", "eps": 1e-5 },
//       { "op": "rmsnorm", "weight": "norm.weight", "eps": 1e-6 },
//       { "op": "relu" | "gelu" | "silu" | "softmax" } ] }
//
// A Linear's activation runs fused in its GEMM; standalone activations, norms and softmax run in place.
import type { Checkpoint } from '../safetensors.js';
import { formatShape } from '../errors.js';
import type { Activation } from '../matmul.js';
import { ACTIVATIONS } from '../native.js';
import { Tensor } from '../tensor.js';
import { Linear, applyActivation, f32, layerNorm, rmsNorm, softmaxRows } from './layers.js';

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
  | { op: 'layernorm'; weight: Float32Array; bias?: Float32Array; eps: number }
  | { op: 'rmsnorm'; weight: Float32Array; eps: number }
  | { op: 'relu' | 'gelu' | 'silu' | 'softmax' };

export interface MlpModel {
  readonly kind: 'mlp';
  readonly spec: MlpSpec;
  readonly inputFeatures: number;
  readonly outputFeatures: number;
  readonly layers: readonly MlpLayer[];
}


/** Parses and checks the spec (not the tensors); errors name the file and the layer. */
export function parseMlpSpec(where: string, text: string): MlpSpec {
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (e) {
    throw new Error(`${where}: __metadata__["${MLP_METADATA_KEY}"] is not valid JSON (${(e as Error).message})`);
  }
  const s = spec as MlpSpec;
  if (s === null || typeof s !== 'object' || s.type !== 'mlp' || !Array.isArray(s.layers) || s.layers.length === 0) {
    throw new Error(`${where}: the model spec must be {"type": "mlp", "layers": [...]} with at least one layer`);
  }
  s.layers.forEach((l, i) => {
    const at = `${where}: layer ${i}`;
    if (l === null || typeof l !== 'object') throw new Error(`${at} is not an object`);
    switch (l.op) {
      case 'linear':
        if (typeof l.weight !== 'string') throw new Error(`${at} (linear) needs "weight", a tensor name`);
        if (l.bias !== undefined && typeof l.bias !== 'string') throw new Error(`${at} (linear): "bias" must be a tensor name`);
        if (l.activation !== undefined && !(ACTIVATIONS as readonly string[]).includes(l.activation)) {
          throw new Error(`${at} (linear): activation must be one of ${ACTIVATIONS.join(', ')}, got ${JSON.stringify(l.activation)}`);
        }
        break;
      case 'layernorm':
      case 'rmsnorm':
        if (typeof l.weight !== 'string') throw new Error(`${at} (${l.op}) needs "weight", a tensor name`);
        if (l.op === 'layernorm' && l.bias !== undefined && typeof l.bias !== 'string') throw new Error(`${at} (layernorm): "bias" must be a tensor name`);
        if (l.eps !== undefined && !(typeof l.eps === 'number' && l.eps > 0)) throw new Error(`${at} (${l.op}): eps must be a positive number`);
        break;
      case 'relu': case 'gelu': case 'silu': case 'softmax':
        break;
      default:
        throw new Error(`${at}: unknown op ${JSON.stringify((l as { op: unknown }).op)} (known: linear, layernorm, rmsnorm, relu, gelu, silu, softmax)`);
    }
  });
  return s;
}

function vector(ck: Checkpoint, name: string, n: number, what: string): Float32Array {
  const t = ck.tensor(name);
  if (t.shape.length !== 1 || t.shape[0] !== n) throw new RangeError(`${ck.path}: ${what} '${name}' is ${formatShape(t.shape)}, expected [${n}]`);
  return t.toFloat32();
}

export function loadMlp(ck: Checkpoint, spec: MlpSpec): MlpModel {
  const layers: MlpLayer[] = [];
  let width: number | undefined; // features flowing between layers; fixed by the first Linear
  let inputFeatures: number | undefined;
  spec.layers.forEach((l, i) => {
    const at = `${ck.path}: layer ${i} (${l.op})`;
    if (l.op === 'linear') {
      const linear = new Linear(`${at}: '${l.weight}'`, ck.tensor(l.weight), l.bias !== undefined ? ck.tensor(l.bias) : undefined, l.activation ?? 'none');
      if (width !== undefined && linear.weight.inFeatures !== width) {
        throw new RangeError(`${at}: '${l.weight}' is ${formatShape(linear.weight.weight.shape)} but its input has ${width} features`);
      }
      inputFeatures ??= linear.weight.inFeatures;
      width = linear.weight.outFeatures;
      layers.push({ op: 'linear', linear, name: l.weight });
    } else if (l.op === 'layernorm' || l.op === 'rmsnorm') {
      if (width === undefined) {
        const w = ck.tensor(l.weight);
        width = w.shape[0];
        inputFeatures ??= width;
      }
      const weight = vector(ck, l.weight, width, 'weight');
      const eps = l.eps ?? 1e-5;
      if (l.op === 'layernorm') {
        layers.push({ op: 'layernorm', weight, bias: l.bias !== undefined ? vector(ck, l.bias, width, 'bias') : undefined, eps });
      } else {
        layers.push({ op: 'rmsnorm', weight, eps });
      }
    } else {
      layers.push({ op: l.op });
    }
  });
  if (inputFeatures === undefined || width === undefined) throw new Error(`${ck.path}: the model spec has no layer with weights`);
  return { kind: 'mlp', spec, inputFeatures, outputFeatures: width, layers };
}

/** [batch, in] (any dtype) -> [batch, out] f32. */
export async function mlpForward(model: MlpModel, input: Tensor): Promise<Tensor> {
  if (!(input instanceof Tensor)) throw new TypeError('forward: an MLP takes a Tensor [batch, features]');
  if (input.shape.length !== 2 || input.shape[1] !== model.inputFeatures) {
    throw new RangeError(`forward: input is ${formatShape(input.shape)} but the model takes [batch, ${model.inputFeatures}]`);
  }
  let x = input;
  for (const layer of model.layers) {
    if (layer.op === 'linear') {
      x = await layer.linear.forward(x);
      continue;
    }
    const n = x.shape[1];
    // In place on our own f32 activations; the caller's input is copied (toFloat32 of f16/bf16 is one already).
    const v = x !== input ? (x.data as Float32Array) : x.dtype === 'f32' ? (x.data as Float32Array).slice() : x.toFloat32();
    if (layer.op === 'layernorm') layerNorm(v, n, layer.weight, layer.bias, layer.eps);
    else if (layer.op === 'rmsnorm') rmsNorm(v, n, layer.weight, layer.eps, v);
    else if (layer.op === 'softmax') softmaxRows(v, n);
    else applyActivation(layer.op, v);
    x = f32(v, x.shape);
  }
  return x;
}
