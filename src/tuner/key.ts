// What a tuned result is keyed by: everything that can change which kernel wins (DESIGN.md seam 4).
// Backend and device architecture are checked once per file by its validator lines; the rest is the
// per-row key, written as a short string so the lookup on every matmul call is one Map access.
import { type DType, isDType } from '../dtype.js';
import { ACTIVATIONS, type Activation, type ProblemDesc } from '../native.js';

/** One GEMM shape to tune or look up: C[M, N] = act(op(A) op(B) + bias), A/B of dtypeA/dtypeB. */
export interface GemmSpec {
  m: number;
  n: number;
  k: number;
  dtypeA: DType;
  dtypeB: DType;
  outDtype: DType;
  transA: boolean;
  transB: boolean;
  bias: boolean;
  activation: Activation;
  /**
   * B is a prepared weight (prepack()): blocked configs are timed and run on B packed once, in their
   * own layout; configs that read B as stored (GEMV, a system BLAS) read it in place. Default false.
   */
  prepacked?: boolean;
  /** Where the shape came from (a model's weight name, a file and line), for messages only. */
  label?: string;
}

/** An integer >= min written as decimal digits only (as in shape and tuned files); else undefined. */
export function parseInteger(s: string, min: number): number | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const x = Number(s);
  return Number.isSafeInteger(x) && x >= min ? x : undefined;
}

/** 'bf16' when A and B agree, else 'f32*bf16' (A's dtype first). */
export function dtypeColumn(a: DType, b: DType): string {
  return a === b ? a : `${a}*${b}`;
}

export function parseDtypeColumn(s: string): [DType, DType] | undefined {
  const parts = s.split('*');
  if (parts.length === 1 && isDType(parts[0])) return [parts[0], parts[0]];
  if (parts.length === 2 && isDType(parts[0]) && isDType(parts[1])) return [parts[0], parts[1]];
  return undefined;
}

/** 'none', 'bias', 'relu', 'bias+gelu', ... */
export function epilogueName(bias: boolean, activation: Activation): string {
  if (activation === 'none') return bias ? 'bias' : 'none';
  return bias ? `bias+${activation}` : activation;
}

export function parseEpilogue(s: string): { bias: boolean; activation: Activation } | undefined {
  if (s === 'none') return { bias: false, activation: 'none' };
  if (s === 'bias') return { bias: true, activation: 'none' };
  const bias = s.startsWith('bias+');
  const act = (bias ? s.slice(5) : s) as Activation;
  if (act === 'none' || !ACTIVATIONS.includes(act)) return undefined;
  return { bias, activation: act };
}

/** 'prepacked' or 'plain': how B reaches the GEMM (the tuned file's weight column). */
export function weightColumn(prepacked: boolean | undefined): 'prepacked' | 'plain' {
  return prepacked ? 'prepacked' : 'plain';
}

export function parseWeightColumn(s: string): boolean | undefined {
  return s === 'prepacked' ? true : s === 'plain' ? false : undefined;
}

/** The key without M: the padded-M bucket lookup searches the tuned Ms under it. */
export function keyWithoutM(s: Omit<GemmSpec, 'm'>): string {
  return `${dtypeColumn(s.dtypeA, s.dtypeB)}|${s.outDtype}|${s.transA ? 't' : 'n'}${s.transB ? 't' : 'n'}|${weightColumn(s.prepacked)}|${epilogueName(s.bias, s.activation)}|${s.n}|${s.k}`;
}

export function keyString(s: GemmSpec): string {
  return `${keyWithoutM(s)}|${s.m}`;
}

/**
 * What fixes a prepared weight's packed layout: the weight and the inputs it meets, whatever M, epilogue
 * and out dtype (a GemmSpec, or a ProblemDesc, which names these fields alike).
 */
export function weightKey(s: Pick<GemmSpec, 'dtypeA' | 'dtypeB' | 'transA' | 'transB' | 'n' | 'k'>): string {
  return `${s.dtypeA}*${s.dtypeB}|${s.transA ? 't' : 'n'}${s.transB ? 't' : 'n'}|${s.n}|${s.k}`;
}

/** "128x4096x4096 bf16->bf16 nt bias" for tables and messages. */
export function describeSpec(s: GemmSpec): string {
  const epi = epilogueName(s.bias, s.activation);
  return `${s.m}x${s.n}x${s.k} ${dtypeColumn(s.dtypeA, s.dtypeB)}->${s.outDtype} ${s.transA ? 't' : 'n'}${s.transB ? 't' : 'n'}${s.prepacked ? ' prepacked' : ''}${epi === 'none' ? '' : ` ${epi}`}`;
}

/**
 * The kernel family of a config name: the name without its backend prefix and its trailing numeric
 * tuning fields (mc168, kc384, t2, s4, ...): cpu.avx512.f32.14x32.mc168.kc384.nc4096.t2 -> avx512.f32.14x32.
 */
export function kernelOfConfig(config: string): string {
  const parts = config.split('.');
  let end = parts.length;
  while (end > 2 && /^[a-z]+\d+$/.test(parts[end - 1])) end--;
  return parts.slice(1, end).join('.');
}

/**
 * The problem of a spec, without buffers: what heuristic, candidates, supports and timeConfig take (the
 * backend allocates its own inputs to time). A bias is flagged by an empty array.
 */
export function specDesc(backend: string, spec: GemmSpec, device = 0): ProblemDesc {
  const { m, n, k } = spec;
  return {
    backend, device, config: '', m, n, k, batch: 1, transA: spec.transA, transB: spec.transB,
    lda: Math.max(1, spec.transA ? m : k), ldb: Math.max(1, spec.transB ? k : n), ldc: Math.max(1, n),
    strideA: 0, strideB: 0, strideC: m * n, dtypeA: spec.dtypeA, dtypeB: spec.dtypeB, dtypeC: spec.outDtype,
    alpha: 1, beta: 0, activation: spec.activation,
    ...(spec.bias ? { bias: new Float32Array(0), biasDtype: 'f32' as const } : {}),
  };
}
