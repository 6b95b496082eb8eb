// Every bad input gives a TypeError or RangeError that names the argument and the shapes, and never
// crashes the process or touches the caller's data.
import { describe, expect, it } from 'vitest';
import { Tensor, explain, info, matmul, matmulSync, prepack, tensor, zeros } from '../src/index.js';
import { cpuNative, type ProblemDesc } from '../src/native.js';

const a23 = () => tensor([1, 2, 3, 4, 5, 6], [2, 3]);
const b32 = () => tensor([1, 2, 3, 4, 5, 6], [3, 2]);

describe('tensor construction errors', () => {
  it('wrong data length', () => {
    expect(() => new Tensor('f32', [2, 2], new Float32Array(3))).toThrow(RangeError);
    expect(() => new Tensor('f32', [2, 2], new Float32Array(3))).toThrow(/shape \[2, 2\] needs 4 elements but data has 3/);
    expect(() => tensor([1, 2, 3], [2, 2])).toThrow(/needs 4 values but got 3/);
  });
  it('unknown dtype, or data of the wrong class for the dtype', () => {
    expect(() => new Tensor('f64' as never, [1], new Float32Array(1))).toThrow(TypeError);
    expect(() => tensor([1], [1], 'int8' as never)).toThrow(/unknown dtype "int8"/);
    expect(() => zeros([1], 'x' as never)).toThrow(TypeError);
    expect(() => new Tensor('bf16', [1], new Float32Array(1))).toThrow(/bf16 data must be a Uint16Array, got Float32Array/);
    expect(() => new Tensor('f32', [1], new Uint16Array(1))).toThrow(/f32 data must be a Float32Array/);
    expect(() => new Tensor('f32', [1], [1] as never)).toThrow(TypeError);
  });
  it('non-integer or negative dimensions', () => {
    expect(() => zeros([2.5, 2])).toThrow(RangeError);
    expect(() => zeros([-1, 2])).toThrow(/not a non-negative integer/);
    expect(() => zeros([NaN])).toThrow(RangeError);
    expect(() => new Tensor('f32', 'abc' as never, new Float32Array(1))).toThrow(TypeError);
  });
  it('sizes whose byte count overflows', () => {
    expect(() => zeros([2 ** 30, 2 ** 30])).toThrow(/byte count overflows/);
    expect(() => zeros([2 ** 26, 2 ** 26, 4])).toThrow(RangeError);
  });
  it('shared buffers', () => {
    const shared = new Float32Array(new SharedArrayBuffer(16));
    expect(() => new Tensor('f32', [4], shared)).toThrow(/SharedArrayBuffer/);
  });
  it('reshape to another size', () => {
    expect(() => a23().reshape([4, 2])).toThrow(/cannot view \[2, 3\] \(6 elements\) as \[4, 2\]/);
  });
});

// A blocked bf16 kernel, one this CPU runs when there is one.
function bf16BlockedKernel() {
  const bf16 = info().kernels.filter((k) => k.inputs === 'bf16' && k.family === 'blocked');
  return bf16.find((k) => k.available) ?? bf16[0];
}

