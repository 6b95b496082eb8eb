// Tensors: a dtype, a row-major shape and the data. f32 data is a Float32Array; f16 and bf16 data are
// Uint16Arrays of raw bit patterns (Node 20 has no Float16Array). A tensor lives on 'cpu' (its data
// is a typed array) or on a GPU ('cuda:0', 'hip:1', ...: its data is device memory, see device.ts);
// t.to(device) copies between them and matmul runs where its inputs are.
import { type Device, DeviceStorage, parseDevice } from './device.js';
import { checkBuffer, formatShape, shapeSize } from './errors.js';
import {
  type DType,
  bf16ToF32,
  dtypeSize,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  isDType,
} from './dtype.js';

export type { Device, GpuDevice } from './device.js';
export type TensorData = Float32Array | Uint16Array;

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly device: Device;
  /** The device memory of a GPU tensor (undefined on the CPU). */
  readonly storage: DeviceStorage | undefined;
  readonly #data: TensorData | undefined;
  readonly #size: number;

  /**
   * Wraps `data` (not copied): a Float32Array for f32 and a Uint16Array for f16/bf16 on the CPU, or the
   * DeviceStorage of a GPU tensor (then `device` may be left out).
   */
  constructor(dtype: DType, shape: readonly number[], data: TensorData | DeviceStorage, device?: Device) {
    if (!isDType(dtype)) throw new TypeError(`Tensor: unknown dtype ${JSON.stringify(dtype)} (expected 'f32', 'f16' or 'bf16')`);
    if (!Array.isArray(shape)) throw new TypeError('Tensor: shape must be an array of non-negative integers');
    const size = shapeSize('Tensor', shape);
    if (data instanceof DeviceStorage) {
      if (device !== undefined && device !== data.device) {
        throw new TypeError(`Tensor: device is ${JSON.stringify(device)} but the storage is on ${data.device}`);
      }
      if (size * dtypeSize(dtype) > data.bytes) {
        throw new RangeError(`Tensor: shape ${formatShape(shape)} of ${dtype} needs ${size * dtypeSize(dtype)} bytes but the storage has ${data.bytes}`);
      }
      this.storage = data;
      this.device = data.device;
    } else {
      checkTensorData('Tensor', dtype, shape, data, size);
      if (device !== undefined && device !== 'cpu') {
        parseDevice('Tensor', device);
        throw new TypeError(`Tensor: a typed array lives on 'cpu', not ${JSON.stringify(device)}; move the tensor with .to(${JSON.stringify(device)})`);
      }
      this.#data = data;
      this.device = 'cpu';
      this.storage = undefined;
    }
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.#size = size;
  }

  /** The values (CPU tensors); a TypeError for a GPU tensor, whose data must first be copied with .to('cpu'). */
  get data(): TensorData {
    if (this.#data === undefined) {
      throw new TypeError(`Tensor.data: the tensor is on ${this.device}; copy it to the host with .to('cpu')`);
    }
    return this.#data;
  }

  get size(): number {
    return this.#size;
  }

  /** Whether dispose() freed this GPU tensor's memory (always false on the CPU). */
  get disposed(): boolean {
    return this.storage !== undefined && this.storage.disposed;
  }

  /** The values as f32 (a copy for f16/bf16; the data itself for f32). CPU tensors only. */
  toFloat32(): Float32Array {
    const data = this.#hostData('toFloat32');
    if (this.dtype === 'f32') return data as Float32Array;
    return this.dtype === 'bf16' ? bf16ToF32(data as Uint16Array) : f16ToF32(data as Uint16Array);
  }

  /** The same values in another dtype (rounded to nearest even); this tensor when the dtype matches. */
  toDType(dtype: DType): Tensor {
    if (dtype === this.dtype) return this;
    this.#hostData('toDType');
    return tensor(this.toFloat32(), this.shape, dtype);
  }

  /** The same data viewed with another shape of equal size (on the same device). */
  reshape(shape: readonly number[]): Tensor {
    const size = shapeSize('reshape', shape);
    if (size !== this.size) {
      throw new RangeError(`reshape: cannot view ${formatShape(this.shape)} (${this.size} elements) as ${formatShape(shape)}`);
    }
    return new Tensor(this.dtype, shape, this.storage ?? this.data, this.device);
  }

  /**
   * This tensor on `device`: itself when already there, else a copy ('cpu', 'cuda:0', 'hip:0', ...).
   * Copies run on the device's stream and are complete when this returns. Weights copied once stay
   * resident until dispose() (or until the tensor is collected).
   */
  to(device: Device): Tensor {
    const target = parseDevice('Tensor.to', device);
    if (device === this.device) {
      if (this.disposed) this.storage!.handle('Tensor.to: the tensor');
      return this;
    }
    // GPU -> host first (also the way between two GPUs).
    let host: Tensor = this;
    if (this.storage) {
      const data = this.dtype === 'f32' ? new Float32Array(this.size) : new Uint16Array(this.size);
      this.storage.download('Tensor.to: the tensor', data);
      host = new Tensor(this.dtype, this.shape, data);
    }
    if (target.backend === 'cpu') return host;
    const storage = DeviceStorage.allocate('Tensor.to', target.backend, target.index, this.size * dtypeSize(this.dtype));
    try {
      storage.upload('Tensor.to: the new tensor', host.data);
    } catch (e) {
      storage.dispose();
      throw e;
    }
    return new Tensor(this.dtype, this.shape, storage);
  }

  /**
   * Frees a GPU tensor's device memory now, instead of when it is collected; the tensor (and every
   * reshape of it) is unusable afterwards. GEMMs already running on it finish first. No-op on the CPU.
   */
  dispose(): void {
    this.storage?.dispose();
  }

  #hostData(where: string): TensorData {
    if (this.#data === undefined) {
      throw new TypeError(`Tensor.${where}: the tensor is on ${this.device}; copy it to the host with .to('cpu')`);
    }
    return this.#data;
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
