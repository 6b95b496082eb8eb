// Tensors: a dtype, a row-major shape and the data. f32 data is a Float32Array; f16 and bf16 data are
// Uint16Arrays of raw bit patterns (Node 20 has no Float16Array). Only 'cpu' tensors exist until a GPU
// backend is built.
import { checkBuffer, formatShape, shapeSize } from './errors.js';
import {
  type DType,
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  isDType,
} from './dtype.js';

export type Device = 'cpu';
export type TensorData = Float32Array | Uint16Array;

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: TensorData;
  readonly device: Device;

  /** Wraps `data` (not copied). data must be a Float32Array for f32 and a Uint16Array for f16/bf16. */
  constructor(dtype: DType, shape: readonly number[], data: TensorData, device: Device = 'cpu') {
    if (!isDType(dtype)) throw new TypeError(`Tensor: unknown dtype ${JSON.stringify(dtype)} (expected 'f32', 'f16' or 'bf16')`);
    if (!Array.isArray(shape)) throw new TypeError('Tensor: shape must be an array of non-negative integers');
    const size = shapeSize('Tensor', shape);
    checkTensorData('Tensor', dtype, shape, data, size);
    if (device !== 'cpu') throw new TypeError(`Tensor: unknown device ${JSON.stringify(device)} (only 'cpu' is available)`);
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.data = data;
    this.device = device;
  }

  get size(): number {
    return this.data.length;
  }

  /** The values as f32 (a copy for f16/bf16; the data itself for f32). */
  toFloat32(): Float32Array {
    if (this.dtype === 'f32') return this.data as Float32Array;
    return this.dtype === 'bf16' ? bf16ToF32(this.data as Uint16Array) : f16ToF32(this.data as Uint16Array);
  }

  /** The same values in another dtype (rounded to nearest even); this tensor when the dtype matches. */
  toDType(dtype: DType): Tensor {
    if (dtype === this.dtype) return this;
    return tensor(this.toFloat32(), this.shape, dtype);
  }

  /** The same data viewed with another shape of equal size. */
  reshape(shape: readonly number[]): Tensor {
    const size = shapeSize('reshape', shape);
    if (size !== this.size) {
      throw new RangeError(`reshape: cannot view ${formatShape(this.shape)} (${this.size} elements) as ${formatShape(shape)}`);
    }
    return new Tensor(this.dtype, shape, this.data, this.device);
  }

  to(device: Device): Tensor {
    if (device === 'cpu') return this;
    throw new TypeError(`Tensor.to: unknown device ${JSON.stringify(device)}`);
  }
}

export function checkTensorData(where: string, dtype: DType, shape: readonly number[], data: unknown, size: number): void {
  const want = dtype === 'f32' ? Float32Array : Uint16Array;
  if (!(data instanceof want)) {
    throw new TypeError(`${where}: ${dtype} data must be a ${want.name}, got ${describeValue(data)}`);
  }
  checkBuffer(`${where}: data`, data, size);
  if (data.length !== size) {
    throw new RangeError(`${where}: shape ${formatShape(shape)} needs ${size} elements but data has ${data.length}`);
  }
}

export function describeValue(x: unknown): string {
  if (x === null) return 'null';
  if (typeof x === 'object') return (x as object).constructor?.name ?? 'object';
  return typeof x;
}

/** A tensor from values (numbers or a Float32Array), converted to `dtype` with round-to-nearest-even. */
export function tensor(values: ArrayLike<number>, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  if (!isDType(dtype)) throw new TypeError(`tensor: unknown dtype ${JSON.stringify(dtype)} (expected 'f32', 'f16' or 'bf16')`);
  const size = shapeSize('tensor', shape);
  if (values == null || typeof (values as ArrayLike<number>).length !== 'number') {
    throw new TypeError('tensor: values must be an array of numbers or a Float32Array');
  }
  if (values.length !== size) {
    throw new RangeError(`tensor: shape ${formatShape(shape)} needs ${size} values but got ${values.length}`);
  }
  let data: TensorData;
  if (dtype === 'f32') data = values instanceof Float32Array ? values : Float32Array.from(values);
  else data = dtype === 'bf16' ? f32ToBf16(values) : f32ToF16(values);
  return new Tensor(dtype, shape, data);
}

export function zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  if (!isDType(dtype)) throw new TypeError(`zeros: unknown dtype ${JSON.stringify(dtype)} (expected 'f32', 'f16' or 'bf16')`);
  const size = shapeSize('zeros', shape);
  return new Tensor(dtype, shape, dtype === 'f32' ? new Float32Array(size) : new Uint16Array(size));
}
