// Property-based fuzz of the public GEMM API, run in a child process by api_fuzz.test.ts (so that a crash
// or a hang is an observed failure, not the end of the run).
//
//   node --import tsx test/api_fuzz_child.ts <seed> <runs>
//
// fast-check generates calls of tensor, zeros, matmul, matmulSync, explain and prepack (then a call on the
// PackedWeight) from the seed: shapes with 0, 1, odd and huge dimensions, the three dtypes and garbage
// ones, every option right and wrong, operands in gemmkit's memory, the caller's, resizable buffers
// (shrunk, grown), detached, disposed, SharedArrayBuffer-backed, and async calls whose operands are
// transferred, shrunk or disposed while they run. Each case is built valid and then broken by up to two
// mutations, each of which knows which argument it breaks and whether the call can still succeed. A case
// passes when the call
//   - succeeds, only if no mutation makes it invalid, with a result equal to the float64 reference within
//     the output dtype's tolerance (explain: the config it names runs the call and gives that result), or
//   - throws a TypeError or RangeError whose message names a broken argument (never when nothing is
//     broken), within CASE_MS.
// Before each case a line 'case <n>: <spec>' goes to stderr (synchronous on a pipe), so the parent can
// name the case that crashed or hung. Progress lines {"done":n} and, last, {"summary":...} go to stdout.
import fc from 'fast-check';
import {
  type DType, PackedWeight, Tensor, explain, fromBf16Bits, fromF16Bits, info, matmul, matmulSync, prepack, tensor, toBf16Bits, toF16Bits, zeros,
} from '../src/index.js';
import { expectMatches, referenceMatmul } from './helpers.js';

const CASE_MS = 10_000;
const [seedText, runsText] = process.argv.slice(2);
const seed = Number(seedText);
const runs = Number(runsText);
if (!Number.isInteger(seed) || !Number.isInteger(runs)) {
  console.error('usage: api_fuzz_child.ts <seed> <runs>');
  process.exit(2);
}

// --- arbitraries ---------------------------------------------------------------------------------------

type Mem = 'fresh' | 'wrapped' | 'rabFixed' | 'rabTracking';
type OperandArg = 'a' | 'b' | 'bias' | 'out';
type Fn = 'matmul' | 'matmulSync' | 'explain';

const DTYPES: DType[] = ['f32', 'f16', 'bf16'];
const dtypeArb = fc.constantFrom<DType>(...DTYPES);
const memArb = fc.constantFrom<Mem>('fresh', 'fresh', 'wrapped', 'rabFixed', 'rabTracking');
// Dimensions that compute (small: the reference runs in JS), biased to 0, 1 and odd sizes.
const dimArb = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(0, 1, 2, 3, 5, 7, 8) }, { weight: 2, arbitrary: fc.integer({ min: 0, max: 17 }) });
// Dimensions no host tensor holds unless another dimension is 0 (2^31 + 1 f16 elements are over 4 GiB).
const HUGE = [2 ** 31 + 1, 2 ** 32, 2 ** 33, 2 ** 40, 2 ** 52, 2 ** 53 - 1];
const hugeArb = fc.constantFrom(...HUGE);
// Shape entries that are not dimensions.
const badDimArb = fc.constantFrom<unknown>(-1, -0.5, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 1e300, '3', null, true, undefined, 3n, [2], {});
const badDTypeArb = fc.constantFrom<unknown>('f64', 'F32', 'float32', '', 'bf', null, 32, {}, ['f32']);
const notTensorArb = fc.constantFrom<string>('null', 'undefined', 'number', 'string', 'Float32Array', 'plainObject', 'array', 'tensorLike');
const scalarArb = fc.oneof(fc.constantFrom(0, 1, -1, 0.5, 2, -3.25, 1e-3, 8, -0), fc.double({ min: -8, max: 8, noNaN: true }));
const badScalarArb = fc.constantFrom<unknown>(NaN, Infinity, -Infinity, 1e300, -1e39, 3.5e38, -Number.MAX_VALUE, '1', null, true, [1], {});
const badFlagArb = fc.constantFrom<unknown>(1, 0, 'true', 'false', null, {}, [true]);
const activationArb = fc.constantFrom('none', 'relu', 'gelu', 'silu');
const badActivationArb = fc.constantFrom<unknown>('tanh', 'RELU', '', 'none ', null, 1, {});
const badConfigArb = fc.oneof(
  fc.constantFrom<unknown>(
    '', 'garbage', 'cpu', 'cpu.', 'cpu.avx512.f32.14x32', 'cpu.avx512.f32.14x32.mc0.kc512.nc4096.t1', 'cpu.avx512.f32.14x32.mc168.kc0.nc4096.t1',
    'cpu.avx512.f32.14x32.mc168.kc512.nc4096.t0', 'cpu.avx512.f32.14x32.mc1e3.kc512.nc4096.t1', 'cpu.avx512.f32.14x32.mc99999999999999.kc512.nc4096.t1',
    'cpu.avx512.f32.14x32.mc-14.kc512.nc4096.t1', 'cpu.gemv.avx512.kc0.ks1.t1', 'cpu.gemv.avx512.kc256.ks0.t1', 'cpu.nokernel.f32.1x1.mc1.kc1.nc1.t1',
    'cuda.sm80.f16.128x128', 'CPU.AVX512.F32.14X32.MC168.KC512.NC4096.T1', 'cpu.avx512.f32.14x32.mc168.kc512.nc4096.t1 ', null, 5, {}, ['cpu'],
  ),
  fc.string({ maxLength: 16 }).map((s) => `cpu.${s}`),
);
const optionsNotObjectArb = fc.constantFrom<string>('null', 'number', 'string', 'array', 'map', 'date', 'function');
const unknownOptionArb = fc.constantFrom('transpose', 'alph', 'device', 'constructor', 'outdtype', 'keepSource');

// Config names built from the kernels this build has: runnable, not runnable here, or not for this call.
const KERNELS = info().kernels;
const blockedConfigArb =
  fc.record({ kernel: fc.constantFrom(...KERNELS.filter((k) => k.family === 'blocked')), mcMul: fc.integer({ min: 1, max: 12 }), kc: fc.constantFrom(1, 32, 64, 64, 256, 256, 512), ncMul: fc.integer({ min: 1, max: 8 }), t: fc.constantFrom(1, 2, 3) })
    .map(({ kernel, mcMul, kc, ncMul, t }) => `cpu.${kernel.id}.mc${kernel.mr * mcMul}.kc${kc}.nc${kernel.nr * ncMul}.t${t}`);
