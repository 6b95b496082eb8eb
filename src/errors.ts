// Argument checks shared by the public API. Every message names the function, the argument and what
// was wrong, e.g. "matmul: a is [3, 4] but b is [5, 6] (K mismatch)".

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Number of elements of a shape, or a RangeError when a dimension is bad or the count is unsafe. */
export function shapeSize(where: string, shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new RangeError(`${where}: shape ${formatShape(shape)} has a dimension that is not a non-negative integer`);
    }
    n *= d;
  }
  if (!Number.isSafeInteger(n * 4)) {
    throw new RangeError(`${where}: shape ${formatShape(shape)} has ${n} elements; its byte count overflows`);
  }
  return n;
}

/** A typed array may not be detached or live on shared memory (another thread could change it mid-GEMM). */
export function checkBuffer(where: string, data: ArrayBufferView, expectedLength: number): void {
  if (typeof SharedArrayBuffer !== 'undefined' && data.buffer instanceof SharedArrayBuffer) {
    throw new TypeError(`${where} is backed by a SharedArrayBuffer; gemmkit needs memory no other thread can change`);
  }
  if (data.buffer.byteLength === 0 && expectedLength > 0) {
    throw new TypeError(`${where} is backed by a detached ArrayBuffer`);
  }
}
