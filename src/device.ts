// Devices and device memory: 'cpu', 'cuda:<n>', 'hip:<n>' (and the emulated GPUs 'emu-cuda:<n>',
// 'emu-hip:<n>'), and the storage behind a GPU tensor. A
// DeviceStorage owns one allocation of a GPU addon; dispose() frees it at once, and the addon's own
// finaliser frees it when the storage is collected. GEMMs in flight hold the memory until they finish.
import {
  GPU_BACKENDS, type GpuBackendName, type NativeDeviceBuffer, type NativeGpuAddon, gpuAddonStatus, gpuNative, isEmulatedBackend,
} from './native.js';

export type GpuDevice = `${GpuBackendName}:${number}`;
export type Device = 'cpu' | GpuDevice;

export type Placement = { backend: 'cpu' } | { backend: GpuBackendName; index: number };

/** 'cpu' or a backend and device index; a TypeError naming `where` for anything else. */
export function parseDevice(where: string, device: unknown): Placement {
  if (device === 'cpu') return { backend: 'cpu' };
  if (typeof device === 'string') {
    const m = /^(cuda|hip|emu-cuda|emu-hip):(0|[1-9][0-9]{0,3})$/.exec(device);
    if (m) return { backend: m[1] as GpuBackendName, index: Number(m[2]) };
  }
  throw new TypeError(`${where}: unknown device ${JSON.stringify(device)} ` +
    "(expected 'cpu', 'cuda:<n>', 'hip:<n>', or an emulated GPU 'emu-cuda:<n>' or 'emu-hip:<n>')");
}

/**
 * The first GPU for automatic placement ('cuda:0', else 'hip:0'), or undefined without one. Never an
 * emulated GPU: those run only where they are asked for by name.
 */
export function firstGpuDevice(): GpuDevice | undefined {
  for (const name of GPU_BACKENDS) {
    if (!isEmulatedBackend(name) && gpuAddonStatus(name).devices > 0) return `${name}:0`;
  }
  return undefined;
}

/** GPU kernels index with 32-bit integers: M, N, K (and so the leading dimensions) and batch stay below 2^31. */
export const GPU_MAX_DIMENSION = 2 ** 31 - 1;

/**
 * A RangeError naming `where` and the operands when a GEMM is larger than the GPU kernels can index,
 * raised before any device memory is allocated for it.
 */
export function checkGpuProblem(where: string, aShape: readonly number[], bShape: readonly number[], m: number, n: number, k: number, batch: number): void {
  for (const [name, v] of [['M', m], ['N', n], ['K', k], ['batch', batch]] as const) {
    if (v >= GPU_MAX_DIMENSION) {
      throw new RangeError(`${where}: a is [${aShape.join(', ')}] and b is [${bShape.join(', ')}]: ${name} = ${v}, but GPU kernels take ${name} below 2^31 - 1`);
    }
  }
}

export class DeviceStorage {
  readonly device: GpuDevice;
  readonly backend: GpuBackendName;
  readonly index: number;
  readonly bytes: number;
  readonly native: NativeGpuAddon;
  #handle: NativeDeviceBuffer | undefined;

  private constructor(backend: GpuBackendName, index: number, bytes: number, native: NativeGpuAddon, handle: NativeDeviceBuffer) {
    this.backend = backend;
    this.index = index;
    this.bytes = bytes;
    this.device = `${backend}:${index}`;
    this.native = native;
    this.#handle = handle;
  }

  /**
   * `bytes` of memory on a device. Throws an Error when the backend is not available, a RangeError for a
   * device that does not exist, and an Error with code GEMMKIT_OUT_OF_MEMORY when the device is full
   * (after which it keeps working).
   */
  static allocate(where: string, backend: GpuBackendName, index: number, bytes: number): DeviceStorage {
    const native = gpuNative(backend, where);
    const devices = native.info().backends.find((b) => b.name === backend)?.devices.length ?? 0;
    if (index >= devices) {
      throw new RangeError(`${where}: ${backend}:${index} does not exist; this machine has ${devices} ${backend.toUpperCase()} device(s)`);
    }
    let handle: NativeDeviceBuffer;
    try {
      handle = native.alloc(index, bytes);
    } catch (e) {
      const err = e as Error & { code?: string };
      if (err.code === 'GEMMKIT_OUT_OF_MEMORY') {
        const oom = new Error(`${where}: out of memory on ${backend}:${index} for ${bytes} bytes (${err.message})`) as Error & { code?: string };
        oom.code = 'GEMMKIT_OUT_OF_MEMORY';
        throw oom;
      }
      throw err;
    }
    return new DeviceStorage(backend, index, bytes, native, handle);
  }

  get disposed(): boolean {
    return this.#handle === undefined;
  }

  /** The native handle; a TypeError naming `what` once the memory was disposed. */
  handle(what: string): NativeDeviceBuffer {
    if (this.#handle === undefined) throw new TypeError(`${what} is a disposed tensor: its ${this.device} memory was freed by dispose()`);
    return this.#handle;
  }

  /** Frees the memory now (idempotent). */
  dispose(): void {
    if (this.#handle === undefined) return;
    this.native.free(this.#handle);
    this.#handle = undefined;
  }

  upload(what: string, data: ArrayBufferView): void {
    this.native.upload(this.handle(what), data);
  }

  download(what: string, into: ArrayBufferView): void {
    this.native.download(this.handle(what), into);
  }
}