const validConfigArb = fc.oneof(
  blockedConfigArb,
  fc.record({ kernel: fc.constantFrom(...KERNELS.filter((k) => k.family === 'gemv')), kc: fc.constantFrom(16, 64, 256, 1024), ks: fc.constantFrom(1, 2, 4), t: fc.constantFrom(1, 2) })
    .map(({ kernel, kc, ks, t }) => `cpu.${kernel.id}.kc${kc}.ks${ks}.t${t}`),
);

const operandArgArb = fc.constantFrom<OperandArg>('a', 'b', 'bias', 'out');
const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant('notTensor' as const), arg: operandArgArb, value: notTensorArb }),
  fc.record({ kind: fc.constant('rank' as const), arg: fc.constantFrom<OperandArg>('a', 'b'), rank: fc.constantFrom(0, 1, 4) }),
  fc.record({ kind: fc.constantFrom('detached' as const, 'shrunk' as const, 'grown' as const, 'disposedBig' as const, 'sab' as const), arg: operandArgArb }),
  fc.record({ kind: fc.constantFrom('kMismatch' as const, 'batchMismatch' as const, 'betaNoOut' as const, 'biasShape' as const, 'outShape' as const, 'overlap' as const, 'outDtypeConflict' as const, 'packedDisposed' as const, 'packedTransB' as const) }),
  fc.record({ kind: fc.constant('badFlag' as const), arg: fc.constantFrom('transA', 'transB'), value: badFlagArb }),
  fc.record({ kind: fc.constant('badScalar' as const), arg: fc.constantFrom('alpha', 'beta'), value: badScalarArb }),
  fc.record({ kind: fc.constant('badActivation' as const), value: badActivationArb }),
  fc.record({ kind: fc.constant('badOutDtype' as const), value: badDTypeArb }),
  fc.record({ kind: fc.constant('badConfig' as const), value: badConfigArb }),
  fc.record({ kind: fc.constant('badBackend' as const), value: fc.constantFrom<unknown>('gpu', 'CPU', '', 'cuda:0', 3, null, {}) }),
  fc.record({ kind: fc.constant('optionsNotObject' as const), value: optionsNotObjectArb }),
  fc.record({ kind: fc.constant('unknownOption' as const), key: unknownOptionArb }),
);
type Mutation = typeof mutationArb extends fc.Arbitrary<infer T> ? T : never;

const opt = <T>(arb: fc.Arbitrary<T>, freq = 2) => fc.option(arb, { nil: undefined, freq });

const matmulCaseArb = fc.record({
  fn: fc.constantFrom<Fn>('matmul', 'matmulSync', 'explain'),
  m: dimArb, k: dimArb, n: dimArb,
  batchA: fc.boolean(), batchB: fc.boolean(), batch: fc.integer({ min: 0, max: 3 }),
  transA: opt(fc.boolean()), transB: opt(fc.boolean()),
  dtypeA: dtypeArb, dtypeB: dtypeArb, memA: memArb, memB: memArb,
  alpha: opt(scalarArb), beta: opt(scalarArb),
  bias: opt(fc.record({ dtype: dtypeArb, mem: memArb })),
  activation: opt(activationArb),
  out: opt(fc.record({ dtype: dtypeArb, mem: memArb })),
  outDtype: opt(dtypeArb, 4),
  config: opt(validConfigArb, 4),
  backend: opt(fc.constantFrom('cpu', 'auto'), 4),
  packed: opt(fc.record({ keepSource: opt(fc.boolean()), inputDtype: opt(dtypeArb), config: opt(blockedConfigArb, 3) }), 3),
  midCall: opt(fc.constantFrom('transferA', 'transferB', 'transferOut', 'transferBias', 'shrinkA', 'shrinkOut', 'disposePacked', 'disposeSource'), 3),
  mutations: fc.oneof({ weight: 2, arbitrary: fc.constant([] as Mutation[]) }, { weight: 3, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 2 }) }),
  seed: fc.integer({ min: 1, max: 1e9 }),
}).map((c) => ({ kind: 'matmul' as const, ...c }));

// Empty problems with a huge dimension: they cost nothing, or are refused up front.
const hugeCaseArb = fc.record({
  fn: fc.constantFrom<Fn>('matmul', 'matmulSync', 'explain'),
  m: fc.constantFrom(0, 1, 3), k: fc.constantFrom(0, 1, 3), n: fc.constantFrom(0, 1, 3), batch: opt(fc.constantFrom(0, 1, 2)),
  which: fc.constantFrom('m', 'k', 'n', 'batch'), huge: hugeArb, dtypeA: dtypeArb, dtypeB: dtypeArb, transA: fc.boolean(), transB: fc.boolean(),
  packed: fc.boolean(),
}).map((c) => ({ kind: 'huge' as const, ...c }));

const shapeArb = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 4 }).map((shape) => ({ shape: shape as unknown, valid: true })) },
  { weight: 2, arbitrary: fc.tuple(fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 3 }), fc.nat(), hugeArb).map(([s, i, h]) => {
    const shape = [...s];
    shape[i % shape.length] = h;
    return { shape: shape as unknown, valid: true }; // valid when another dimension is 0
  }) },
  { weight: 2, arbitrary: fc.tuple(fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 3 }), fc.nat(), badDimArb).map(([s, i, d]) => {
    const shape: unknown[] = [...s];
    shape[i % shape.length] = d;
    return { shape: shape as unknown, valid: false };
  }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(5, '2,3', null, undefined, { length: 1, 0: 2 }, 'shape').map((shape) => ({ shape, valid: false })) },
);
const valuesKindArb = fc.constantFrom(
  'array', 'array', 'Float32Array', 'Float64Array', 'Int16Array', 'Uint8Array', 'sab', 'rabFixed', 'arrayLike', // valid
  'short', 'long', 'withString', 'withNull', 'withUndefined', 'withBigint', 'BigInt64Array', 'string', 'null', 'number', 'detached', 'shrunk',
);
const tensorCaseArb = fc.record({
  fn: fc.constantFrom('tensor', 'zeros'), shape: shapeArb, dtype: fc.oneof({ weight: 5, arbitrary: opt(dtypeArb, 4) }, { weight: 1, arbitrary: badDTypeArb }),
  values: valuesKindArb, special: fc.boolean(), seed: fc.integer({ min: 1, max: 1e9 }),
}).map((c) => ({ kind: 'tensor' as const, ...c }));

