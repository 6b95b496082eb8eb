// Shapes and arguments: absurd sizes are refused up front, before anything is allocated, with an error
// naming the argument; empty problems cost O(1) however large their other dimensions are; every
// malformed argument is a TypeError or RangeError, never a raw JS error or a silent accept.
import { describe, expect, it } from 'vitest';
import { DTYPES, Tensor, f32ToBf16, f32ToF16, matmul, matmulSync, prepack, tensor, toBf16Bits, toF16Bits, zeros } from '../src/index.js';
import { MAX_HOST_TENSOR_BYTES } from '../src/tensor.js';
import { describeRun, runScript } from './script.js';

const a23 = () => tensor([1, 2, 3, 4, 5, 6], [2, 3]);
const b32 = () => tensor([1, 2, 3, 4, 5, 6], [3, 2]);

function detached<T extends ArrayBufferView>(x: T): T {
  structuredClone(x.buffer, { transfer: [x.buffer as ArrayBuffer] });
  return x;
}

describe('sizes are checked before anything is allocated', () => {
  it('a shape that is not an array is a TypeError naming it', () => {
    expect(() => zeros(5 as never)).toThrow(new TypeError('zeros: shape must be an array of non-negative integers, got number'));
    expect(() => zeros('abc' as never)).toThrow(new TypeError('zeros: shape must be an array of non-negative integers, got string'));
    expect(() => zeros(null as never)).toThrow(TypeError);
    expect(() => tensor([1], { length: 1, 0: 1 } as never)).toThrow(/tensor: shape must be an array/);
    expect(() => new Tensor('f32', new Set([1]) as never, new Float32Array(1))).toThrow(/Tensor: shape must be an array/);
  });

  it('dimensions that are not safe integers are refused even when another is 0', () => {
    expect(() => zeros([1e300, 0])).toThrow(/zeros: shape \[1e\+300, 0\] has dimension 0 = 1e\+300, above 2\^53 - 1/);
    expect(() => zeros([2 ** 53, 0])).toThrow(/zeros: shape \[9007199254740992, 0\] has dimension 0 = 9007199254740992, above 2\^53 - 1/);
    expect(() => zeros([0, Infinity])).toThrow(/not a non-negative integer \(dimension 1: Infinity\)/);
    expect(() => zeros(['3'] as never)).toThrow(/not a non-negative integer \(dimension 0: "3"\)/);
    expect(() => zeros([2 ** 52, 0]).size).not.toThrow();
    expect(zeros([2 ** 52, 0]).size).toBe(0);
  });

  it('sizes over the host tensor limit are a RangeError naming the shape, never "Invalid typed array length"', () => {
    for (const dtype of DTYPES) {
      expect(() => zeros([2 ** 33], dtype)).toThrow(RangeError);
      expect(() => zeros([2 ** 33], dtype)).toThrow(/zeros: shape \[8589934592\] of 8589934592 \w+ elements needs \d+\.\d GiB, more than a host tensor can hold/);
    }
    expect(() => tensor({ length: 2 ** 31 } as never, [2 ** 31])).toThrow(/more than a host tensor can hold/);
    expect(() => matmulSync(zeros([2 ** 16, 0]), zeros([0, 2 ** 16]))).toThrow(/matmulSync: the result \[65536, 65536\] .* more than a host tensor can hold/);
    // A result whose element count is not even a safe integer names the result, not a 'shape' the caller never gave.
    expect(() => matmulSync(zeros([2 ** 52, 0]), zeros([0, 2 ** 52]))).toThrow(/^matmulSync: the result \[4503599627370496, 4503599627370496\] has .* elements; its byte count overflows$/);
    expect(MAX_HOST_TENSOR_BYTES).toBeGreaterThanOrEqual(2 ** 32);
  });
});

