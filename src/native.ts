// The raw surface of the native addons, in one place: the CPU addon (built by npm install) and the
// optional GPU addons (gemmkit_cuda.node, gemmkit_hip.node; npm run build:cuda / build:hip), which
// share one surface (NativeSurface) and add device memory. Everything here trusts its caller: the
// public API (matmul.ts and friends) validates user input and builds the flat ProblemDesc. The addons
// re-check buffer bounds, so a bug above can give an error but never an out-of-bounds access.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { DType } from './dtype.js';

export type Activation = 'none' | 'relu' | 'gelu' | 'silu';
export const ACTIVATIONS: readonly Activation[] = ['none', 'relu', 'gelu', 'silu'];

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
  // Typed arrays (host memory) for every addon; device buffers for a GPU addon, which also stages
  // typed arrays through device memory for the call.
  a?: Float32Array | Uint16Array | NativeDeviceBuffer;
  b?: Float32Array | Uint16Array | NativeDeviceBuffer;
  c?: Float32Array | Uint16Array | NativeDeviceBuffer;
  bias?: Float32Array | Uint16Array | NativeDeviceBuffer;
  /** A prepack() handle replacing b; k, n and dtypeB must be the weight's. */
  packedB?: NativePackedWeight;
  /**
   * Problems without buffers (timing, heuristic, supports): B is prepacked in this layout
   * ("<kernel id>.kc<KC>"); the backend packs its own copies to time it.
   */
  packedLayout?: string;
}

/** The ops beyond GEMM: OpKind numbers of native/core/ops.h. */
export const OP_KINDS = {
  embedding: 0, rmsNorm: 1, layerNorm: 2, rope: 3, kvStore: 4, attention: 5, softmax: 6, swiglu: 7, add: 8, activate: 9,
  argmax: 10, cast: 11,
} as const;
export type OpKindName = keyof typeof OP_KINDS;

/** A GPU addon's memory operand: a device buffer and the byte offset of the operand's first element. */
export interface DeviceOperand {
  buffer: NativeDeviceBuffer;
  byteOffset: number;
}

/**
 * One op, flattened: OpDesc of native/core/ops.h field for field (an absent number is 0, an absent dtype
 * 'f32'), plus its operands. Memory operands are typed arrays whose first element is the operand's first
 * element on the CPU addon, DeviceOperands on a GPU addon; the small int arrays are host Int32Arrays on
 * every addon. The addon checks every extent against its buffer and every index before running.
 */