const prepackMutationArb = fc.oneof(
  fc.record({ kind: fc.constant('weightNotTensor' as const), value: notTensorArb }),
  fc.record({ kind: fc.constantFrom('weightRank1' as const, 'weightRank3' as const, 'weightDetached' as const, 'weightShrunk' as const, 'weightDisposedBig' as const, 'gemvConfig' as const) }),
  fc.record({ kind: fc.constant('badTransB' as const), value: badFlagArb }),
  fc.record({ kind: fc.constant('badInputDtype' as const), value: badDTypeArb }),
  fc.record({ kind: fc.constant('badKeepSource' as const), value: badFlagArb }),
  fc.record({ kind: fc.constant('badConfig' as const), value: badConfigArb }),
  fc.record({ kind: fc.constant('optionsNotObject' as const), value: optionsNotObjectArb }),
  fc.record({ kind: fc.constant('unknownOption' as const), key: fc.constantFrom('transA', 'dtype', 'constructor', 'keepsource') }),
);
type PrepackMutation = typeof prepackMutationArb extends fc.Arbitrary<infer T> ? T : never;
const prepackCaseArb = fc.record({
  k: dimArb, n: dimArb, m: dimArb, dtype: dtypeArb, mem: memArb, transB: opt(fc.boolean()), inputDtype: opt(dtypeArb), keepSource: opt(fc.boolean()),
  config: opt(blockedConfigArb, 3), dtypeA: dtypeArb, batchA: opt(fc.integer({ min: 0, max: 3 }), 4), use: fc.constantFrom<Fn>('matmul', 'matmulSync', 'explain'),
  after: opt(fc.constantFrom('transferSource', 'disposeMidCall', 'transferA'), 3),
  mutations: fc.oneof({ weight: 3, arbitrary: fc.constant([] as PrepackMutation[]) }, { weight: 2, arbitrary: fc.array(prepackMutationArb, { minLength: 1, maxLength: 2 }) }),
  seed: fc.integer({ min: 1, max: 1e9 }),
}).map((c) => ({ kind: 'prepack' as const, ...c }));

const caseArb = fc.oneof(
  { weight: 10, arbitrary: matmulCaseArb }, { weight: 2, arbitrary: hugeCaseArb }, { weight: 4, arbitrary: tensorCaseArb }, { weight: 4, arbitrary: prepackCaseArb },
);
type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

// --- building operands ---------------------------------------------------------------------------------

/** Deterministic values in [-2, 2] in steps of 1/8 (exact in every dtype). */
function valuesFor(n: number, s: number): Float32Array {
  const v = new Float32Array(n);
  let x = s >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    v[i] = ((x >>> 8) % 33 - 16) / 8;
  }
  return v;
}

const elementBytes = (d: DType) => (d === 'f32' ? 4 : 2);

/** A resizable ArrayBuffer (ES2024; Node 20 has it, this TypeScript lib does not declare it). */
type Resizable = ArrayBuffer & { resize(bytes: number): void };
const resizable = (bytes: number, max: number): Resizable =>
  new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => Resizable)(bytes, { maxByteLength: max });
const view = (d: DType, buf: ArrayBufferLike, offset: number, length?: number) =>
  d === 'f32' ? new Float32Array(buf, offset, length) : new Uint16Array(buf, offset, length);

interface Operand {
  t: Tensor;
  /** The pristine values (for the reference), made before any mutation. */
  pristine: Tensor;
  buffer?: Resizable;
}

/** A tensor of `shape` in the memory `mem` describes. */
function operand(shape: number[], dtype: DType, mem: Mem, s: number): Operand {
  const size = shape.reduce((p, d) => p * d, 1);
  const pristine = tensor(valuesFor(size, s), shape, dtype);
  if (mem === 'fresh') return { t: tensor(valuesFor(size, s), shape, dtype), pristine };
  if (mem === 'wrapped') return { t: new Tensor(dtype, shape, pristine.data.slice()), pristine };
  const bytes = size * elementBytes(dtype);
  const buffer = resizable(bytes, bytes + 64);
  const data = mem === 'rabFixed' ? view(dtype, buffer, 0, size) : view(dtype, buffer, 0);
  data.set(pristine.data);
  return { t: new Tensor(dtype, shape, data), pristine, buffer };
}

/** Detaches `buf` (moves it away); an empty buffer may already be detached, which is the same. */
function transfer(buf: ArrayBufferLike): void {
  if (buf.byteLength === 0) return;
  structuredClone(buf, { transfer: [buf as ArrayBuffer] });
}

/** Shrinks a resizable buffer to 0 bytes (nothing to do when a mutation already detached it). */
function shrink(buf: Resizable): void {
  if (buf.byteLength > 0) buf.resize(0);
}

function notTensor(kind: string, shape: number[]): unknown {
  switch (kind) {
    case 'null': return null;
    case 'undefined': return undefined;
    case 'number': return 3;
    case 'string': return 'a tensor';
    case 'Float32Array': return new Float32Array(shape.reduce((p, d) => p * d, 1));
    case 'plainObject': return {};
    case 'array': return [[1, 2], [3, 4]];
    default: return { dtype: 'f32', shape, data: new Float32Array(shape.reduce((p, d) => p * d, 1)), device: 'cpu', size: 0 };
  }
}

function optionsNotObject(kind: string): unknown {
  switch (kind) {
    case 'null': return null;
    case 'number': return 1;
    case 'string': return 'transB';
    case 'array': return [];
    case 'map': return new Map([['transB', true]]);
    case 'date': return new Date(0);
    default: return () => ({ transB: true });
  }
}

// --- outcomes --------------------------------------------------------------------------------------------

/** What the call may end in: `names` the arguments an error may name; `must`: it cannot succeed. */
interface Expect {
  must: boolean;
  names: Set<string>;
  why: string[];
}
const newExpect = (): Expect => ({ must: false, names: new Set(), why: [] });
function breaks(e: Expect, must: boolean, why: string, ...names: string[]): void {
  if (must) e.must = true;
  for (const n of names) e.names.add(n);
  e.why.push(why);
}

