// Argument checks shared by the public API. Every message names the function, the argument and what
// was wrong, e.g. "matmul: a is [3, 4] but b is [5, 6] (K mismatch)".

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** A short description of a value for messages: its class name, 'null' or its typeof. */
export function describeValue(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'Array';
  if (typeof x === 'object') return (x as object).constructor?.name ?? 'object';
  return typeof x;
}

/** The largest element size of any dtype (f32): byte counts are checked for it. */
const MAX_ELEMENT_BYTES = 4;

/**
 * Number of elements of a shape: a TypeError when `shape` is not an array, a RangeError when a dimension
 * is not a non-negative safe integer or the element or byte count is not a safe integer. Checked before
 * anything is allocated, and O(rank): an empty shape with huge dimensions costs nothing.
 */
export function shapeSize(where: string, shape: unknown, name = 'shape'): number {
  if (!Array.isArray(shape)) {
    throw new TypeError(`${where}: ${name} must be an array of non-negative integers, got ${describeValue(shape)}`);
  }
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new RangeError(`${where}: ${name} ${formatShape(shape)} has a dimension that is not a non-negative integer (dimension ${i}: ${typeof d === 'string' ? JSON.stringify(d) : String(d)})`);
    }
    if (!Number.isSafeInteger(d)) {
      throw new RangeError(`${where}: ${name} ${formatShape(shape)} has dimension ${i} = ${d}, above 2^53 - 1 (not a safe integer)`);
    }
    n *= d;
  }
  if (!Number.isSafeInteger(n * MAX_ELEMENT_BYTES)) {
    throw new RangeError(`${where}: ${name} ${formatShape(shape)} has ${n} elements; its byte count overflows`);
  }
  return n;
}

/**
 * An options argument: undefined (no options) or a plain object whose keys are all in `known`; a
 * TypeError naming `where` otherwise (arrays, functions, class instances and primitives included).
 */
export function checkOptions(where: string, opts: unknown, known: ReadonlySet<string>): Record<string, unknown> {
  if (opts === undefined) return {};
  const proto = opts !== null && typeof opts === 'object' ? Object.getPrototypeOf(opts) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(`${where}: options must be an object of named options, got ${describeValue(opts)}`);
  }
  const o = opts as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!known.has(key)) throw new TypeError(`${where}: unknown option '${key}' (known: ${[...known].join(', ')})`);
  }
  return o;
}

/**
 * Whether an ArrayBuffer was detached (transferred, or its memory released by Tensor.dispose()). Node 20
 * has no `detached` getter; there a non-resizable buffer of length 0 is taken as detached.
 */
export function isDetached(buffer: ArrayBufferLike): boolean {
  const b = buffer as ArrayBufferLike & { detached?: boolean; resizable?: boolean };
  if (typeof b.detached === 'boolean') return b.detached;
  return b.byteLength === 0 && b.resizable !== true && !(typeof SharedArrayBuffer !== 'undefined' && b instanceof SharedArrayBuffer);
}

/** A typed array may not be detached or live on shared memory (another thread could change it mid-GEMM). */
export function checkBuffer(where: string, data: ArrayBufferView, expectedLength: number): void {
  if (typeof SharedArrayBuffer !== 'undefined' && data.buffer instanceof SharedArrayBuffer) {
    throw new TypeError(`${where} is backed by a SharedArrayBuffer; gemmkit needs memory no other thread can change`);
  }
  if (expectedLength > 0 && isDetached(data.buffer)) {
    throw new TypeError(`${where} is backed by a detached ArrayBuffer (transferred, or released by dispose())`);
  }
}
