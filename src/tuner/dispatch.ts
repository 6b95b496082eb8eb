// Tuned dispatch: which config matmul runs. The tuned table comes from GEMMKIT_TUNED_FILE (one or more
// files, ':'-separated; the faster row wins per key) or setTunedFile(). A call looks up its exact key,
// then the padded-M bucket (the smallest tuned M >= its M, at most BUCKET_MAX_FACTOR times larger, with
// everything else equal), then falls back to the backend's heuristic. With GEMMKIT_RECORD_UNTUNED set,
// every key without an exact row is recorded for tuning.
import type { Tensor } from '../tensor.js';
import { type MatmulOptions, prepareMatmul, resolveBackend } from '../matmul.js';
import type { NativeAddon, ProblemDesc } from '../native.js';
import { type GemmSpec, describeSpec, keyString, keyWithoutM } from './key.js';
import { recordUntuned } from './record.js';
import { type TunedRow, TunedFileError, betterRow, currentValidators, readTunedFile, validatorMismatch } from './tuned_file.js';

/** An untuned M uses the row of the next larger tuned M only up to this factor (M=20 may use M=32). */
export const BUCKET_MAX_FACTOR = 2;

class TunedTable {
  private readonly exact = new Map<string, TunedRow>();
  private readonly tunedMs = new Map<string, number[]>(); // key without M -> sorted tuned Ms

  add(row: TunedRow): void {
    const key = keyString(row);
    const have = this.exact.get(key);
    if (have && !betterRow(row, have)) return;
    this.exact.set(key, row);
    if (!have) {
      const k = keyWithoutM(row);
      const ms = this.tunedMs.get(k) ?? [];
      ms.push(row.m);
      ms.sort((x, y) => x - y);
      this.tunedMs.set(k, ms);
    }
  }

  get size(): number {
    return this.exact.size;
  }

  lookup(spec: GemmSpec): { row: TunedRow; bucket: boolean } | undefined {
    const withoutM = keyWithoutM(spec);
    const row = this.exact.get(`${withoutM}|${spec.m}`);
    if (row) return { row, bucket: false };
    const ms = this.tunedMs.get(withoutM);
    if (!ms) return undefined;
    for (const m of ms) {
      if (m >= spec.m) {
        if (m > spec.m * BUCKET_MAX_FACTOR) return undefined;
        return { row: this.exact.get(`${withoutM}|${m}`)!, bucket: true };
      }
    }
    return undefined;
  }
}

/** What setTunedFile() made of each file. */
export interface TunedFileStatus {
  path: string;
  backend?: string;
  rows: number;
  used: boolean;
  /** Why the file is not used (validator mismatch, backend not loaded). */
  reason?: string;
}

let tables: Map<string, TunedTable> | undefined; // backend -> table; undefined until first needed
let fileStatus: TunedFileStatus[] = [];
let recordPath: string | undefined;
const warned = new Set<string>();

function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  process.emitWarning(message, 'GemmkitWarning');
}

function loadFiles(paths: string[], strict: boolean): void {
  const next = new Map<string, TunedTable>();
  const status: TunedFileStatus[] = [];
  for (const path of paths) {
    let file;
    try {
      file = readTunedFile(path);
    } catch (e) {
      if (strict) throw e;
      warnOnce(`GEMMKIT_TUNED_FILE: ${(e as Error).message}; the file is not used`);
      status.push({ path, rows: 0, used: false, reason: (e as Error).message });
      continue;
    }
    const backend = file.validators.backend;
    let reason: string | undefined;
    try {
      reason = validatorMismatch(path, file.validators, currentValidators(resolveBackend('setTunedFile', backend), backend));
    } catch (e) {
      reason = `tuned file ${path} is for backend '${backend}', which is not available here (${(e as Error).message}); it is not used`;
    }
    if (reason) {
      warnOnce(reason);
      status.push({ path, backend, rows: file.rows.length, used: false, reason });
      continue;
    }
    const table = next.get(backend) ?? new TunedTable();
    for (const row of file.rows) table.add(row);
    next.set(backend, table);
    status.push({ path, backend, rows: file.rows.length, used: true });
  }
  tables = next;
  fileStatus = status;
}

function ensureLoaded(): Map<string, TunedTable> {
  if (tables === undefined) {
    recordPath = process.env.GEMMKIT_RECORD_UNTUNED || undefined;
    const env = process.env.GEMMKIT_TUNED_FILE;
    loadFiles(env ? env.split(':').filter((p) => p !== '') : [], false);
  }
  return tables!;
}