/** Whether an error message names the argument `name` (a word in it, not the article 'a'). */
function mentions(message: string, name: string): boolean {
  if (name === 'a') return /(^|[\s(:])a(:| is | must | has | was |;)/.test(message);
  if (name === 'the result') return /the result/.test(message);
  if (name === 'options') return /\boptions?\b/.test(message);
  return new RegExp(`(^|[^\\w])${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([^\\w]|$)`).test(message);
}

const outcomes: Record<string, number> = {};
const samples: Record<string, string[]> = {};
let calls = 0;

class CaseFailure extends Error {}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new CaseFailure(`${what} did not settle within ${CASE_MS} ms (a hang)`)), CASE_MS); }),
  ]);
}

/** Runs one public call and checks its outcome against `exp`; the result when it succeeded. */
async function call<T>(label: string, exp: Expect, run: () => T | Promise<T>): Promise<{ ok: true; value: T } | { ok: false }> {
  calls++;
  let value: T;
  try {
    const r = run();
    value = r instanceof Promise ? await withTimeout(r, label) : r;
  } catch (e) {
    if (e instanceof CaseFailure) throw e;
    const err = e as Error;
    if (!(e instanceof TypeError) && !(e instanceof RangeError)) {
      throw new CaseFailure(`${label}: threw ${err?.constructor?.name}, not a TypeError or RangeError: ${err?.message}`);
    }
    if (exp.names.size === 0) throw new CaseFailure(`${label}: a valid call threw ${err.name}: ${err.message}`);
    if (![...exp.names].some((n) => mentions(err.message, n))) {
      throw new CaseFailure(`${label}: ${err.name} names none of ${[...exp.names].join(', ')} (${exp.why.join('; ')}): ${err.message}`);
    }
    const key = `${label.split(' ')[0]} ${err.name}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
    const seen = (samples[key] ??= []);
    if (seen.length < 6 && !seen.some((m) => m.slice(0, 40) === err.message.slice(0, 40))) seen.push(err.message.slice(0, 200));
    return { ok: false };
  }
  if (exp.must) throw new CaseFailure(`${label}: succeeded, but it should have been refused (${exp.why.join('; ')})`);
  const key = `${label.split(' ')[0]} ok`;
  outcomes[key] = (outcomes[key] ?? 0) + 1;
  return { ok: true, value };
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new CaseFailure(what);
}

function sameValue(have: number, want: number): boolean {
  return Object.is(have, want) || (Number.isNaN(have) && Number.isNaN(want));
}

function roundTo(dtype: DType, x: number): number {
  if (dtype === 'f32') return Math.fround(x);
  return dtype === 'bf16' ? fromBf16Bits(toBf16Bits(x)) : fromF16Bits(toF16Bits(x));
}

// --- tensor and zeros ------------------------------------------------------------------------------------

async function tensorCase(c: Extract<Case, { kind: 'tensor' }>): Promise<void> {
  const exp = newExpect();
  const { shape } = c.shape;
  const dtype = c.dtype as DType | undefined;
  if (dtype !== undefined && !DTYPES.includes(dtype)) breaks(exp, true, `dtype ${String(dtype)}`, 'dtype');
  let size = 0;
  let shapeOk = c.shape.valid;
  if (shapeOk) {
    const dims = shape as number[];
    size = dims.reduce((p, d) => p * d, 1);
    // A huge dimension is fine only when another is 0.
    if (size > 0 && dims.some((d) => d > 2 ** 30)) shapeOk = false;
  }
  if (!shapeOk) breaks(exp, true, `shape ${String(shape)}`, 'shape');
  if (c.fn === 'zeros') {
    const r = await call('zeros', exp, () => zeros(shape as number[], dtype));
    if (r.ok) {
      const t = r.value;
      check(t.dtype === (dtype ?? 'f32') && t.shape.join() === (shape as number[]).join() && t.size === size, `zeros: got ${t.dtype} [${t.shape}]`);
      check(t.toFloat32().every((v) => Object.is(v, 0)), 'zeros: not all +0');
    }
    return;
  }
  const n = shapeOk ? size : 3;
  // The values: specials (NaN, infinities, -0, beyond f16/bf16 range) or ordinary ones.
  const base: number[] = Array.from(valuesFor(n, c.seed));
  if (c.special) {
    const specials = [NaN, Infinity, -Infinity, -0, 1e300, -1e-300, 65520, 3.4e38, 5e-8, 2 ** -149];
    for (let i = 0; i < n; i++) if (i % 2 === 0) base[i] = specials[(i + c.seed) % specials.length];
  }
  let values: unknown = base;
  let expected: number[] | undefined = base;
  switch (c.values) {
    case 'array': break;
    case 'Float32Array': values = Float32Array.from(base); expected = Array.from(values as Float32Array); break;
    case 'Float64Array': values = Float64Array.from(base); break;
    case 'Int16Array': values = Int16Array.from(base); expected = Array.from(values as Int16Array); break;
    case 'Uint8Array': values = Uint8Array.from(base); expected = Array.from(values as Uint8Array); break;
    case 'sab': {
      const v = new Float32Array(new SharedArrayBuffer(4 * n));
      v.set(base);
      values = v;
      expected = Array.from(v);
      break;
    }
    case 'rabFixed': {
      const v = new Float64Array(resizable(8 * n, 8 * n + 64), 0, n);
      v.set(base);
      values = v;
      break;
    }
    case 'arrayLike': values = { ...base, length: n }; break;
    case 'short': if (n > 0) { values = base.slice(1); breaks(exp, true, 'one value short', 'values', 'shape'); } break;
    case 'long': values = [...base, 1]; breaks(exp, true, 'one value too many', 'values', 'shape'); break;
    case 'withString': if (n > 0) { values = [...base.slice(0, -1), '1']; breaks(exp, true, 'a string value', 'values'); } break;
    case 'withNull': if (n > 0) { values = [null, ...base.slice(1)]; breaks(exp, true, 'a null value', 'values'); } break;
    case 'withUndefined': if (n > 0) { values = [...base.slice(0, -1), undefined]; breaks(exp, true, 'an undefined value', 'values'); } break;
    case 'withBigint': if (n > 0) { values = [1n, ...base.slice(1)]; breaks(exp, true, 'a bigint value', 'values'); } break;
    case 'BigInt64Array': values = new BigInt64Array(n); breaks(exp, true, 'a BigInt64Array', 'values'); break;
    case 'string': values = '1'.repeat(n); breaks(exp, true, 'a string', 'values'); break;
    case 'null': values = null; breaks(exp, true, 'null values', 'values'); break;
    case 'number': values = n; breaks(exp, true, 'a number', 'values'); break;
    case 'detached': {
      const v = Float32Array.from(base);
      transfer(v.buffer);
      values = v;
      if (n > 0) breaks(exp, true, 'detached values', 'values', 'shape');
      expected = [];
      break;
    }
    case 'shrunk': {
      const v = new Float32Array(resizable(4 * n, 4 * n + 64), 0, n);
      v.set(base);
      (v.buffer as Resizable).resize(0);
      values = v;
      if (n > 0) breaks(exp, true, 'values on a shrunk resizable buffer', 'values', 'shape');
      expected = [];
      break;
    }
  }
  const r = await call('tensor', exp, () => tensor(values as ArrayLike<number>, shape as number[], dtype));
  if (!r.ok) return;
  const t = r.value;
  const d = dtype ?? 'f32';
  check(t.dtype === d && t.shape.join() === (shape as number[]).join() && t.size === size, `tensor: got ${t.dtype} [${t.shape}]`);
  const got = t.toFloat32();
  for (let i = 0; i < size; i++) {
    const want = roundTo(d, expected![i]);
    check(sameValue(got[i], want), `tensor: element ${i} is ${got[i]}, want ${want} (from ${expected![i]})`);
  }
  // The tensor never aliases the values.
  if (ArrayBuffer.isView(values) && size > 0) check(t.data.buffer !== (values as ArrayBufferView).buffer, 'tensor: the data aliases values');
}

// --- matmul, matmulSync, explain -----------------------------------------------------------------------

type MatmulCase = Extract<Case, { kind: 'matmul' }>;

async function runMatmul(fn: Fn, label: string, exp: Expect, a: unknown, b: unknown, opts: unknown,
  during?: () => void): Promise<{ ok: true; value: Tensor | ReturnType<typeof explain> } | { ok: false }> {
  if (fn === 'explain') return call(label, exp, () => explain(a as Tensor, b as Tensor, opts as never));
  if (fn === 'matmulSync') return call(label, exp, () => matmulSync(a as Tensor, b as Tensor, opts as never));
  return call(label, exp, () => {
    const p = matmul(a as Tensor, b as Tensor, opts as never);
    try {
      during?.();
    } catch (e) {
      p.catch(() => {}); // the case fails on the test's own error, not on an unhandled rejection
      throw new CaseFailure(`${label}: the test's action during the call failed: ${(e as Error).message}`);
    }
    return p;
  });
}

