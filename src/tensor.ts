// Tensors: a dtype, a row-major shape and the data. f32 data is a Float32Array; f16 and bf16 data are
// Uint16Arrays of raw bit patterns (Node 20 has no Float16Array). A tensor lives on 'cpu' (its data
// is a typed array) or on a GPU ('cuda:0', 'hip:1', ...: its data is device memory, see device.ts);
// t.to(device) copies between them and matmul runs where its inputs are.
//
// Host memory: tensors gemmkit allocates (tensor, zeros, matmul results, toDType, Tensor.to('cpu'))
// of HOST_MEMORY_MIN_BYTES or more live in memory the addon owns and lends to JS as an external
// ArrayBuffer (native/addon/host_memory.h), so a GEMM in flight keeps it valid whatever JS does to the
// ArrayBuffer, and async calls use it in place. Anything else (smaller tensors, matmulSync results,
// arrays the caller wraps with new Tensor) is ordinary JS memory, which an async call copies at its start
// (and copies its result into at its end); synchronous calls use every kind in place.
import { constants as bufferConstants } from 'node:buffer';
import { type Device, DeviceStorage, parseDevice } from './device.js';
import { checkBuffer, describeValue, formatShape, isDetached, shapeSize } from './errors.js';
import {
  type DType,
  bf16ToF32,
  checkNumbers,
  dtypeSize,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  isDType,
} from './dtype.js';
import { type NativeAddon, cpuNative } from './native.js';

export type { Device, GpuDevice } from './device.js';
export { describeValue } from './errors.js';
export type TensorData = Float32Array | Uint16Array;

/**
 * Host tensors gemmkit allocates of at least this many bytes live in addon memory. Below it, a copy at the
 * start of an async call costs less than an external ArrayBuffer (whose memory Node frees only when the
 * event loop turns), so small tensors stay ordinary memory.
 */
export const HOST_MEMORY_MIN_BYTES = 64 * 1024;

/** The most bytes one host tensor gemmkit allocates may hold: Node's buffer limit (4 GiB on Node 20). */
export const MAX_HOST_TENSOR_BYTES: number = bufferConstants.MAX_LENGTH;

let addonForMemory: NativeAddon | null | undefined;

// The addon when it loads; host tensors still work (in ordinary memory) when it does not.
function memoryAddon(): NativeAddon | null {
  if (addonForMemory === undefined) {
    try {
      addonForMemory = cpuNative();
    } catch {
      addonForMemory = null;
    }
  }
  return addonForMemory;
}

