// Tuned dispatch: which config matmul runs. The tuned table comes from GEMMKIT_TUNED_FILE (one or more
// files, ':'-separated; the faster row wins per key) or setTunedFile(). A call looks up its exact key,
// then the padded-M bucket (the smallest tuned M >= its M, at most BUCKET_MAX_FACTOR times larger, with
// everything else equal), then falls back to the backend's heuristic. With GEMMKIT_RECORD_UNTUNED set,
// every key without an exact row is recorded for tuning.
import type { PackedWeight } from '../prepack.js';
import type { Tensor } from '../tensor.js';
import { type MatmulOptions, prepareMatmul, resolveBackend } from '../matmul.js';
import type { DType } from '../dtype.js';
import type { NativeSurface, ProblemDesc } from '../native.js';
import { type GemmSpec, describeSpec, keyString, keyWithoutM, weightKey } from './key.js';
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

  rows(): IterableIterator<TunedRow> {
    return this.exact.values();
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
// Per prepacked weight: problem key -> the choice dispatch() made (see there); reset with the table.
let weightChoices = new WeakMap<PreparedWeightRef, Map<string, Choice>>();
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
  weightChoices = new WeakMap(); // decided against the old table
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

function specOf(desc: ProblemDesc, prepacked: boolean): GemmSpec {
  return {
    m: desc.m, n: desc.n, k: desc.k, dtypeA: desc.dtypeA, dtypeB: desc.dtypeB, outDtype: desc.dtypeC,
    transA: desc.transA, transB: desc.transB, prepacked, bias: desc.bias !== undefined, activation: desc.activation,
  };
}

/** What dispatch needs to know of a prepack()ed b. */
export interface PreparedWeightRef {
  /** The layout the handle holds ("<kernel id>.kc<KC>"). */
  layout: string;
  /** The weight as given to prepack() is kept, so configs that read B as stored can run on it. */
  hasSource: boolean;
  /** The packed panel holds more bytes than the source (bf16 weights packed for f32 activations: 2x). */
  panelLarger: boolean;
}

// Without a tuned row, a prepacked weight runs on its packed panel rather than on its kept source (with
// the GEMV kernel the plain problem's heuristic picks) from these M on: from M = 2 where the panel is no
// larger than the source (1.1-1.5x faster at M = 2..32, README "CPU performance"), from M = 64 where it
// is larger, since below that both stream the weight and the source is fewer bytes (f32 x with a bf16
// weight, 2816x1024 and 4096x4096: source 1.1-1.7x faster at M = 1..32, panel 1.0-1.1x at M = 64..128,
// measured side by side with both forced). M = 1 always reads the source: GEMV streams it at memory speed.
const PANEL_FROM_M = 2;
const LARGER_PANEL_FROM_M = 64;

/** Whether a prepacked weight without a tuned row runs M rows on its panel rather than on its source. */
export function panelBeatsSource(m: number, panelLarger: boolean): boolean {
  return m >= (panelLarger ? LARGER_PANEL_FROM_M : PANEL_FROM_M);
}

/**
 * Whether a panel in `layout` ("<kernel id>.kc<KC>", the kernel id naming its element type second, as in
 * avx512.f32.14x32) holds more bytes per element than a source of `dtypeB`, by more than padding would.
 */
export function panelLargerThanSource(layout: string, dtypeB: DType): boolean {
  const panelBytes = layout.split('.')[1] === 'f32' ? 4 : 2;
  return panelBytes > (dtypeB === 'f32' ? 4 : 2);
}

/**
 * How a prepared weight without a tuned row runs `config`, the plain problem's heuristic pick: on its
 * packed panel or its kept source; or not: 'mismatch' when config reads another packed layout (or reads
 * B as stored and the source was not kept), 'panel' when at this M the packed panel beats reading the
 * source. In those two cases the heuristic for the weight's packed layout runs instead.
 */
export function untunedWeightRun(native: NativeSurface, backend: string, m: number, config: string, weight: PreparedWeightRef):
  'packed' | 'source' | 'mismatch' | 'panel' {
  const layout = packedLayoutOf(native, backend, config);
  if (layout !== null) return layout === weight.layout ? 'packed' : 'mismatch';
  if (!weight.hasSource) return 'mismatch';
  return panelBeatsSource(m, weight.panelLarger) ? 'panel' : 'source';
}

export interface Explanation {
  backend: string;
  /** The config that runs ('' on a plain call: the backend's heuristic, resolved natively). */
  config: string;
  /** forced: opts.config; tuned: the exact key's row; bucket: a padded-M row; default: the heuristic. */
  source: 'forced' | 'tuned' | 'bucket' | 'default';
  reason: string;
  /** The call's tuned-table key. */
  key: string;
  /** The row used (tuned and bucket), with the file and line it came from. */
  row?: TunedRow;
  /** For a prepack()ed b: whether the config reads its packed panel or the weight as stored. */
  weight?: 'packed' | 'source';
}

const layoutCache = new Map<string, string | null>(); // backend|config -> packed layout it reads

/** The prepacked layout `config` reads B in, or null when it reads B as stored (cached per config). */
export function packedLayoutOf(native: NativeSurface, backend: string, config: string): string | null {
  const key = `${backend}|${config}`;
  let layout = layoutCache.get(key);
  if (layout === undefined) {
    layout = native.packedLayout?.(backend, config) ?? null;
    layoutCache.set(key, layout);
  }
  return layout;
}

// The plain problem of a prepacked call, for the heuristic: without the handle it may pick a kernel that
// reads B as stored (GEMV for small M).
function withoutHandle(desc: ProblemDesc): ProblemDesc {
  const { packedB: _packedB, ...plain } = desc;
  return plain;
}

// What decide() settles: an Explanation whose reason is written only when explain() asks for it, so
// matmul's dispatch builds no message strings.
type Decision = Omit<Explanation, 'key' | 'reason'> & { why: () => string };

/**
 * The one decision behind matmul and explain: which config runs, why, and for a prepack()ed b which form
 * of the weight it reads. A prepared weight follows the tuned row (or the heuristic) when that config can
 * run on what the weight holds: its packed layout, or the kept source for configs that read B as stored;
 * otherwise the heuristic for its packed layout runs, and the reason says why. For explain (`explaining`)
 * it fills in the heuristic's config name on plain calls (matmul leaves that to the native side); for
 * matmul it records untuned keys when asked.
 */
function decide(native: NativeSurface, desc: ProblemDesc, spec: GemmSpec, forced: string | undefined,
  weight: PreparedWeightRef | undefined, explaining: boolean): Decision {
  const backend = desc.backend;
  const formFor = (config: string): 'packed' | 'source' | undefined => {
    if (!weight) return undefined;
    const layout = packedLayoutOf(native, backend, config);
    if (layout === null) return weight.hasSource ? 'source' : undefined;
    return layout === weight.layout ? 'packed' : undefined;
  };
  const packedDefault = (why: () => string): Decision => ({
    backend, config: native.heuristic(desc), source: 'default', weight: 'packed',
    why: () => `${why()}; the heuristic for the weight's packed layout ${weight!.layout} runs`,
  });
  if (forced) {
    // A forced config the weight cannot serve runs on the packed panel, where the backend says why not.
    const form = weight ? formFor(forced) ?? 'packed' : undefined;
    return { backend, config: forced, source: 'forced', why: () => 'opts.config names the config', ...(form ? { weight: form } : {}) };
  }
  if (desc.batch !== 1) {
    const config = weight || explaining ? native.heuristic(desc) : '';
    return { backend, config, source: 'default', why: () => 'batched GEMMs are not tuned; the heuristic picks',
      ...(weight ? { weight: 'packed' as const } : {}) };
  }
  const table = ensureLoaded().get(backend);
  const hit = table?.lookup(spec);
  if (!explaining && recordPath !== undefined && (!hit || hit.bucket) && desc.m > 0 && desc.n > 0 && desc.k > 0) {
    recordUntuned(recordPath, backend, spec);
  }
  if (hit) {
    const { row } = hit;
    const where = () => `${row.file}:${row.line}`;
    const form = formFor(row.config);
    if (weight && form === undefined) {
      const wants = packedLayoutOf(native, backend, row.config);
      return packedDefault(() => (wants === null
        ? `tuned row ${where()} (${row.config}) reads the weight as stored, but this PackedWeight keeps only its packed form (keepSource: false)`
        : `tuned row ${where()} (${row.config}) reads a weight packed as ${wants}, but this one is packed as ${weight.layout}`));
    }
    const common = { backend, config: row.config, row, ...(form ? { weight: form } : {}) };
    return hit.bucket
      ? { ...common, source: 'bucket',
          why: () => `M=${spec.m} is not tuned; using the row for M=${row.m} (${where()}), the nearest tuned M within ${BUCKET_MAX_FACTOR}x` }
      : { ...common, source: 'tuned', why: () => `tuned row ${where()}` };
  }
  const why = () => (fileStatus.some((f) => f.used)
    ? `${describeSpec(spec)} is not in the tuned table and no tuned M within ${BUCKET_MAX_FACTOR}x above M=${spec.m}; the heuristic picks`
    : 'no tuned file is loaded (GEMMKIT_TUNED_FILE or setTunedFile); the heuristic picks');
  if (weight) {
    const config = native.heuristic(withoutHandle(desc));
    const run = untunedWeightRun(native, backend, desc.m, config, weight);
    if (run === 'mismatch') return packedDefault(why);
    if (run === 'panel') return packedDefault(() => `${why()}; at M=${desc.m} the packed panel beats reading the source with ${config}`);
    return { backend, config, source: 'default', why, weight: run };
  }
  return { backend, config: explaining ? native.heuristic(desc) : '', source: 'default', why };
}

function choiceOf(d: Decision): Choice {
  return { config: d.config, weight: d.weight };
}

/**
 * What a matmul call without opts.config runs: the tuned row's config, or '' for the backend's heuristic
 * (resolved natively), and for a prepack()ed b which form of the weight to pass. Cheap when nothing is
 * tuned or recorded, one table lookup otherwise; records misses when asked.
 */
export function dispatch(native: NativeSurface, desc: ProblemDesc, weight?: PreparedWeightRef): Choice {
  // Loaded first: loading resets weightChoices, which must not happen between its get and set below.
  const loaded = ensureLoaded();
  if (!weight) {
    if (!loaded.get(desc.backend) && recordPath === undefined) return { config: '' };
    return choiceOf(decide(native, desc, specOf(desc, false), undefined, undefined, false));
  }
  // A prepacked weight meets the same few problems again and again (every decode step makes the same
  // calls), and deciding costs two native heuristic calls (about 5 us, half of a small GEMM's call), so
  // the choice is kept per weight until the tuned table changes. The key holds everything decide() and
  // the heuristics read that the weight does not fix (its n, k, dtype and transB are fixed, and B is 2-D:
  // strideB is 0). A key is recorded (GEMMKIT_RECORD_UNTUNED) when it is first decided; recording it
  // again would change nothing.
  let choices = weightChoices.get(weight);
  if (!choices) weightChoices.set(weight, (choices = new Map()));
  const key = `${desc.backend}|${desc.m}|${desc.batch}|${desc.dtypeA}|${desc.dtypeC}|${desc.transA}|${desc.bias !== undefined}|${desc.activation}`;
  let choice = choices.get(key);
  if (!choice) {
    choice = choiceOf(decide(native, desc, specOf(desc, true), undefined, weight, false));
    choices.set(key, choice);
  }
  return choice;
}

/** What dispatch() returns: the config ('' for the backend's heuristic) and, for a prepacked b, which form runs. */
export interface Choice {
  config: string;
  weight?: 'packed' | 'source';
}

/**
 * The config a weight for `desc` is prepacked for when a tuned table is loaded: the winner of the tuned
 * row with the largest M among the prepacked rows for this weight (same dtypes, transposes, N and K) whose
 * config reads a packed layout. Large M is where packing pays; smaller Ms follow that layout or read the
 * kept source. undefined when no such row exists.
 */
export function tunedPackedConfig(native: NativeSurface, desc: ProblemDesc): string | undefined {
  const table = ensureLoaded().get(desc.backend);
  if (!table) return undefined;
  const weight = weightKey(desc);
  let best: TunedRow | undefined;
  for (const r of table.rows()) {
    if (!r.prepacked || weightKey(r) !== weight) continue;
    if (packedLayoutOf(native, desc.backend, r.config) === null) continue;
    if (!best || r.m > best.m) best = r;
  }
  return best?.config;
}

/**
 * Which config matmul(a, b, opts) would run, and why (tuned, bucket, default or forced); for a
 * prepack()ed b also which form of the weight it reads.
 */
export function explain(a: Tensor, b: Tensor | PackedWeight, opts?: MatmulOptions): Explanation {
  const { native, desc, packed } = prepareMatmul('explain', a, b, opts, false);
  const spec = specOf(desc, packed !== undefined);
  const { why, ...d } = decide(native, desc, spec, opts?.config, packed?.dispatchRef(), true);
  return { ...d, reason: why(), key: `${desc.backend}|${keyString(spec)}` };
}

export { TunedFileError };