/**
 * Loads tuned files for matmul's dispatch, replacing GEMMKIT_TUNED_FILE and any earlier call; null or []
 * clears the table. Throws TunedFileError (naming file and line) when a file is missing or malformed; a
 * file made for another machine (validators differ) is reported once as a warning and not used.
 */
export function setTunedFile(paths: string | readonly string[] | null): TunedFileStatus[] {
  if (paths !== null && typeof paths !== 'string' && !Array.isArray(paths)) {
    throw new TypeError(`setTunedFile: paths must be a file path, an array of paths or null, got ${typeof paths}`);
  }
  const list = paths === null ? [] : typeof paths === 'string' ? paths.split(':').filter((p) => p !== '') : [...paths];
  for (const p of list) {
    if (typeof p !== 'string' || p === '') throw new TypeError('setTunedFile: every path must be a non-empty string');
  }
  ensureLoaded();
  loadFiles(list, true);
  return fileStatus.map((s) => ({ ...s }));
}

/** The files behind the current tuned table, and whether each is used. */
export function tunedFiles(): TunedFileStatus[] {
  ensureLoaded();
  return fileStatus.map((s) => ({ ...s }));
}

function specOf(desc: ProblemDesc): GemmSpec {
  return {
    m: desc.m, n: desc.n, k: desc.k, dtypeA: desc.dtypeA, dtypeB: desc.dtypeB, outDtype: desc.dtypeC,
    transA: desc.transA, transB: desc.transB, bias: desc.bias !== undefined, activation: desc.activation,
  };
}

export interface Explanation {
  backend: string;
  /** The config that runs. */
  config: string;
  /** forced: opts.config; tuned: the exact key's row; bucket: a padded-M row; default: the heuristic. */
  source: 'forced' | 'tuned' | 'bucket' | 'default';
  reason: string;
  /** The call's tuned-table key. */
  key: string;
  /** The row used (tuned and bucket), with the file and line it came from. */
  row?: TunedRow;
}

function decide(native: NativeAddon, desc: ProblemDesc, forced: string | undefined): Explanation {
  const spec = specOf(desc);
  const key = `${desc.backend}|${keyString(spec)}`;
  if (forced) return { backend: desc.backend, config: forced, source: 'forced', reason: 'opts.config names the config', key };
  const table = ensureLoaded().get(desc.backend);
  const heuristic = () => native.heuristic(desc);
  if (desc.batch !== 1) {
    return { backend: desc.backend, config: heuristic(), source: 'default', reason: 'batched GEMMs are not tuned; the heuristic picks', key };
  }
  const hit = table?.lookup(spec);
  if (hit) {
    const where = `${hit.row.file}:${hit.row.line}`;
    return hit.bucket
      ? { backend: desc.backend, config: hit.row.config, source: 'bucket', row: hit.row, key,
          reason: `M=${spec.m} is not tuned; using the row for M=${hit.row.m} (${where}), the nearest tuned M within ${BUCKET_MAX_FACTOR}x` }
      : { backend: desc.backend, config: hit.row.config, source: 'tuned', row: hit.row, key, reason: `tuned row ${where}` };
  }
  const files = fileStatus.filter((f) => f.used).length;
  return {
    backend: desc.backend, config: heuristic(), source: 'default', key,
    reason: files === 0 ? 'no tuned file is loaded (GEMMKIT_TUNED_FILE or setTunedFile); the heuristic picks'
      : `${describeSpec(spec)} is not in the tuned table and no tuned M within ${BUCKET_MAX_FACTOR}x above M=${spec.m}; the heuristic picks`,
  };
}

/**
 * The config a matmul call without opts.config runs: the tuned row's, or '' for the backend's heuristic.
 * Cheap when nothing is tuned or recorded (one Map lookup otherwise); records misses when asked.
 */
export function dispatchConfig(native: NativeAddon, desc: ProblemDesc): string {
  const loaded = ensureLoaded();
  const table = loaded.get(desc.backend);
  if (!table && recordPath === undefined) return '';
  if (desc.batch !== 1) return '';
  const spec = specOf(desc);
  const hit = table?.lookup(spec);
  if (recordPath !== undefined && (!hit || hit.bucket) && desc.m > 0 && desc.n > 0 && desc.k > 0) {
    recordUntuned(recordPath, desc.backend, spec);
  }
  return hit ? hit.row.config : '';
}

/** Which config matmul(a, b, opts) would run, and why (tuned, bucket, default or forced). */
export function explain(a: Tensor, b: Tensor, opts?: MatmulOptions): Explanation {
  const { native, desc } = prepareMatmul('explain', a, b, opts, false);
  return decide(native, desc, opts?.config);
}

export { TunedFileError };