describe('matmul argument errors', () => {
  it('K mismatch names both shapes', () => {
    expect(() => matmulSync(tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [3, 4]), zeros([5, 6]))).toThrow(
      new RangeError('matmulSync: a is [3, 4] but b is [5, 6] (K mismatch: 4 vs 5)'),
    );
    expect(() => matmulSync(a23(), b32(), { transB: true })).toThrow(/K mismatch: 3 vs 2; transA=false, transB=true/);
  });
  it('batch mismatch and bad ranks', () => {
    expect(() => matmulSync(zeros([2, 3, 4]), zeros([3, 4, 5]))).toThrow(/batch mismatch: 2 vs 3/);
    expect(() => matmulSync(zeros([4]), zeros([4, 2]))).toThrow(/a is \[4\]; expected \[M, K\] or \[B, M, K\]/);
    expect(() => matmulSync(zeros([2, 4]), zeros([1, 1, 4, 2]))).toThrow(/b is \[1, 1, 4, 2\]/);
  });
  it('non-tensor operands and bad options', () => {
    expect(() => matmulSync([[1]] as never, b32())).toThrow(/a must be a Tensor.*got Array/);
    expect(() => matmulSync(a23(), null as never)).toThrow(/b must be a Tensor.*got null/);
    expect(() => matmulSync(a23(), b32(), 5 as never)).toThrow(/options must be an object/);
    expect(() => matmulSync(a23(), b32(), { transb: true } as never)).toThrow(/unknown option 'transb'/);
    expect(() => matmulSync(a23(), b32(), { transA: 1 } as never)).toThrow(/transA must be a boolean, got number/);
    expect(() => matmulSync(a23(), b32(), { activation: 'tanh' } as never)).toThrow(/activation must be one of/);
    expect(() => matmulSync(a23(), b32(), { outDtype: 'f64' } as never)).toThrow(/outDtype must be/);
    expect(() => matmulSync(a23(), b32(), { config: '' })).toThrow(/config must be a non-empty/);
  });
  it('NaN or infinite alpha and beta', () => {
    expect(() => matmulSync(a23(), b32(), { alpha: NaN })).toThrow(new RangeError('matmulSync: alpha must be a finite number, got NaN'));
    expect(() => matmulSync(a23(), b32(), { alpha: Infinity })).toThrow(RangeError);
    expect(() => matmulSync(a23(), b32(), { beta: NaN, out: zeros([2, 2]) })).toThrow(/beta must be a finite number/);
    expect(() => matmulSync(a23(), b32(), { alpha: '2' } as never)).toThrow(TypeError);
  });
  it('alpha and beta beyond the f32 range are a RangeError, not an infinite result', () => {
    // The GEMM scales in f32: 1e300 would silently become Infinity there.
    expect(() => matmulSync(a23(), b32(), { alpha: 1e300 })).toThrow(new RangeError(
      'matmulSync: alpha = 1e+300 is beyond the f32 range (|alpha| <= 3.4028234663852886e+38); the GEMM scales in f32'));
    expect(() => matmulSync(a23(), b32(), { alpha: -3.5e38 })).toThrow(/alpha = -3.5e\+38 is beyond the f32 range/);
    expect(() => matmulSync(a23(), b32(), { beta: 1e39, out: zeros([2, 2]) })).toThrow(/beta = 1e\+39 is beyond the f32 range/);
    return expect(matmul(a23(), b32(), { alpha: -Number.MAX_VALUE })).rejects.toThrow(RangeError);
  });
  it('the largest f32 alpha is accepted', () => {
    const c = matmulSync(tensor([1], [1, 1]), tensor([1], [1, 1]), { alpha: 3.4028234663852886e38 });
    expect(c.data[0]).toBe(3.4028234663852886e38);
  });
  it('beta without out', () => {
    expect(() => matmulSync(a23(), b32(), { beta: 1 })).toThrow(/beta = 1 needs out/);
  });
  it('out of the wrong shape or dtype leaves out untouched', () => {
    const out = tensor([9, 9, 9], [1, 3]);
    expect(() => matmulSync(a23(), b32(), { out })).toThrow(/out is \[1, 3\] but the result of \[2, 3\] x \[3, 2\] is \[2, 2\]/);
    expect(Array.from(out.data)).toEqual([9, 9, 9]);
    expect(() => matmulSync(a23(), b32(), { out: zeros([2, 2]), outDtype: 'bf16' })).toThrow(/outDtype is 'bf16' but out is f32/);
  });
  it('out sharing memory with an input', () => {
    const buf = new Float32Array(8);
    const a = new Tensor('f32', [2, 2], buf.subarray(0, 4));
    const out = new Tensor('f32', [2, 2], buf.subarray(2, 6));
    expect(() => matmulSync(a, zeros([2, 2]), { out })).toThrow(/out shares memory with a/);
    const disjoint = new Tensor('f32', [2, 2], buf.subarray(4, 8));
    expect(() => matmulSync(a, zeros([2, 2]), { out: disjoint })).not.toThrow();
  });
  it('bias of the wrong shape', () => {
    expect(() => matmulSync(a23(), b32(), { bias: zeros([3]) })).toThrow(/bias is \[3\] but the result has N = 2 columns/);
    expect(() => matmulSync(a23(), b32(), { bias: zeros([1, 2]) })).toThrow(RangeError);
  });
  it('detached input buffers', () => {
    const a = a23();
    const buffer = a.data.buffer as ArrayBuffer;
    structuredClone(buffer, { transfer: [buffer] });
    expect(() => matmulSync(a, b32())).toThrow(/a: data is backed by a detached ArrayBuffer/);
  });
  it('a result too large for a typed array', () => {
    expect(() => matmulSync(zeros([2 ** 17, 0]), zeros([0, 2 ** 17]))).toThrow(/the result \[131072, 131072\] .* more than a host tensor can hold/);
  });
  it('unknown backends, and GPU backends that are not built', () => {
    expect(() => matmulSync(a23(), b32(), { backend: 'tpu' } as never)).toThrow(/backend must be one of 'auto', 'cpu', 'cuda', 'hip'/);
    expect(() => matmulSync(a23(), b32(), { backend: 'cuda' })).toThrow(/backend 'cuda' is not available.*npm run build:cuda/);
    expect(() => matmulSync(a23(), b32(), { backend: 'hip' })).toThrow(/backend 'hip' is not available/);
  });
  it('malformed config names', () => {
    expect(() => matmulSync(a23(), b32(), { config: 'fast' })).toThrow(/'fast' is not a cpu config name/);
    expect(() => matmulSync(a23(), b32(), { config: 'cpu.nosuch.f32.1x1.mc1.kc1.nc1.t1' })).toThrow(/unknown micro-kernel 'nosuch.f32.1x1'/);
    expect(() => matmulSync(a23(), b32(), { config: 'cpu.scalar.f32.4x8.mc5.kc1.nc8.t1' })).toThrow(/mc must be a multiple of MR=4/);
    expect(() => matmulSync(a23(), b32(), { config: 'cpu.scalar.f32.4x8.mc4.kc0.nc8.t1' })).toThrow(RangeError);
    expect(() => matmulSync(a23(), b32(), { config: 'cpu.scalar.f32.4x8.mc4.kc8.nc8.t-1' })).toThrow(RangeError);
  });
  it('a config that cannot run the call is a RangeError naming it, as explain says', async () => {
    // A bf16 kernel on f32 operands; on a CPU without one (AVX2 only) the config fails for the CPU instead.
    const bf16Kernel = bf16BlockedKernel();
    const config = `cpu.${bf16Kernel.id}.mc${bf16Kernel.mr}.kc64.nc${bf16Kernel.nr}.t1`;
    const because = bf16Kernel.available ? 'needs bf16 A and B' : 'this CPU has no';
    const why = new RegExp(`config "${config.replace(/\./g, '\\.')}" cannot run this call: .*${because}`);
    expect(() => matmulSync(a23(), b32(), { config })).toThrow(RangeError);
    expect(() => matmulSync(a23(), b32(), { config })).toThrow(why);
    await expect(matmul(a23(), b32(), { config })).rejects.toThrow(why);
    expect(() => explain(a23(), b32(), { config })).toThrow(why);
    // A config reading the weight as stored, on a PackedWeight that kept none.
    const gemv = `cpu.${info().kernels.find((k) => k.family === 'gemv' && k.inputs === 'any' && k.available)!.id}.kc256.ks1.t1`;
    const w = prepack(b32(), { keepSource: false });
    expect(() => matmulSync(tensor([1, 2, 3], [1, 3]), w, { config: gemv })).toThrow(
      new RangeError(`matmulSync: config "${gemv}" reads the weight as stored, but b is a PackedWeight made with keepSource: false`));
    expect(() => explain(tensor([1, 2, 3], [1, 3]), w, { config: gemv })).toThrow(RangeError);
  });
  it('prepack: a config that cannot pack the weight is a RangeError naming it', () => {
    const gemv = `cpu.${info().kernels.find((k) => k.family === 'gemv')!.id}.kc256.ks1.t1`;
    expect(() => prepack(b32(), { config: gemv })).toThrow(new RangeError(
      `prepack: config "${gemv}" cannot pack this weight: prepack needs a blocked-GEMM config, not the GEMV config ${gemv}`));
    const bf16Kernel = bf16BlockedKernel();
    expect(() => prepack(b32(), { config: `cpu.${bf16Kernel.id}.mc${bf16Kernel.mr}.kc64.nc${bf16Kernel.nr}.t1` })).toThrow(
      bf16Kernel.available ? /prepack: config ".*" cannot pack this weight: kernel .* packs bf16 weights only, not f32/
        : /prepack: config ".*" cannot pack this weight: .*this CPU has no/);
  });
  it('a disposed PackedWeight is a TypeError naming b, as a disposed tensor is', async () => {
    const w = prepack(b32());
    w.dispose();
    expect(() => matmulSync(a23(), w)).toThrow(TypeError);
    expect(() => explain(a23(), w)).toThrow(/explain: b is a PackedWeight \(\[3, 2\] f32, .*\) that was disposed/);
    await expect(matmul(a23(), w)).rejects.toThrow(TypeError);
  });
  it('async matmul rejects instead of throwing', async () => {
    const p = matmul(a23(), a23());
    expect(p).toBeInstanceOf(Promise);
    await expect(p).rejects.toThrow(RangeError);
    await expect(matmul(a23(), b32(), { config: 'nope' })).rejects.toThrow(/'nope' is not a cpu config name/);
  });
});