async function matmulCase(c: MatmulCase): Promise<void> {
  const exp = newExpect();
  const has = (kind: string) => c.mutations.some((mu) => mu.kind === kind);
  const packedB = c.packed !== undefined;
  const transA = c.transA ?? false;
  const transB = c.transB ?? false;
  const batchA = c.batchA, batchB = c.batchB && !packedB; // a PackedWeight is 2-D; a may be batched
  const batched = batchA || batchB;
  const aShape = [...(batchA ? [c.batch] : []), ...(transA ? [c.k, c.m] : [c.m, c.k])];
  const kB = has('kMismatch') ? c.k + 1 : c.k;
  const bBatch = has('batchMismatch') && batchA && batchB ? c.batch + 1 : c.batch;
  const bShape = [...(batchB ? [bBatch] : []), ...(transB ? [c.n, kB] : [kB, c.n])];
  const outShape = [...(batched ? [c.batch] : []), c.m, c.n];
  if (kB !== c.k) breaks(exp, true, 'K mismatch', 'a', 'b');
  if (bBatch !== c.batch) breaks(exp, true, 'batch mismatch', 'a', 'b');

  let s = c.seed;
  const A = operand(aShape, c.dtypeA, c.memA, s++);
  const B = operand(bShape, c.dtypeB, c.memB, s++);
  const opts: Record<string, unknown> = {};
  if (c.transA !== undefined) opts.transA = c.transA;
  if (c.transB !== undefined) opts.transB = c.transB;
  if (c.alpha !== undefined) opts.alpha = c.alpha;
  if (c.activation !== undefined) opts.activation = c.activation;
  if (c.backend !== undefined) opts.backend = c.backend;
  if (c.config !== undefined) {
    opts.config = c.config;
    breaks(exp, false, `config ${c.config} may not run this call`, 'config');
  }
  let Out: Operand | undefined;
  const needOut = c.out !== undefined || has('outDtypeConflict') || has('overlap');
  const outDtype = c.out?.dtype ?? c.dtypeA;
  if (needOut) {
    Out = operand(outShape, outDtype, c.out?.mem ?? 'fresh', s++);
    opts.out = Out.t;
    if (c.beta !== undefined) opts.beta = c.beta;
    if (c.outDtype !== undefined && c.outDtype === outDtype) opts.outDtype = c.outDtype;
  } else if (c.outDtype !== undefined) {
    opts.outDtype = c.outDtype;
  }
  let Bias: Operand | undefined;
  if (c.bias !== undefined || has('biasShape')) {
    const biasShape = has('biasShape') ? (c.seed % 2 ? [c.n + 1] : [1, c.n]) : [c.n];
    if (has('biasShape')) breaks(exp, true, `bias [${biasShape}]`, 'bias');
    Bias = operand(biasShape, c.bias?.dtype ?? 'f32', c.bias?.mem ?? 'fresh', s++);
    opts.bias = Bias.t;
  }
  // b as a PackedWeight (of the 2-D B); its source stays the reference.
  let bArg: unknown = B.t;
  let pw: PackedWeight | undefined;
  if (c.packed) {
    const popts: Record<string, unknown> = { transB };
    if (c.packed.keepSource !== undefined) popts.keepSource = c.packed.keepSource;
    if (c.packed.inputDtype !== undefined) popts.inputDtype = c.packed.inputDtype;
    if (c.packed.config !== undefined) popts.config = c.packed.config;
    const pexp = newExpect();
    if (c.packed.config !== undefined) breaks(pexp, false, `config ${c.packed.config} may not pack this weight`, 'config');
    if (kB !== c.k) breaks(pexp, false, 'K mismatch');
    const r = await call('prepack (for matmul)', pexp, () => prepack(B.t, popts as never));
    if (!r.ok) return;
    pw = r.value;
    bArg = pw;
  }

  // Mutations that replace or break operands and options.
  let aArg: unknown = A.t;
  const operands: Record<OperandArg, Operand | undefined> = { a: A, b: packedB ? undefined : B, bias: Bias, out: Out };
  const replace = (arg: OperandArg, v: unknown) => {
    if (arg === 'a') aArg = v;
    else if (arg === 'b') bArg = v;
    else opts[arg] = v;
  };
  let optionsArg: unknown = opts;
  for (const mu of c.mutations) {
    switch (mu.kind) {
      case 'notTensor':
        // An absent bias or out undoes what other mutations did to it: only alone.
        if ((mu.arg === 'bias' || mu.arg === 'out') && mu.value === 'undefined' && c.mutations.length > 1) break;
        replace(mu.arg, notTensor(mu.value, outShape));
        // A missing bias or out is no argument at all.
        breaks(exp, !((mu.arg === 'bias' || mu.arg === 'out') && mu.value === 'undefined'), `${mu.arg} is ${mu.value}`, mu.arg);
        if (mu.arg === 'out' && mu.value === 'undefined') {
          delete opts.out;
          if (opts.beta !== undefined && opts.beta !== 0) breaks(exp, true, 'beta without out', 'beta');
          Out = undefined;
        }
        if (mu.arg === 'bias' && mu.value === 'undefined') { delete opts.bias; Bias = undefined; }
        break;
      case 'rank': {
        const o = operands[mu.arg];
        if (!o || (mu.arg === 'b' && packedB)) break;
        const shape = mu.rank === 0 ? [] : mu.rank === 1 ? [o.t.size] : [1, ...o.t.shape.slice(-3)];
        if (mu.rank === 4 && o.t.shape.length === 2) shape.unshift(1);
        replace(mu.arg, new Tensor(o.t.dtype, shape.length === 0 && o.t.size !== 1 ? [o.t.size] : shape, o.pristine.data.slice()));
        breaks(exp, true, `${mu.arg} of rank ${mu.rank}`, mu.arg);
        break;
      }
      case 'detached': case 'shrunk': case 'grown': case 'sab': {
        const o = operands[mu.arg];
        const current = mu.arg === 'a' ? aArg : mu.arg === 'b' ? bArg : opts[mu.arg];
        if (!o || current !== o.t) break; // absent, or already replaced by another mutation
        if (mu.kind === 'sab') {
          // The Tensor constructor refuses it: that is the call that fails.
          const shape = [...o.t.shape];
          const dt = o.t.dtype;
          await call('Tensor (SharedArrayBuffer)', { must: true, names: new Set(['data', 'SharedArrayBuffer']), why: ['shared memory'] },
            () => new Tensor(dt, shape, view(dt, new SharedArrayBuffer(o.t.size * elementBytes(dt)), 0, o.t.size)));
          return;
        }
        if (mu.kind === 'detached') {
          transfer(o.t.data.buffer);
          breaks(exp, o.t.size > 0, `${mu.arg} detached`, mu.arg);
        } else {
          // Resizable memory: re-made there when it is not.
          const r = operand([...o.t.shape], o.t.dtype, mu.kind === 'shrunk' ? 'rabFixed' : 'rabTracking', c.seed);
          replace(mu.arg, r.t);
          r.buffer!.resize(mu.kind === 'shrunk' ? 0 : r.buffer!.byteLength + 8);
          breaks(exp, mu.kind === 'grown' || r.t.size > 0, `${mu.arg} ${mu.kind}`, mu.arg);
        }
        break;
      }
      case 'disposedBig': {
        const big = zeros([256, 256], operands[mu.arg]?.t.dtype ?? 'f32'); // addon memory (64 KiB and more in every dtype), freed by dispose()
        big.dispose();
        replace(mu.arg, big);
        breaks(exp, true, `${mu.arg} disposed`, mu.arg);
        break;
      }
      case 'kMismatch': case 'batchMismatch': break; // built in
      case 'betaNoOut':
        if (opts.out === undefined) {
          opts.beta = 1.5;
          breaks(exp, true, 'beta without out', 'beta');
        }
        break;
      case 'biasShape': break; // built in
      case 'outShape':
        if (opts.out === undefined || !Out) break;
        opts.out = zeros([...outShape.slice(0, -1), c.n + 1], Out.t.dtype);
        breaks(exp, true, 'out of the wrong shape', 'out');
        break;
      case 'overlap': {
        // a and out over one buffer, both from its start.
        if (aArg !== A.t || !Out || opts.out !== Out.t) break; // replaced by another mutation
        const bytes = Math.max(A.t.size * elementBytes(c.dtypeA), Out.t.size * elementBytes(outDtype));
        const buf = new ArrayBuffer(bytes);
        const av = view(c.dtypeA, buf, 0, A.t.size);
        av.set(A.pristine.data);
        aArg = new Tensor(c.dtypeA, aShape, av);
        opts.out = new Tensor(outDtype, outShape, view(outDtype, buf, 0, Out!.t.size));
        if (A.t.size > 0 && Out!.t.size > 0) breaks(exp, true, 'out overlaps a', 'out');
        break;
      }
      case 'outDtypeConflict':
        opts.outDtype = DTYPES.find((d) => d !== outDtype);
        breaks(exp, true, 'outDtype differs from out', 'outDtype', 'out');
        break;
      case 'packedDisposed':
        if (pw) {
          pw.dispose();
          breaks(exp, true, 'b is a disposed PackedWeight', 'b');
        }
        break;
      case 'packedTransB':
        if (pw) {
          opts.transB = !transB;
          breaks(exp, true, 'transB differs from the PackedWeight', 'transB');
        }
        break;
      case 'badFlag':
        opts[mu.arg] = mu.value;
        breaks(exp, true, `${mu.arg} = ${String(mu.value)}`, mu.arg);
        break;
      case 'badScalar':
        opts[mu.arg] = mu.value;
        breaks(exp, true, `${mu.arg} = ${String(mu.value)}`, mu.arg);
        break;
      case 'badActivation':
        opts.activation = mu.value;
        breaks(exp, true, `activation ${String(mu.value)}`, 'activation');
        break;
      case 'badOutDtype':
        opts.outDtype = mu.value;
        breaks(exp, true, `outDtype ${String(mu.value)}`, 'outDtype');
        break;
      case 'badConfig':
        opts.config = mu.value;
        breaks(exp, true, `config ${JSON.stringify(mu.value)}`, 'config');
        break;
      case 'badBackend':
        opts.backend = mu.value;
        breaks(exp, true, `backend ${String(mu.value)}`, 'backend');
        break;
      case 'optionsNotObject':
        optionsArg = optionsNotObject(mu.value);
        breaks(exp, true, `options ${mu.value}`, 'options');
        break;
      case 'unknownOption':
        opts[mu.key] = true;
        breaks(exp, true, `option ${mu.key}`, mu.key, 'options');
        break;
    }
  }
  if (typeof opts.beta === 'number' && opts.beta !== 0 && opts.out === undefined) breaks(exp, true, 'beta without out', 'beta');

  // The reference, from the pristine operands (before the call writes out or anything is taken away).
  const kEff = c.k;
  const outTensor = opts.out instanceof Tensor ? opts.out : undefined;
  const cBefore = Out && outTensor === Out.t ? Out.pristine : undefined;
  const reference = () => referenceMatmul(A.pristine, B.pristine, {
    transA, transB, alpha: c.alpha, beta: outTensor ? c.beta : undefined, c: cBefore, bias: Bias?.pristine, activation: c.activation as never,
  });
  const label = `${c.fn} ${A.t.dtype}[${aShape}] x ${packedB ? 'packed ' : ''}${B.t.dtype}[${bShape}]`;
  // Things taken away while an async call runs: inputs must not matter, out may reject naming out.
  let during: (() => void) | undefined;
  if (c.fn === 'matmul' && c.midCall !== undefined) {
    const mc = c.midCall;
    during = () => {
      outcomes[`mid-call ${mc}`] = (outcomes[`mid-call ${mc}`] ?? 0) + 1;
      if (mc === 'transferA' && aArg === A.t) transfer(A.t.data.buffer);
      if (mc === 'transferB' && bArg === B.t) transfer(B.t.data.buffer);
      if (mc === 'transferBias' && Bias && opts.bias === Bias.t) transfer(Bias.t.data.buffer);
      if (mc === 'shrinkA' && aArg === A.t && A.buffer) shrink(A.buffer);
      if (mc === 'disposePacked') pw?.dispose();
      if (mc === 'disposeSource' && pw) transfer(B.t.data.buffer);
      if (Out && outTensor === Out.t && Out.t.size > 0) {
        if (mc === 'transferOut') {
          transfer(Out.t.data.buffer);
          breaks(exp, false, 'out transferred during the call', 'out');
        }
        if (mc === 'shrinkOut' && Out.buffer) {
          shrink(Out.buffer);
          breaks(exp, false, 'out shrunk during the call', 'out');
        }
      }
    };
  }
  const r = await runMatmul(c.fn, label, exp, aArg, bArg, optionsArg, during);
  if (!r.ok) return;
  if (c.fn === 'explain') {
    const e = r.value as ReturnType<typeof explain>;
    check(typeof e.config === 'string' && e.config.length > 0 && e.backend === 'cpu', `explain: ${JSON.stringify(e)}`);
    // The config explain names runs the call and gives the reference result.
    const r2 = await call('matmulSync (explained config)', newExpect(), () => matmulSync(aArg as Tensor, bArg as PackedWeight, { ...opts, config: e.config } as never));
    if (!r2.ok) return;
    expectMatches(r2.value, reference(), kEff, `${label} with the config explain names (${e.config})`);
    return;
  }
  const got = r.value as Tensor;
  check(got.shape.join() === outShape.join(), `${label}: result is [${got.shape}], want [${outShape}]`);
  if (outTensor) check(got === outTensor, `${label}: the result is not out`);
  if (got.size === 0) return;
  check(!got.disposed, `${label}: resolved, but the result is detached`);
  expectMatches(got, reference(), kEff, label);
}

