// What a model may use, checked before it is used: the device it runs on, its weights' lifetime (dispose),
// memory (the host's or the device's), and time on the event loop.
import { freemem, totalmem } from 'node:os';
import { type Device, type Placement, firstGpuDevice, parseDevice } from '../device.js';
import { gpuNative } from '../native.js';

/**
 * Whether a model's weights are still there. The model and its KV caches share this object (a cache holds
 * it, not the model, so an unused cache does not keep weights alive). dispose() frees the weights at once,
 * or, when calls are in flight, as soon as the last one ends; no new call may start after it.
 */
export class ModelLifetime {
  #disposed = false;
  #active = 0;
  #release: (() => void) | undefined;
  // What was made for the model and is useless without it (its KV caches), freed with its weights.
  #dependents = new Set<WeakRef<{ dispose(): void }>>();

  get disposed(): boolean {
    return this.#disposed;
  }

  /** A TypeError naming `where` when the model was disposed. */
  check(where: string): void {
    if (this.#disposed) throw new TypeError(`${where}: the model was disposed (dispose() freed its weights; load it again to use it)`);
  }

  /** A call that uses the weights begins (check, then count it); pair with exit(). */
  enter(where: string): void {
    this.check(where);
    this.#active++;
  }

  exit(): void {
    this.#active--;
    if (this.#active === 0) this.#releaseNow();
  }

  /** Marks the model disposed; `release` frees its weights now, or when the last call in flight ends. */
  dispose(release: () => void): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#release = release;
    if (this.#active === 0) this.#releaseNow();
  }

  /** Frees `dependent` (a KV cache) with the weights; it is held weakly, so a dropped one is collected. */
  track(dependent: { dispose(): void }): void {
    // Forget collected ones now and then, so a model that makes many caches keeps a small set.
    if (this.#dependents.size >= 64) for (const r of this.#dependents) if (r.deref() === undefined) this.#dependents.delete(r);
    this.#dependents.add(new WeakRef(dependent));
  }

  #releaseNow(): void {
    const release = this.#release;
    this.#release = undefined;
    if (!release) return;
    for (const r of this.#dependents) r.deref()?.dispose();
    this.#dependents.clear();
    release();
  }
}

// --- memory ----------------------------------------------------------------------------------------------

/** Most elements of one typed array in Node (one KV-cache layer, one activation, the logits). */
export const MAX_ARRAY_ELEMENTS = 2 ** 32;

/** Where the memory figure comes from; tests replace `availableBytes` to check the refusals. */
export const memoryPolicy = {
  /**
   * Bytes this process may still allocate: the memory the system has available now (MemAvailable on
   * Linux), and no more than a cgroup limit leaves beside what the process already holds.
   */
  availableBytes(): number {
    let free = freemem();
    const limit = process.constrainedMemory?.();
    if (limit !== undefined && limit > 0 && limit < totalmem()) free = Math.min(free, limit - process.memoryUsage.rss());
    return Math.max(0, free);
  },
};

export function formatBytes(bytes: number): string {
  if (bytes < 2 ** 20) return `${bytes} bytes`;
  if (bytes < 2 ** 30) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  if (bytes < 2 ** 40) return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  return `${(bytes / 2 ** 40).toFixed(1)} TiB`;
}

/**
 * A RangeError before allocating `bytes` for `what` when that is more than the memory available, or when
 * one of its arrays (`largestArray` elements) is more than a typed array holds.
 */
export function checkMemory(where: string, what: string, bytes: number, largestArray: number): void {
  if (!(largestArray <= MAX_ARRAY_ELEMENTS)) {
    throw new RangeError(`${where}: ${what} needs an array of ${largestArray} elements, more than the ${MAX_ARRAY_ELEMENTS} one typed array holds`);
  }
  const available = memoryPolicy.availableBytes();
  if (!(bytes <= available)) {
    throw new RangeError(`${where}: ${what} needs ${formatBytes(bytes)}, more than the ${formatBytes(available)} of memory available`);
  }
}

// --- devices -------------------------------------------------------------------------------------------

/**
 * The device a model is loaded on: 'cpu' (default), 'cuda:<n>' or 'hip:<n>', checked to exist here (an
 * Error naming it and why not when its backend is not available, a RangeError for an index it does not
 * have); 'auto' is the first real GPU that is there (CUDA, then HIP), else the CPU.
 */
export function resolveDevice(where: string, device: unknown): Device {
  if (device === undefined || device === 'cpu') return 'cpu';
  if (device === 'auto') return firstGpuDevice() ?? 'cpu'; // never an emulated device: those are asked for by name
  if (typeof device !== 'string') throw new TypeError(`${where}: device must be 'cpu', 'cuda:<n>', 'hip:<n>' or 'auto', got ${typeof device}`);
  const place = parseDevice(where, device) as Placement & { backend: 'cuda' | 'hip' };
  const native = gpuNative(place.backend, `${where}: device ${device}`); // an Error saying why it is not available
  const count = native.info().backends.find((b) => b.name === place.backend)?.devices.length ?? 0;
  if (place.index >= count) {
    throw new RangeError(`${where}: device ${device} does not exist; this machine has ${count} ${place.backend.toUpperCase()} device(s)${count > 0 ? ` (${place.backend}:0 to ${place.backend}:${count - 1})` : ''}`);
  }
  if (typeof native.opSync !== 'function' || typeof native.opAsync !== 'function') {
    throw new Error(`${where}: device ${device}: the ${place.backend} addon has no ops beyond GEMM, which models need; rebuild it with \`npm run build:${place.backend}\``);
  }
  return device as Device;
}

/** The memory of a GPU device in bytes (its total; what is free is known only by trying). */
export function deviceMemoryBytes(device: Device): number {
  const place = parseDevice('deviceMemoryBytes', device);
  if (place.backend === 'cpu') return memoryPolicy.availableBytes();
  const info = gpuNative(place.backend, 'deviceMemoryBytes').info();
  return info.backends.find((b) => b.name === place.backend)?.devices[place.index]?.memoryBytes ?? 0;
}

/** An Error with code GEMMKIT_OUT_OF_MEMORY, as the device layer throws it, saying what did not fit. */
export function isOutOfMemory(e: unknown): e is Error & { code: string } {
  return (e as { code?: unknown } | undefined)?.code === 'GEMMKIT_OUT_OF_MEMORY';
}

/** An out-of-memory error `e` said again for `where` and `what`, keeping its code (GEMMKIT_OUT_OF_MEMORY). */
export function outOfMemory(where: string, what: string, e: Error & { code: string }): Error {
  const out = new Error(`${where}: out of memory for ${what} (${e.message})`) as Error & { code: string };
  out.code = e.code;
  return out;
}

// --- the event loop --------------------------------------------------------------------------------------

/**
 * How long model code may run without giving the event loop a turn. Decode steps run their small GEMMs
 * synchronously (see gemmPolicy in layers.ts), so without these turns a whole generate() would hold the
 * loop; with them, timers and I/O run between blocks and between tokens.
 */
export const schedulingPolicy = { sliceMs: 4 };

// The last time the event loop had a turn, as seen by a setImmediate callback that is kept pending while
// model code runs: when the model's own GEMMs went async the loop turned and the callback says so.
let lastTurn = performance.now();
let armed = false;

function arm(): void {
  if (armed) return;
  armed = true;
  setImmediate(() => {
    armed = false;
    lastTurn = performance.now();
  });
}

/**
 * Called by model code between steps (Llama blocks, decode steps, MLP layers): resolves at once, or after
 * a turn of the event loop when the loop has not had one for schedulingPolicy.sliceMs.
 */
export async function yieldIfBusy(): Promise<void> {
  arm();
  if (performance.now() - lastTurn < schedulingPolicy.sliceMs) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
  lastTurn = performance.now();
}