export interface OpDesc {
  kind: number;
  rows: number;
  cols: number;
  ldx?: number;
  ldy?: number;
  ldout?: number;
  dtypeX?: DType;
  dtypeY?: DType;
  dtypeOut?: DType;
  dtypeWeight?: DType;
  eps?: number;
  activation?: Activation;
  vocab?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  batch?: number;
  tokens?: number;
  slots?: number;
  capacity?: number;
  ropePositions?: number;
  scale?: number;
  device?: number;
  x?: Float32Array | Uint16Array | DeviceOperand;
  y?: Float32Array | Uint16Array | DeviceOperand;
  out?: Float32Array | Uint16Array | DeviceOperand;
  weight?: Float32Array | Uint16Array | DeviceOperand;
  bias?: Float32Array | Uint16Array | DeviceOperand;
  kCache?: Float32Array | DeviceOperand;
  vCache?: Float32Array | DeviceOperand;
  ids?: Int32Array;
  positions?: Int32Array;
  slotIndex?: Int32Array;
  past?: Int32Array;
  idsOut?: Int32Array;
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

/** Device memory from a GPU addon's alloc(): an opaque handle, freed by free() or when collected. */
export interface NativeDeviceBuffer {
  readonly __gemmkitDeviceBuffer: unique symbol;
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

/** What every addon's info() has: its backends with their devices, and what can change a tuned result. */
export interface NativeBackendInfo {
  backends: { name: string; devices: NativeDevice[] }[];
  libraries: NativeLibrary[];
  threads: number;
  compiler: string;
}

export interface NativeInfo extends NativeBackendInfo {
  cpu: { model: string; cores: number; features: string[] };
  kernels: NativeKernel[];
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

/** The surface every addon has; the tuner and matmul need nothing more (a backend is this plus a name). */
export interface NativeSurface {
  info(): NativeBackendInfo;
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
}

/** The CPU addon. */
export interface NativeAddon extends NativeSurface {
  info(): NativeInfo;
  /**
   * The float64 reference GEMM on desc's buffers (CPU addon): writes c rounded to its dtype and, when
   * given, the unrounded result and the root-sum-square magnitude of the summed terms ([batch, m, n]).
   */
  referenceAsync(desc: ProblemDesc, c64?: Float64Array, scale64?: Float64Array): Promise<void>;
  prepack(desc: WeightDesc): NativePackedWeight;
  /** The blocked config a weight for this problem is packed for when none is named. */
  defaultPackedConfig(desc: ProblemDesc): string;
  /** Runs one op beyond GEMM on typed arrays. */
  opSync(desc: OpDesc): void;
  /** The same on the libuv thread pool. */
  opAsync(desc: OpDesc): Promise<void>;
}

export type GpuBackendName = 'cuda' | 'hip';
export const GPU_BACKENDS: readonly GpuBackendName[] = ['cuda', 'hip'];

export interface NativeGpuDevice extends NativeDevice {
  index: number;
  /** The most shared memory (CUDA) or LDS (AMD) one block may use. */
  sharedBytesPerBlock: number;
  /** The config tables this device runs (sm90a, sm80, gfx942, ...), its own first. */
  tables: string[];
  /** How many compiled kernel configurations it runs. */
  kernels: number;
}

export interface NativeGpuInfo extends NativeBackendInfo {
  backends: { name: string; devices: NativeGpuDevice[] }[];
  gpu: {
    backend: GpuBackendName;
    runtimeVersion: string;
    /** '' without a driver. */
    driverVersion: string;
    /** The architectures the kernels were compiled for: '80,90a', 'gfx942,gfx90a'. */
    builtArchs: string;
    /** Why there are no devices ('' when there are). */
    unavailable: string;
  };
}

/** One GPU kernel configuration (native/gpu/gpu_config.h): the fields of its canonical name. */
export interface NativeGpuConfig {
  name: string;
  arch: string;
  input: 'any' | 'f32' | 'f16' | 'bf16';
  family: 'simt' | 'mma' | 'wgmma' | 'mfma' | 'skinny';
  tileM: number;
  tileN: number;
  tileK: number;
  warps: number;
  stages: number;
  splitK: number;
  group: number;
  threads: number;
  sharedBytes: number;
  /** configs() only: whether this build compiled it. */
  compiled?: boolean;
}

/** A GPU addon: the common surface on device buffers (or staged typed arrays), plus device memory. */
export interface NativeGpuAddon extends NativeSurface {
  info(): NativeGpuInfo;
  /** Device memory; an Error with code GEMMKIT_OUT_OF_MEMORY when the device has too little. */
  alloc(device: number, bytes: number): NativeDeviceBuffer;
  /** Lets go of the memory now (work in flight keeps it until done); later use is a TypeError. */
  free(buffer: NativeDeviceBuffer): void;
  bufferInfo(buffer: NativeDeviceBuffer): { freed: boolean; device: number; bytes: number };
  /** Synchronous copies through the device's stream; offsets in bytes. */
  upload(buffer: NativeDeviceBuffer, source: ArrayBufferView, byteOffset?: number): void;
  download(buffer: NativeDeviceBuffer, destination: ArrayBufferView, byteOffset?: number): void;
  copy(destination: NativeDeviceBuffer, source: NativeDeviceBuffer, bytes: number, dstOffset?: number, srcOffset?: number): void;
  synchronize(device: number): void;
  /** Every row of this vendor's config tables. */
  configs(): NativeGpuConfig[];
  /** The fields of a config name; a RangeError (or Error) says what is wrong with a bad one. */
  parseConfig(name: string): NativeGpuConfig;
  /** Runs one op beyond GEMM on device memory (absent from GPU addons built before the ops). */
  opSync?(desc: OpDesc): void;
  opAsync?(desc: OpDesc): Promise<void>;
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

/** Whether a GPU addon is here, loaded and has devices; `reason` says why not. */
export interface GpuAddonStatus {
  name: GpuBackendName;
  /** The addon file looked for. */
  path: string;
  /** Set when the addon loaded (it may still have no device). */
  addon?: NativeGpuAddon;
  devices: number;
  /** Why the backend cannot run GEMMs here: not built, failed to load, or no device. */
  reason?: string;
}

const TOOLKIT: Record<GpuBackendName, string> = { cuda: 'the CUDA toolkit (nvcc)', hip: 'ROCm or clang with HIP (see README)' };

/** Where the GPU addon is looked for: GEMMKIT_CUDA_ADDON / GEMMKIT_HIP_ADDON, else what npm run build:<name> makes. */
export function gpuAddonPath(name: GpuBackendName): string {
  const env = process.env[name === 'cuda' ? 'GEMMKIT_CUDA_ADDON' : 'GEMMKIT_HIP_ADDON'];
  return env !== undefined && env !== '' ? env : `${packageRoot}build-${name}/Release/gemmkit_${name}.node`;
}

/** Loads a GPU addon from `path` (not cached; never throws: a failure is the status's reason). */
export function loadGpuAddon(name: GpuBackendName, path = gpuAddonPath(name)): GpuAddonStatus {
  if (!existsSync(path)) {
    return {
      name, path, devices: 0,
      reason: `not built: no ${path}; build it with \`npm run build:${name}\` on a machine with ${TOOLKIT[name]}`,
    };
  }
  let addon: NativeGpuAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeGpuAddon;
    if (typeof addon?.info !== 'function' || typeof addon.alloc !== 'function') throw new Error('it is not a gemmkit GPU addon');
    const info = addon.info();
    const devices = info.backends.find((b) => b.name === name)?.devices.length ?? 0;
    if (info.gpu?.backend !== name) throw new Error(`it is the ${info.gpu?.backend} addon, not ${name}`);
    return { name, path, addon, devices, ...(devices === 0 ? { reason: info.gpu.unavailable || `no ${name.toUpperCase()} device` } : {}) };
  } catch (e) {
    return { name, path, devices: 0, reason: `the addon ${path} failed to load: ${(e as Error).message}` };
  }
}

const gpuStatuses = new Map<GpuBackendName, GpuAddonStatus>();

/** The GPU addon's status, loaded once per process. */
export function gpuAddonStatus(name: GpuBackendName): GpuAddonStatus {
  let status = gpuStatuses.get(name);
  if (!status) {
    status = loadGpuAddon(name);
    gpuStatuses.set(name, status);
  }
  return status;
}

/** The GPU addon when it has a device; else an Error naming the reason (for `where`). */
export function gpuNative(name: GpuBackendName, where: string): NativeGpuAddon {
  const s = gpuAddonStatus(name);
  if (s.addon && s.devices > 0) return s.addon;
  const hint = s.reason?.includes('npm run build') ? '' : ` (info() lists the GPU backends; \`npm run build:${name}\` builds this one)`;
  throw new Error(`${where}: backend '${name}' is not available: ${s.reason}${hint}`);
}

/**
 * Replaces a GPU backend's addon for this process (tests use an emulated one to exercise device tensors
 * on machines without a GPU); undefined forgets it, so the next use loads the real addon again.
 */
export function setGpuAddonForTesting(name: GpuBackendName, addon: NativeGpuAddon | undefined): void {
  if (addon === undefined) {
    gpuStatuses.delete(name);
    return;
  }
  const devices = addon.info().backends.find((b) => b.name === name)?.devices.length ?? 0;
  gpuStatuses.set(name, { name, path: '(set for testing)', addon, devices, ...(devices === 0 ? { reason: `no ${name} device` } : {}) });
}