// --- empty problems with huge dimensions ---------------------------------------------------------------

async function hugeCase(c: Extract<Case, { kind: 'huge' }>): Promise<void> {
  const dims: Record<'m' | 'k' | 'n' | 'batch', number> = { m: c.m, k: c.k, n: c.n, batch: c.batch ?? 1 };
  dims[c.which] = c.huge;
  const batched = c.batch !== undefined || c.which === 'batch';
  const aShape = [...(batched ? [dims.batch] : []), ...(c.transA ? [dims.k, dims.m] : [dims.m, dims.k])];
  const bShape = c.transB ? [dims.n, dims.k] : [dims.k, dims.n];
  const make = async (what: string, shape: number[], dtype: DType) => {
    const size = shape.reduce((p, d) => p * d, 1);
    const exp = newExpect();
    if (size > 0 && shape.some((d) => d > 2 ** 30)) breaks(exp, true, `${what} [${shape}] is too large`, 'shape');
    return call(`zeros (${what})`, exp, () => zeros(shape, dtype));
  };
  const a = await make('a', aShape, c.dtypeA);
  const b = await make('b', bShape, c.dtypeB);
  if (!a.ok || !b.ok) return;
  let bArg: Tensor | PackedWeight = b.value;
  if (c.packed) {
    const p = await call('prepack (huge)', newExpect(), () => prepack(b.value, { transB: c.transB }));
    if (!p.ok) return;
    check(p.value.k === dims.k && p.value.n === dims.n, `prepack: k ${p.value.k}, n ${p.value.n}`);
    bArg = p.value;
  }
  const outShape = [...(batched ? [dims.batch] : []), dims.m, dims.n];
  const exp = newExpect();
  if (outShape.reduce((p, d) => p * d, 1) > 0 && outShape.some((d) => d > 2 ** 30)) breaks(exp, true, `the result [${outShape}] is too large`, 'the result');
  const r = await runMatmul(c.fn, `${c.fn} huge [${aShape}] x [${bShape}]`, exp, a.value, bArg, { transA: c.transA, transB: c.transB });
  if (r.ok && c.fn !== 'explain') {
    const t = r.value as Tensor;
    check(t.shape.join() === outShape.join() && t.size === 0, `huge: result [${t.shape}], want [${outShape}]`);
  }
}

