// The tuner's numerical check: before a candidate can win, its output at the tuned shape is compared
// with a reference, element by element, with a tolerance that scales with K and the output dtype.
//
// Inputs are uniform in [-1, 1) (rounded to their dtype), so the rounding error of a correct f32
// accumulation grows like sqrt(K) times the root-sum-square of the summed terms ("scale"). The check
// allows |got - want| <= tol * scale + (rounding of the output dtype) with tol = 16 sqrt(K) eps_f32 by
// default: about 7x the largest error a correct kernel shows over millions of elements, and still 20x
// below what a kernel that rounds f32 inputs to bf16, drops a term or misses a tile produces.
//
// Reference: the float64 GEMM (native referenceGemm) when M*N*K is small enough to be quick; otherwise
// the backend's default kernel (checked first against float64 on a few sampled rows) with its error
// allowed for twice, and the scale from the same kernel run on the squared inputs.
import { type DType, bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../dtype.js';
import type { NativeAddon, NativeSurface, ProblemDesc } from '../native.js';
import type { GemmSpec } from './key.js';

const EPS: Record<DType, number> = { f32: 2 ** -24, f16: 2 ** -11, bf16: 2 ** -8 };
/** At most this many multiply-adds for a full float64 reference (a fraction of a second). */
export const FULL_REFERENCE_MACS = 2 ** 26;
/** Budget of multiply-adds for the float64 rows that check the reference kernel on larger shapes. */
const SAMPLED_REFERENCE_MACS = 2 ** 27;

type Data = Float32Array | Uint16Array;

export interface CheckData {
  /** The problem with its inputs (a, b, bias); each check supplies its own c. */
  desc: ProblemDesc;
  want: Float64Array | Float32Array; // [M, N]
  scale: Float64Array | Float32Array; // [M, N]: sqrt(sum of squared terms)
  /** 'float64' or 'kernel <config> (checked against float64 on rows ...)' */
  reference: string;
  /** Allowed error per unit of scale (the accumulation part). */
  tolerance: number;
  /** Output roundings allowed for: 1 against float64, 2 against another kernel's output. */
  roundings: number;
}

export interface CheckResult {
  passed: boolean;
  /** Largest |got - want| / scale over C. */
  maxError: number;
  /** The first element outside the tolerance, for the message. */
  message?: string;
}

/** Deterministic uniform values in [-1, 1) as f32, from an LCG (fast for hundreds of millions). */
function uniform(n: number, seed: number): Float32Array {
  const v = new Float32Array(n);
  let s = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2147483648 - 1;
  }
  return v;
}

function toDtype(v: Float32Array, dtype: DType): Data {
  return dtype === 'f32' ? v : dtype === 'bf16' ? f32ToBf16(v) : f32ToF16(v);
}

function asF32(d: Data, dtype: DType): Float32Array {
  return dtype === 'f32' ? (d as Float32Array) : dtype === 'bf16' ? bf16ToF32(d as Uint16Array) : f16ToF32(d as Uint16Array);
}

function squares(d: Data, dtype: DType): Data {
  const v = asF32(d, dtype);
  const sq = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) sq[i] = v[i] * v[i];
  return toDtype(sq, dtype);
}

function outputArray(dtype: DType, n: number): Data {
  return dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n);
}

/** The default tolerance for K (per unit of scale): 16 sqrt(K) eps_f32. */
export function defaultTolerance(k: number): number {
  return 16 * Math.sqrt(Math.max(k, 1)) * EPS.f32;
}

/** Compares got (C in outDtype) with the reference; gelu and silu may grow errors by up to 1.2x. */
export function compareOutput(data: CheckData, got: Data, label: string): CheckResult {
  const { desc, want, scale } = data;
  const out = desc.dtypeC;
  const g = asF32(got, out);
  const slope = desc.activation === 'none' || desc.activation === 'relu' ? 1 : 1.2;
  const tol = data.tolerance * slope;
  const rel = data.roundings * EPS[out] + (desc.activation === 'none' ? 0 : 8 * EPS.f32);
  const abs = out === 'f16' ? data.roundings * 2 ** -24 : 1e-30; // f16 subnormal spacing
  let maxError = 0;
  let message: string | undefined;
  for (let i = 0; i < g.length; i++) {
    const w = want[i], x = g[i];
    const err = Math.abs(x - w);
    if (!(err <= tol * scale[i] + rel * Math.abs(w) + abs)) {
      if (!message) {
        const row = Math.floor(i / desc.n), col = i % desc.n;
        message = `${label}: C[${row}, ${col}] is ${x} but the reference (${data.reference}) gives ${w} (allowed error ${(tol * scale[i] + rel * Math.abs(w) + abs).toExponential(2)})`;
      }
      if (Number.isNaN(err)) {
        maxError = Infinity;
        continue;
      }
    }
    const e = err / (scale[i] + 1e-30);
    if (e > maxError) maxError = e;
  }
  return { passed: message === undefined, maxError, message };
}