describe('empty problems cost O(1), whatever their other dimensions', () => {
  // In a child process with a time limit: on an engine that walks the empty dimension, these run for hours.
  it('prepack, matmul, the reference and GEMV paths on empty operands with huge K, N or batch', async () => {
    const r = await runScript(`
      const t0 = performance.now();
      const w = g.prepack(g.zeros([0, 2 ** 52]), { transB: true });
      const c1 = g.matmulSync(g.zeros([0, 2 ** 52]), w);
      const c2 = await g.matmul(g.zeros([0, 2 ** 52]), w);
      const c3 = g.matmulSync(g.zeros([0, 2 ** 52]), g.zeros([2 ** 52, 0]));
      const c4 = await g.matmul(g.zeros([2 ** 40, 0, 5]), g.zeros([2 ** 40, 5, 0]));
      const w2 = g.prepack(g.zeros([2 ** 45, 0]), { transB: true });
      const c5 = g.matmulSync(g.zeros([0, 0]), w2);
      const c6 = g.matmulSync(g.zeros([3, 0]), g.zeros([0, 3]), { config: 'cpu.gemv.scalar.kc256.ks1.t1' });
      // A batch whose items are empty, a batch of 0 items of a huge size, an empty weight of N = 2^53 - 1.
      const c7 = g.matmulSync(g.zeros([2, 2 ** 52, 0]), g.zeros([0, 0]));
      const c8 = await g.matmul(g.zeros([0, 3, 2 ** 52]), g.zeros([2 ** 52, 0]));
      const c9 = g.matmulSync(g.zeros([0, 0]), g.prepack(g.zeros([0, 2 ** 53 - 1])));
      const desc = { backend: 'cpu', m: 0, n: 0, k: 5, batch: 2 ** 40, transA: false, transB: false, lda: 5, ldb: 1, ldc: 1,
        strideA: 0, strideB: 0, strideC: 0, dtypeA: 'f32', dtypeB: 'f32', dtypeC: 'f32', alpha: 1, beta: 0, activation: 'none',
        a: new Float32Array(0), b: new Float32Array(0), c: new Float32Array(0) };
      await native.referenceAsync(desc, new Float64Array(0));
      await native.referenceAsync({ ...desc, m: 1, n: 1, k: 0, batch: 1, lda: 1, c: new Float32Array(1) }, new Float64Array(1));
      report({ ms: performance.now() - t0, bytes: w.bytes + w2.bytes,
        shapes: [c1, c2, c3, c4, c5, c7, c8, c9].map((c) => c.shape), c6: [...c6.toFloat32()] });`, { timeoutMs: 60_000 });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.result!.ms).toBeLessThan(10_000);
    expect(r.result!.bytes).toBe(0);
    expect(r.result!.shapes).toEqual([[0, 0], [0, 0], [0, 0], [2 ** 40, 0, 0], [0, 2 ** 45], [2, 2 ** 52, 0], [0, 3, 0], [0, 2 ** 53 - 1]]);
    expect(r.result!.c6).toEqual(new Array(9).fill(0));
  });

  it('a GPU problem over the kernels\' 32-bit limits is a RangeError before any device memory', async () => {
    const { EmulatedGpu } = await import('./gpu_emulator.js');
    const { setGpuAddonForTesting } = await import('../src/native.js');
    const gpu = new EmulatedGpu('cuda');
    setGpuAddonForTesting('cuda', gpu);
    try {
      const a = zeros([0, 2 ** 31]).to('cuda:0'), b = zeros([2 ** 31, 0]).to('cuda:0');
      const used = gpu.used;
      expect(() => matmulSync(a, b)).toThrow(/matmulSync: a is \[0, 2147483648\] and b is \[2147483648, 0\]: K = 2147483648, but GPU kernels take K below 2\^31 - 1/);
      expect(() => matmulSync(zeros([0, 2 ** 31]), zeros([2 ** 31, 0]), { backend: 'cuda' })).toThrow(/K = 2147483648/);
      expect(gpu.used).toBe(used);
    } finally {
      setGpuAddonForTesting('cuda', undefined);
    }
  });
});

