// prepack: a weight packed once in the layout of the CPU kernel that will read it, for matmul's b.
// Inference weights are constant, so packing them once removes packing (transposition, dtype widening)
// from every call. Results equal the unpacked call with the same config bit for bit.
import { type DType, isDType } from './dtype.js';
import { checkOptions, formatShape, shapeSize } from './errors.js';
import { type NativePackedWeight, type ProblemDesc, cpuNative } from './native.js';
import { Tensor, checkTensorData, describeValue } from './tensor.js';
import { type PreparedWeightRef, preparedWeightRef, tunedPackFailed, tunedPackedConfig } from './tuner/dispatch.js';
import type { TunedRow } from './tuner/tuned_file.js';

export interface PrepackOptions {
  /** The weight is stored [N, K] and applied as x @ W^T (matmul's transB). Default false: stored [K, N]. */
  transB?: boolean;
  /**
   * dtype of the inputs `a` it will mostly be multiplied with (default: the weight's dtype). It picks the
   * kernel: bf16 weights used with bf16 inputs get the bf16 kernels (AMX / AVX512-BF16), anything else the
   * f32 ones. Other inputs still work: a bf16 panel meets f32/f16 inputs through the kept source, or
   * without it through an f32 kernel that widens the panel as it packs (see README "Prepacked weights").
   */
  inputDtype?: DType;
  /**
   * A blocked-GEMM config name (as matmul's config) whose kernel and kc fix the layout. Default: the
   * layout of the loaded tuned table's winner for this weight at its largest tuned M (see `npm run tune
   * -- --prepacked` / `--model`), else the heuristic's.
   */
  config?: string;
  /**
   * Keep the weight so calls whose best config reads B as stored (GEMV for small M, a system BLAS) can
   * run on it. Default true; false lets the source be collected, and every call then runs on the packed
   * panel. Calls never depend on memory JS can take away: the weight's memory is pinned in place when
   * gemmkit allocated it (tensor, zeros, GEMM results, toDType, ... of 64 KiB and more), and otherwise
   * (new Tensor over an array of the caller's, small tensors) copied once, at prepack, into memory only
   * the PackedWeight reaches.
   */
  keepSource?: boolean;
}

const PREPACK_KEYS = new Set(['transB', 'inputDtype', 'config', 'keepSource']);

/** A weight in a kernel's packed layout; pass it to matmul / matmulSync as `b`. */
export class PackedWeight {
  /** dtype of the weight it was packed from. */
  readonly dtype: DType;
  /** Shape of the weight as stored when packed ([N, K] with transB, else [K, N]). */
  readonly shape: readonly number[];
  readonly transB: boolean;
  /** op(B) is [k, n]. */
  readonly k: number;
  readonly n: number;
  /** "<kernel id>.kc<KC>": the kernel and depth block every config using this weight must have. */
  readonly layout: string;
  readonly #handle: NativePackedWeight;
  #source: Tensor | undefined;
  #ref?: PreparedWeightRef;

  /** @internal Use prepack(). */
  constructor(handle: NativePackedWeight, dtype: DType, shape: readonly number[], transB: boolean, source?: Tensor) {
    this.#handle = handle;
    this.#source = source;
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.transB = transB;
    this.k = transB ? shape[1] : shape[0];
    this.n = transB ? shape[0] : shape[1];
    this.layout = handle.layout ?? '';
  }

  /** Bytes of packed data held now: 0 once disposed. */
  get bytes(): number {
    return this.#handle.bytes;
  }

  /**
   * The weight prepack() was given, when kept (keepSource); undefined without keepSource and once
   * disposed. Calls read the memory prepack() pinned or copied (see PrepackOptions.keepSource), so
   * disposing or detaching this tensor does not affect them.
   */
  get source(): Tensor | undefined {
    return this.#source;
  }

  get disposed(): boolean {
    return this.#handle.disposed;
  }

  /**
   * Frees the packed data and the kept copy of the source, and lets go of the source, now instead of at
   * collection (the source tensor itself is the caller's: it is only no longer referenced). Calls
   * already running finish normally on memory they hold. Idempotent.
   */
  dispose(): void {
    this.#handle.dispose();
    this.#source = undefined;
  }

  /** @internal What tuned dispatch needs to know of this weight. */
  dispatchRef(): PreparedWeightRef {
    // One object per weight: dispatch keeps its choices for this weight keyed by it.
    this.#ref ??= preparedWeightRef(this.layout, this.dtype, this.#source !== undefined);
    return this.#ref;
  }

  /**
   * @internal For a config that reads B as stored: a RangeError naming the caller and the config when no
   * source was kept (the handle, given packedSource, reads the source it pinned).
   */
  checkSource(where: string, config: string | undefined): void {
    if (!this.#handle.disposed && !this.#source) {
      throw new RangeError(`${where}: config ${JSON.stringify(config)} reads the weight as stored, but b is a PackedWeight made with keepSource: false`);
    }
  }