describe('the addon re-checks what TypeScript sent', () => {
  const base = (): ProblemDesc => ({
    backend: 'cpu', m: 2, n: 2, k: 3, batch: 1, transA: false, transB: false, lda: 3, ldb: 2, ldc: 2,
    strideA: 0, strideB: 0, strideC: 4, dtypeA: 'f32', dtypeB: 'f32', dtypeC: 'f32', alpha: 1, beta: 0,
    activation: 'none', a: new Float32Array(6), b: new Float32Array(6), c: new Float32Array(4),
  });
  it('rejects buffers shorter than the problem reads', () => {
    expect(() => cpuNative().matmulSync({ ...base(), a: new Float32Array(5) })).toThrow(/a has 5 elements but the problem reads 6/);
    expect(() => cpuNative().matmulSync({ ...base(), c: new Float32Array(3) })).toThrow(RangeError);
  });
  it('rejects wrong array types, dtypes, strides and backends', () => {
    expect(() => cpuNative().matmulSync({ ...base(), a: new Uint16Array(6) })).toThrow(/a must be a Float32Array for f32/);
    expect(() => cpuNative().matmulSync({ ...base(), dtypeA: 'f8' as never })).toThrow(TypeError);
    expect(() => cpuNative().matmulSync({ ...base(), lda: 2 })).toThrow(/leading dimension/);
    expect(() => cpuNative().matmulSync({ ...base(), m: -1 })).toThrow(RangeError);
    expect(() => cpuNative().matmulSync({ ...base(), m: 1.5 })).toThrow(RangeError);
    expect(() => cpuNative().matmulSync({ ...base(), batch: 2, strideC: 1 })).toThrow(/overlaps its batches/);
    expect(() => cpuNative().matmulSync({ ...base(), backend: 'nope' })).toThrow(/backend 'nope' is not loaded/);
    expect(() => cpuNative().matmulSync({ ...base(), m: 2 ** 40, n: 2 ** 40, ldb: 2 ** 40, ldc: 2 ** 40 })).toThrow(RangeError);
    expect(() => cpuNative().matmulSync(null as never)).toThrow(TypeError);
  });
  it('rejects alpha and beta that are infinite or beyond the f32 range', () => {
    expect(() => cpuNative().matmulSync({ ...base(), alpha: 1e300 })).toThrow(/alpha must be a finite number within the f32 range/);
    expect(() => cpuNative().matmulSync({ ...base(), beta: -Infinity })).toThrow(RangeError);
    expect(() => cpuNative().matmulSync({ ...base(), alpha: NaN })).toThrow(RangeError);
  });
  it('an empty result indexes nothing, so its other dimensions may be huge; its operands still must fit', () => {
    // [2, 2^52, 0] x [0, 0]: the old check multiplied the batch by rows A does not have.
    const empty = { ...base(), m: 2 ** 52, n: 0, k: 0, batch: 2, lda: 1, ldb: 1, ldc: 1, strideA: 0, strideB: 0, strideC: 0,
      a: new Float32Array(0), b: new Float32Array(0), c: new Float32Array(0) };
    expect(() => cpuNative().matmulSync(empty)).not.toThrow();
    // A non-empty A of an empty problem must still be countable.
    expect(() => cpuNative().matmulSync({ ...empty, m: 2 ** 52, k: 2 ** 52, lda: 2 ** 52, n: 0, batch: 1 })).toThrow(/too large to index/);
  });
});