// --- prepack ---------------------------------------------------------------------------------------------

async function prepackCase(c: Extract<Case, { kind: 'prepack' }>): Promise<void> {
  const exp = newExpect();
  const transB = c.transB ?? false;
  const wShape = transB ? [c.n, c.k] : [c.k, c.n];
  const W = operand(wShape, c.dtype, c.mem, c.seed);
  let weight: unknown = W.t;
  const opts: Record<string, unknown> = {};
  if (c.transB !== undefined) opts.transB = c.transB;
  if (c.inputDtype !== undefined) opts.inputDtype = c.inputDtype;
  if (c.keepSource !== undefined) opts.keepSource = c.keepSource;
  if (c.config !== undefined) {
    opts.config = c.config;
    breaks(exp, false, `config ${c.config} may not pack this weight`, 'config');
  }
  let optionsArg: unknown = opts;
  for (const mu of c.mutations) {
    // One mutation of the weight itself: a second would undo what the first did.
    if (mu.kind.startsWith('weight') && weight !== W.t) continue;
    switch (mu.kind) {
      case 'weightNotTensor': weight = notTensor(mu.value, wShape); breaks(exp, true, `weight is ${mu.value}`, 'weight'); break;
      case 'weightRank1': weight = new Tensor(c.dtype, [W.t.size], W.pristine.data.slice()); breaks(exp, true, 'a 1-D weight', 'weight'); break;
      case 'weightRank3': weight = new Tensor(c.dtype, [1, ...wShape], W.pristine.data.slice()); breaks(exp, true, 'a 3-D weight', 'weight'); break;
      case 'weightDetached': transfer(W.t.data.buffer); breaks(exp, W.t.size > 0, 'weight detached', 'weight'); break;
      case 'weightShrunk': {
        const r = operand(wShape, c.dtype, 'rabFixed', c.seed);
        r.buffer!.resize(0);
        weight = r.t;
        breaks(exp, r.t.size > 0, 'weight shrunk', 'weight');
        break;
      }
      case 'weightDisposedBig': {
        const big = zeros([256, 256], c.dtype);
        big.dispose();
        weight = big;
        breaks(exp, true, 'weight disposed', 'weight');
        break;
      }
      case 'gemvConfig': {
        const gemv = KERNELS.find((k) => k.family === 'gemv');
        if (gemv) {
          opts.config = `cpu.${gemv.id}.kc256.ks1.t1`;
          breaks(exp, true, 'a GEMV config packs nothing', 'config');
        }
        break;
      }
      case 'badTransB': opts.transB = mu.value; breaks(exp, true, `transB ${String(mu.value)}`, 'transB'); break;
      case 'badInputDtype': opts.inputDtype = mu.value; breaks(exp, true, `inputDtype ${String(mu.value)}`, 'inputDtype'); break;
      case 'badKeepSource': opts.keepSource = mu.value; breaks(exp, true, `keepSource ${String(mu.value)}`, 'keepSource'); break;
      case 'badConfig': opts.config = mu.value; breaks(exp, true, `config ${JSON.stringify(mu.value)}`, 'config'); break;
      case 'optionsNotObject': optionsArg = optionsNotObject(mu.value); breaks(exp, true, `options ${mu.value}`, 'options'); break;
      case 'unknownOption': opts[mu.key] = false; breaks(exp, true, `option ${mu.key}`, mu.key, 'options'); break;
    }
  }
  const r = await call(`prepack ${c.dtype}[${wShape}]`, exp, () => prepack(weight as Tensor, optionsArg as never));
  if (!r.ok) return;
  const pw = r.value;
  check(pw.k === c.k && pw.n === c.n && pw.transB === transB && pw.dtype === c.dtype && pw.shape.join() === wShape.join(),
    `prepack: k ${pw.k} n ${pw.n} transB ${pw.transB} ${pw.dtype} [${pw.shape}]`);
  check((pw.source !== undefined) === (c.keepSource !== false), `prepack: source ${pw.source ? 'kept' : 'dropped'} with keepSource ${c.keepSource}`);

  // A call on it (a may be batched), against the reference of the unpacked weight.
  const aShape = [...(c.batchA !== undefined ? [c.batchA] : []), c.m, c.k];
  const A = operand(aShape, c.dtypeA, 'fresh', c.seed + 1);
  if (c.after === 'transferSource') transfer(W.t.data.buffer); // calls read what prepack pinned or copied
  const label = `${c.use} ${c.dtypeA}[${aShape}] x prepacked ${c.dtype}[${wShape}]${transB ? ' transB' : ''}`;
  const u = await runMatmul(c.use, label, newExpect(), A.t, pw, undefined, () => {
    if (c.after === 'disposeMidCall') pw.dispose();
    if (c.after === 'transferA') transfer(A.t.data.buffer);
  });
  if (!u.ok) return;
  const ref = referenceMatmul(A.pristine, W.pristine, { transB });
  if (c.use === 'explain') {
    const e = u.value as ReturnType<typeof explain>;
    if (c.after === 'disposeMidCall') pw.dispose();
    const r2 = await call('matmulSync (explained config)', c.after === 'disposeMidCall' ? { must: true, names: new Set(['b']), why: ['disposed'] } : newExpect(),
      () => matmulSync(A.t, pw, { config: e.config }));
    if (r2.ok) expectMatches(r2.value, ref, c.k, `${label} with the config explain names (${e.config})`);
    return;
  }
  const got = u.value as Tensor;
  check(got.shape.join() === ref.shape.join(), `${label}: result [${got.shape}], want [${ref.shape}]`);
  if (got.size > 0) expectMatches(got, ref, c.k, label);
}

