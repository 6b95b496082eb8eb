// The raw surface of the native addon, in one place. Everything here trusts its caller: the public API
// (matmul.ts and friends) validates user input and builds the flat ProblemDesc. The addon re-checks
// buffer bounds, so a bug above can give an error but never an out-of-bounds access.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { DType } from './dtype.js';

export type Activation = 'none' | 'relu' | 'gelu' | 'silu';

/** One GEMM, flattened: C[b] = act(alpha * op(A[b]) op(B[b]) + beta * C[b] + bias), row-major. */
export interface ProblemDesc {
  backend: string;
  device?: number; // device index for backends with several (the CPU backend has one and ignores it)
  config?: string; // canonical config name; empty or absent: the backend's heuristic
  m: number;
  n: number;
  k: number;
  batch: number;
  transA: boolean;
  transB: boolean;
  lda: number;
  ldb: number;
  ldc: number;
  strideA: number; // batch strides in elements; 0 broadcasts one matrix to every batch item
  strideB: number;
  strideC: number;
  dtypeA: DType;
  dtypeB: DType;
  dtypeC: DType;
  alpha: number;
  beta: number;
  activation: Activation;
  biasDtype?: DType;
  a?: Float32Array | Uint16Array;
  b?: Float32Array | Uint16Array;
  c?: Float32Array | Uint16Array;
  bias?: Float32Array | Uint16Array;
  /** A prepack() handle replacing b; k, n and dtypeB must be the weight's. */
  packedB?: NativePackedWeight;
  /**
   * Problems without buffers (timing, heuristic, supports): B is prepacked in this layout
   * ("<kernel id>.kc<KC>"); the backend packs its own copies to time it.
   */
  packedLayout?: string;
}

/** The weight given to prepack(), as the B operand of a problem: op(B) is [k, n]. */
export interface WeightDesc {
  config: string; // blocked-GEMM config whose kernel and kc fix the packed layout
  k: number;
  n: number;
  transB: boolean;
  ldb: number;
  dtypeB: DType;
  b: Float32Array | Uint16Array;
}

/** The native object holding a packed weight; its memory goes when it is collected or disposed. */
export interface NativePackedWeight {
  /** "<kernel id>.kc<KC>", null once disposed. */
  readonly layout: string | null;
  readonly bytes: number;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeDevice {
  name: string;
  arch: string;
  computeUnits: number;
  memoryBytes: number;
}

export interface NativeKernel {
  id: string;
  isa: string;
  mr: number;
  nr: number;
  available: boolean;
  /** 'blocked' (packed Goto/BLIS frame) or 'gemv' (weight streaming for small M). */
  family: 'blocked' | 'gemv';
  /** kc of its configs must be a multiple of this (packed depth is padded to it). */
  kAlign: number;
  /** 'any' dtype (converted while packing), or 'bf16': only problems whose a and b are both bf16. */
  inputs: 'any' | 'bf16';
}

/** A library whose version can change tuning results (the CPU addon: each system BLAS it loaded). */
export interface NativeLibrary {
  name: string;
  version: string;
  path: string;
  config: string; // the candidate config that runs it
}

export interface NativeInfo {
  cpu: { model: string; cores: number; features: string[] };
  threads: number;
  kernels: NativeKernel[];
  backends: { name: string; devices: NativeDevice[] }[];
  libraries: NativeLibrary[];
  compiler: string;
}

/** How timeConfig runs a configuration: untimed runs, timed runs, rotating input bytes, time bound. */
export interface NativeTimingOptions {
  warmup: number;
  iterations: number;
  /** Inputs rotate through copies totalling at least this many bytes (0: one copy, cache-hot). */
  rotatingBytes: number;
  /** Stop after this many milliseconds once one run was timed (0: run every iteration). */
  maxMs: number;
}

export interface NativeAddon {
  info(): NativeInfo;
  matmulSync(desc: ProblemDesc): void;
  matmulAsync(desc: ProblemDesc): Promise<void>;
  heuristic(desc: ProblemDesc): string;
  candidates(desc: ProblemDesc): string[];
  /** null when `config` can run the problem on this machine, else the reason it cannot. */
  supports(desc: ProblemDesc, config: string): string | null;
  /**
   * The prepacked layout `config` reads B in, or null when it reads B as stored (prepacking does not
   * apply to it). Absent on backends without prepacked weights.
   */
  packedLayout?(backend: string, config: string): string | null;
  /** Per-iteration microseconds of `config` on inputs the backend allocates (desc needs no buffers). */
  timeConfig(desc: ProblemDesc, config: string, opts: NativeTimingOptions): Promise<number[]>;
  /**
   * The float64 reference GEMM on desc's buffers (CPU addon): writes c rounded to its dtype and, when
   * given, the unrounded result and the root-sum-square magnitude of the summed terms ([batch, m, n]).
   */
  referenceAsync(desc: ProblemDesc, c64?: Float64Array, scale64?: Float64Array): Promise<void>;
  prepack(desc: WeightDesc): NativePackedWeight;
  /** The blocked config a weight for this problem is packed for when none is named. */
  defaultPackedConfig(desc: ProblemDesc): string;
}

export const packageRoot = fileURLToPath(new URL('..', import.meta.url));

let cpuAddon: NativeAddon | undefined;
let cpuLoadError: Error | undefined;

/** The CPU addon (built by `npm install`); throws with instructions when it cannot be loaded. */
export function cpuNative(): NativeAddon {
  if (cpuAddon) return cpuAddon;
  if (!cpuLoadError) {
    try {
      const require = createRequire(import.meta.url);
      const load = require('node-gyp-build') as (dir: string) => NativeAddon;
      cpuAddon = load(packageRoot);
      warnAboutThreadSetting(cpuAddon);
      return cpuAddon;
    } catch (e) {
      cpuLoadError = new Error(
        `gemmkit: the native CPU addon could not be loaded from ${packageRoot} (${(e as Error).message}). ` +
          'Build it with `npm install` (or `npm run build`); it needs python3 and a C++17 compiler.',
      );
    }
  }
  throw cpuLoadError;
}

// The pool falls back to the core count when GEMMKIT_NUM_THREADS is unusable; say so once.
function warnAboutThreadSetting(addon: NativeAddon): void {
  const v = process.env.GEMMKIT_NUM_THREADS;
  if (v === undefined || v === '') return;
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || n < 1 || n > 4096) {
    process.emitWarning(`GEMMKIT_NUM_THREADS=${JSON.stringify(v)} is not an integer in [1, 4096]; using ${addon.info().threads} threads`, 'GemmkitWarning');
  }
}