function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${n} bytes`;
}

/**
 * A RangeError naming `what` when `size` elements of `dtype` are more than a host tensor holds; `what`
 * is a string, or a shape described as '<what> [d0, d1, ...]' (formatted only for the message).
 */
function checkHostBytes(where: string, what: string | { what: string; shape: readonly number[] }, dtype: DType, size: number): number {
  const bytes = size * dtypeSize(dtype);
  if (!Number.isSafeInteger(bytes) || bytes > MAX_HOST_TENSOR_BYTES) {
    const name = typeof what === 'string' ? what : `${what.what} ${formatShape(what.shape)}`;
    throw new RangeError(`${where}: ${name} of ${size} ${dtype} elements needs ${formatBytes(bytes)}, more than a host tensor can hold (${formatBytes(MAX_HOST_TENSOR_BYTES)}: buffer.constants.MAX_LENGTH)`);
  }
  return bytes;
}

/**
 * What host memory is for: 'addon' (the default) is addon memory from HOST_MEMORY_MIN_BYTES up, zeroed;
 * 'result' the same for an async GEMM's result, which the GEMM overwrites entirely (not zeroed first);
 * 'ordinary' is JS memory, for what synchronous code makes and drops at a high rate (matmulSync results):
 * Node releases addon memory only when the event loop turns, so a loop that never yields would hold all
 * of it until it does.
 */
export type HostMemoryUse = 'addon' | 'result' | 'ordinary';

/**
 * Host memory for `size` elements of `dtype` (zeroed, except for a 'result'); a RangeError naming `what`
 * above MAX_HOST_TENSOR_BYTES, before anything is allocated.
 */
export function allocateHostData(where: string, what: string | { what: string; shape: readonly number[] }, dtype: DType, size: number, use: HostMemoryUse = 'addon'): TensorData {
  const bytes = checkHostBytes(where, what, dtype, size);
  let buffer: ArrayBuffer | null = null;
  if (use !== 'ordinary' && bytes >= HOST_MEMORY_MIN_BYTES) buffer = memoryAddon()?.hostAlloc(bytes, use === 'addon') ?? null;
  try {
    buffer ??= new ArrayBuffer(bytes);
    return dtype === 'f32' ? new Float32Array(buffer, 0, size) : new Uint16Array(buffer, 0, size);
  } catch (e) {
    if (e instanceof RangeError) {
      const name = typeof what === 'string' ? what : `${what.what} ${formatShape(what.shape)}`;
      throw new RangeError(`${where}: ${name} of ${size} ${dtype} elements (${formatBytes(bytes)}) cannot be allocated: ${e.message}`);
    }
    throw e;
  }
}

/** Whether the addon owns a typed array's memory (the memory async calls use in place). */
export function isAddonMemory(data: ArrayBufferView): boolean {
  const addon = memoryAddon();
  return addon !== null && !(data.buffer instanceof SharedArrayBuffer) && addon.hostOwns(data.buffer);
}

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

  /**
   * Whether the tensor's memory is gone: freed by dispose() (of this tensor or of another viewing the same
   * memory), or, on the CPU, its ArrayBuffer detached by a transfer.
   */
  get disposed(): boolean {
    if (this.storage) return this.storage.disposed;
    return this.#size > 0 && isDetached(this.#data!.buffer);
  }

  /** The values as f32 (a copy for f16/bf16; the data itself for f32). CPU tensors only. */
  toFloat32(): Float32Array {
    const data = this.#hostData('toFloat32');
    if (this.dtype === 'f32') return data as Float32Array;
    return this.dtype === 'bf16' ? bf16ToF32(data as Uint16Array) : f16ToF32(data as Uint16Array);
  }

  /** The same values in another dtype (rounded to nearest even); this tensor when the dtype matches. */
  toDType(dtype: DType): Tensor {
    if (!isDType(dtype)) throw new TypeError(`Tensor.toDType: unknown dtype ${JSON.stringify(dtype)} (expected 'f32', 'f16' or 'bf16')`);
    if (dtype === this.dtype) {
      if (!this.storage) this.#hostData('toDType');
      return this;
    }
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
      if (this.storage && this.disposed) this.storage.handle('Tensor.to: the tensor');
      if (!this.storage) this.#hostData('to');
      return this;
    }
    // GPU -> host first (also the way between two GPUs).
    let host: Tensor = this;
    if (this.storage) {
      const data = allocateHostData('Tensor.to', 'the host copy', this.dtype, this.size);
      this.storage.download('Tensor.to: the tensor', data);
      host = new Tensor(this.dtype, this.shape, data);
    } else {
      this.#hostData('to');
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
   * Frees the tensor's memory now instead of when it is collected; the tensor, and every reshape or other
   * view of the same memory, is unusable afterwards (a TypeError names it). GEMMs already running on it
   * finish first, on memory they hold. GPU tensors free their device memory; CPU tensors free memory
   * gemmkit allocated (HOST_MEMORY_MIN_BYTES and up) when their data views all of it. Memory the caller
   * gave (new Tensor over an array of theirs) and small tensors are left to the collector. Idempotent.
   */
  dispose(): void {
    if (this.storage) {
      this.storage.dispose();
      return;
    }
    const data = this.#data!;
    if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength || data.buffer instanceof SharedArrayBuffer) return;
    memoryAddon()?.hostRelease(data.buffer);
  }

  #hostData(where: string): TensorData {
    if (this.#data === undefined) {
      throw new TypeError(`Tensor.${where}: the tensor is on ${this.device}; copy it to the host with .to('cpu')`);
    }
    checkTensorData(`Tensor.${where}: the tensor`, this.dtype, this.shape, this.#data, this.#size);
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

/**
 * A tensor of `shape` in host memory gemmkit allocates, zeros unless `use` is 'result' (see
 * HostMemoryUse); `what` names it in the RangeError for a size over MAX_HOST_TENSOR_BYTES.
 */
export function hostTensor(where: string, what: string, dtype: DType, shape: readonly number[], use: HostMemoryUse = 'addon'): Tensor {
  const size = shapeSize(where, shape, what);
  return new Tensor(dtype, shape, allocateHostData(where, { what, shape }, dtype, size, use));
}

/**
 * A tensor from values (numbers, or any typed array of numbers), converted to `dtype` with
 * round-to-nearest-even into new memory: the tensor never aliases `values`. A value that is not a
 * number (a string, undefined, null, ...) is a TypeError in every dtype.
 */
export function tensor(values: ArrayLike<number>, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  if (!isDType(dtype)) throw new TypeError(`tensor: unknown dtype ${JSON.stringify(dtype)} (expected 'f32', 'f16' or 'bf16')`);
  const size = shapeSize('tensor', shape);
  if (values == null || typeof (values as ArrayLike<number>).length !== 'number' || typeof values === 'string') {
    throw new TypeError(`tensor: values must be an array of numbers or a typed array, got ${describeValue(values)}`);
  }
  if (ArrayBuffer.isView(values) && size > 0 && isDetached(values.buffer)) {
    throw new TypeError('tensor: values is backed by a detached ArrayBuffer');
  }
  if (values.length !== size) {
    throw new RangeError(`tensor: shape ${formatShape(shape)} needs ${size} values but got ${values.length}`);
  }
  checkHostBytes('tensor', { what: 'shape', shape }, dtype, size);
  checkNumbers('tensor', values);
  const data = allocateHostData('tensor', { what: 'shape', shape }, dtype, size);
  if (dtype === 'f32') (data as Float32Array).set(values);
  else if (dtype === 'bf16') f32ToBf16(values, data as Uint16Array);
  else f32ToF16(values, data as Uint16Array);
  return new Tensor(dtype, shape, data);
}

/** A tensor of zeros. */
export function zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  if (!isDType(dtype)) throw new TypeError(`zeros: unknown dtype ${JSON.stringify(dtype)} (expected 'f32', 'f16' or 'bf16')`);
  return hostTensor('zeros', 'shape', dtype, shape);
}