/** Runs `config` on the check inputs and compares its output with the reference. */
export async function checkConfig(native: NativeSurface, data: CheckData, config: string): Promise<CheckResult> {
  const c = outputArray(data.desc.dtypeC, data.desc.m * data.desc.n);
  await native.matmulAsync({ ...data.desc, config, c });
  return compareOutput(data, c, config);
}

/**
 * Makes the inputs and the reference for one shape. `backend` runs the reference kernel on large shapes;
 * `cpu` (the CPU addon) computes the float64 reference. Throws when the reference kernel itself disagrees
 * with float64 (nothing at that shape can then be checked).
 */
export async function prepareCheck(
  backend: NativeSurface, cpu: NativeAddon, spec: GemmSpec, base: ProblemDesc, referenceConfig: string,
  tolerance = defaultTolerance(spec.k), seed = 1,
): Promise<CheckData> {
  const { m, n, k } = spec;
  const a = toDtype(uniform(m * k, seed), spec.dtypeA);
  const b = toDtype(uniform(k * n, seed + 1), spec.dtypeB);
  const bias = spec.bias ? uniform(n, seed + 2) : undefined;
  const desc: ProblemDesc = { ...base, config: '', a, b, alpha: 1, beta: 0, ...(bias ? { bias, biasDtype: 'f32' as DType } : {}) };
  const cpuDesc = (d: ProblemDesc): ProblemDesc => ({ ...d, backend: 'cpu', config: '' });
  if (m * n * k <= FULL_REFERENCE_MACS) {
    const want = new Float64Array(m * n), scale = new Float64Array(m * n);
    await cpu.referenceAsync({ ...cpuDesc(desc), c: outputArray(spec.outDtype, m * n) }, want, scale);
    return { desc, want, scale, reference: 'float64', tolerance, roundings: 1 };
  }
  // The reference kernel's output, and the scale from the same kernel on the squared terms.
  const ref = outputArray(spec.outDtype, m * n);
  await backend.matmulAsync({ ...desc, config: referenceConfig, c: ref });
  const sq = new Float32Array(m * n);
  const biasSquared = bias?.map((x) => x * x);
  await backend.matmulAsync({
    ...desc, config: referenceConfig, a: squares(a, spec.dtypeA), b: squares(b, spec.dtypeB), c: sq, dtypeC: 'f32',
    activation: 'none', ...(biasSquared ? { bias: biasSquared, biasDtype: 'f32' as DType } : {}),
  });
  const scale = sq.map(Math.sqrt);
  const want = asF32(ref, spec.outDtype);
  // Check the reference kernel against float64 on sampled rows (first, last and spread between).
  const rowCount = Math.min(m, Math.max(2, Math.min(8, Math.floor(SAMPLED_REFERENCE_MACS / (n * k)))));
  const rows = [...new Set(Array.from({ length: rowCount }, (_, i) => Math.round((i * (m - 1)) / Math.max(rowCount - 1, 1))))];
  for (const i of rows) {
    // Row i of op(A): contiguous for A [M, K]; a column (stride M) for A stored [K, M].
    const aRow = spec.transA ? a.subarray(i) : a.subarray(i * k, (i + 1) * k);
    const rowDesc: ProblemDesc = { ...cpuDesc(desc), m: 1, a: aRow, strideC: n, c: outputArray(spec.outDtype, n) };
    const want64 = new Float64Array(n), scale64 = new Float64Array(n);
    await cpu.referenceAsync(rowDesc, want64, scale64);
    const rowData: CheckData = { desc: { ...desc, m: 1 }, want: want64, scale: scale64, reference: 'float64', tolerance, roundings: 1 };
    const r = compareOutput(rowData, ref.subarray(i * n, (i + 1) * n), `reference kernel ${referenceConfig}, row ${i}`);
    if (!r.passed) throw new Error(`the reference kernel disagrees with float64 at ${spec.m}x${spec.n}x${spec.k}: ${r.message}`);
  }
  return {
    desc, want, scale, tolerance: 2 * tolerance, roundings: 2,
    reference: `kernel ${referenceConfig}, itself checked against float64 on rows ${rows.join(', ')}`,
  };
}