describe('arguments are refused with an error naming them', () => {
  it('options that are not a plain object', () => {
    for (const bad of [[], [1], new Map(), () => ({}), 'transB', 5, null, true, new Date(), Object.create({ transB: true })]) {
      expect(() => matmulSync(a23(), b32(), bad as never), String(bad)).toThrow(/matmulSync: options must be an object of named options, got/);
      expect(() => prepack(zeros([3, 2]), bad as never), String(bad)).toThrow(/prepack: options must be an object of named options/);
    }
    expect(() => matmulSync(a23(), b32(), [] as never)).toThrow(new TypeError('matmulSync: options must be an object of named options, got Array'));
    expect([...matmulSync(a23(), b32(), Object.create(null)).toFloat32()]).toEqual([22, 28, 49, 64]);
  });

  it('matmul reports a bad options argument as a rejected promise', async () => {
    await expect(matmul(a23(), b32(), [] as never)).rejects.toThrow(/matmul: options must be an object of named options, got Array/);
  });

  it('values that are not numbers are a TypeError in every dtype, naming the element', () => {
    for (const dtype of DTYPES) {
      expect(() => tensor(['x', undefined] as never, [2], dtype)).toThrow(new TypeError('tensor: values[0] is string, not a number'));
      expect(() => tensor([1, undefined] as never, [2], dtype)).toThrow(new TypeError('tensor: values[1] is undefined, not a number'));
      expect(() => tensor([1, null] as never, [2], dtype)).toThrow(/values\[1\] is null/);
      expect(() => tensor([1n] as never, [1], dtype)).toThrow(/values\[0\] is bigint/);
      expect(() => tensor(new BigInt64Array(1) as never, [1], dtype)).toThrow(/not a BigInt64Array/);
      expect(() => tensor('ab' as never, [2], dtype)).toThrow(/values must be an array of numbers or a typed array, got string/);
      expect([...tensor([NaN, 1], [2], dtype).toFloat32()][0]).toBeNaN();
      expect([...tensor(new Float64Array([1.5, -2]), [2], dtype).toFloat32()]).toEqual([1.5, -2]);
    }
    expect(() => f32ToBf16(['1'] as never)).toThrow(/f32ToBf16: values\[0\] is string/);
    expect(() => f32ToF16([{}] as never)).toThrow(/f32ToF16: values\[0\] is object/);
    expect(() => toBf16Bits('x' as never)).toThrow(new TypeError('toBf16Bits: expected a number, got string'));
    expect(() => toF16Bits(undefined as never)).toThrow(/toF16Bits: expected a number, got undefined/);
  });

  it('detached data: prepack, toDType, toFloat32, reshape views and matmul name it', () => {
    const f32 = () => new Tensor('f32', [2, 2], detached(new Float32Array(4)));
    const bf16 = () => new Tensor('bf16', [2, 2], new Uint16Array(4));
    expect(() => f32()).toThrow(/Tensor: data is backed by a detached ArrayBuffer/);
    const t = bf16();
    detached(t.data);
    expect(t.disposed).toBe(true);
    expect(() => t.toFloat32()).toThrow(new TypeError('Tensor.toFloat32: the tensor: data is backed by a detached ArrayBuffer (transferred, or released by dispose())'));
    expect(() => t.toDType('f32')).toThrow(/Tensor.toDType: the tensor: data is backed by a detached ArrayBuffer/);
    expect(() => t.toDType('bf16')).toThrow(/Tensor.toDType: the tensor: data is backed by a detached ArrayBuffer/);
    expect(() => prepack(t, { transB: true })).toThrow(/prepack: weight: data is backed by a detached ArrayBuffer/);
    const u = tensor([1, 2, 3, 4], [2, 2]);
    detached(u.data);
    expect(() => u.toFloat32()).toThrow(/Tensor.toFloat32: the tensor: data is backed by a detached ArrayBuffer/);
    expect(() => matmulSync(u, b32().reshape([3, 2]).reshape([3, 2]), {})).toThrow(/matmulSync: a: data is backed by a detached ArrayBuffer/);
    expect(() => t.toDType('f64' as never)).toThrow(/Tensor.toDType: unknown dtype "f64"/);
  });

  it('PackedWeight.bytes is 0 once disposed, and the weight says it was disposed', () => {
    const pw = prepack(zeros([64, 64]), { transB: true });
    expect(pw.bytes).toBeGreaterThan(0);
    pw.dispose();
    expect(pw.bytes).toBe(0);
    expect(pw.disposed).toBe(true);
    expect(() => matmulSync(zeros([1, 64]), pw)).toThrow(/matmulSync: b is a PackedWeight \(\[64, 64\] f32, .*\) that was disposed/);
  });
});