// --- the property ----------------------------------------------------------------------------------------

let caseNo = 0;
const started = Date.now();
let slowestMs = 0;

async function runCase(c: Case): Promise<void> {
  if (c.kind === 'tensor') return tensorCase(c);
  if (c.kind === 'huge') return hugeCase(c);
  if (c.kind === 'prepack') return prepackCase(c);
  return matmulCase(c);
}

const describeCase = (c: Case) => fc.stringify(c);

const property = fc.asyncProperty(caseArb, async (c) => {
  caseNo++;
  process.stderr.write(`case ${caseNo}: ${describeCase(c)}\n`);
  const t0 = Date.now();
  try {
    await runCase(c);
  } catch (e) {
    const err = e as Error;
    throw new Error(`${err.message}${e instanceof CaseFailure ? '' : `\n${err.stack}`}`);
  }
  slowestMs = Math.max(slowestMs, Date.now() - t0);
  if (caseNo % 500 === 0) process.stdout.write(`${JSON.stringify({ done: caseNo })}\n`);
});

const details = await fc.check(property, { seed, numRuns: runs, endOnFailure: false });
const summary = {
  seed, runs: details.numRuns, cases: caseNo, calls, failed: details.failed, totalMs: Date.now() - started, slowestMs, outcomes, samples,
  ...(details.failed ? {
    report: `${String(details.errorInstance instanceof Error ? details.errorInstance.message : details.errorInstance)}\n${fc.defaultReportMessage(details) ?? ''}`,
    counterexample: fc.stringify(details.counterexample),
  } : {}),
};
process.stdout.write(`${JSON.stringify({ summary })}\n`);
process.exit(0);