  /** @internal The native handle, or a TypeError naming the caller when disposed (as for a disposed Tensor). */
  nativeHandle(where: string): NativePackedWeight {
    if (this.#handle.disposed) {
      throw new TypeError(`${where}: b is a PackedWeight (${formatShape(this.shape)} ${this.dtype}, ${this.layout}) that was disposed`);
    }
    return this.#handle;
  }
}

/**
 * Packs `weight` for the CPU kernel that will multiply it, once. `weight` is [K, N], or [N, K] with
 * transB (a Linear weight [out, in] applied as x @ W^T).
 */
export function prepack(weight: Tensor, opts?: PrepackOptions): PackedWeight {
  const where = 'prepack';
  if (!(weight instanceof Tensor)) throw new TypeError(`${where}: weight must be a Tensor, got ${describeValue(weight)}`);
  const o = checkOptions(where, opts, PREPACK_KEYS) as PrepackOptions;
  if (o.transB !== undefined && typeof o.transB !== 'boolean') {
    throw new TypeError(`${where}: transB must be a boolean, got ${describeValue(o.transB)}`);
  }
  if (o.inputDtype !== undefined && !isDType(o.inputDtype)) {
    throw new TypeError(`${where}: inputDtype must be 'f32', 'f16' or 'bf16', got ${JSON.stringify(o.inputDtype)}`);
  }
  if (o.keepSource !== undefined && typeof o.keepSource !== 'boolean') {
    throw new TypeError(`${where}: keepSource must be a boolean, got ${describeValue(o.keepSource)}`);
  }
  if (o.config !== undefined && (typeof o.config !== 'string' || o.config.length === 0)) {
    throw new TypeError(`${where}: config must be a non-empty config name, got ${JSON.stringify(o.config)}`);
  }
  checkTensorData(`${where}: weight`, weight.dtype, weight.shape, weight.data, shapeSize(`${where}: weight`, weight.shape));
  if (weight.shape.length !== 2) {
    throw new RangeError(`${where}: weight is ${formatShape(weight.shape)}; expected a 2-D [K, N] (or [N, K] with transB)`);
  }
  const transB = o.transB ?? false;
  const [rows, cols] = weight.shape;
  const k = transB ? cols : rows, n = transB ? rows : cols;
  const native = cpuNative();
  const keepSource = o.keepSource !== false;
  const pack = (config: string) => native.prepack({ config, k, n, transB, ldb: Math.max(1, cols), dtypeB: weight.dtype, b: weight.data, keepSource });
  let handle: NativePackedWeight;
  if (o.config !== undefined) {
    try {
      handle = pack(o.config);
    } catch (e) {
      // A well-formed config that cannot pack this weight (a GEMV config, a bf16 kernel for an f32 weight,
      // a kernel this CPU lacks) is a wrong argument, as for matmul's config.
      if ((e as { code?: string }).code !== 'GEMMKIT_UNSUPPORTED') throw e;
      throw new RangeError(`${where}: config ${JSON.stringify(o.config)} cannot pack this weight: ${(e as Error).message}`);
    }
  } else {
    // The layout of the tuned winner for inputs of this dtype times this weight, else the blocked kernel
    // the heuristic would use for them.
    const dtypeA = o.inputDtype ?? weight.dtype;
    // The layout is planned for a call of one row; for an empty weight, of none (nothing is indexed, so N
    // or K may be huge: [0, 2^53 - 1]).
    const desc: ProblemDesc = {
      backend: 'cpu', m: k === 0 || n === 0 ? 0 : 1, n, k, batch: 1, transA: false, transB,
      lda: Math.max(1, k), ldb: Math.max(1, cols), ldc: Math.max(1, n), strideA: 0, strideB: 0, strideC: 0,
      dtypeA, dtypeB: weight.dtype, dtypeC: 'f32', alpha: 1, beta: 0, activation: 'none',
    };
    const row = tunedPackedConfig(native, desc);
    const packTuned = (r: TunedRow) => {
      try {
        return pack(r.config);
      } catch (e) {
        // Checked when its file was loaded, yet it cannot pack: the row goes, the heuristic's layout is used.
        if ((e as { code?: string }).code !== 'GEMMKIT_UNSUPPORTED' && !(e instanceof RangeError)) throw e;
        tunedPackFailed('cpu', r, e as Error);
        return undefined;
      }
    };
    handle = (row && packTuned(row)) ?? pack(native.defaultPackedConfig(desc));
  }
  return new PackedWeight(handle, weight.dtype, weight.shape, transB, keepSource ? weight : undefined);
}
