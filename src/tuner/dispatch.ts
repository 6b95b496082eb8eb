// Tuned dispatch: which config matmul runs. The tuned table comes from GEMMKIT_TUNED_FILE (one or more
// files, ':'-separated; the faster row wins per key) or setTunedFile(). A call looks up its exact key,
// then the padded-M bucket (the smallest tuned M >= its M, at most BUCKET_MAX_FACTOR times larger, with
// everything else equal), then falls back to the backend's heuristic. With GEMMKIT_RECORD_UNTUNED set,
// every key without an exact row is recorded for tuning.
//
// A tuned file never stops a service: every row is checked when the file is loaded (the backend's
// supports() on the row's own problem), and a row that cannot run here is reported and skipped; a row
// that fails to run anyway is dropped at its first failure and the heuristic runs its key from then on.
import { resolveBackend } from '../backend.js';
import type { DType } from '../dtype.js';
import { type NativeSurface, type ProblemDesc, cpuNative } from '../native.js';
import { type GemmSpec, describeSpec, keyString, keyWithoutM, specDesc, weightKey } from './key.js';
import { recordUntuned } from './record.js';
import { type TunedRow, TunedFileError, betterRow, currentValidators, readTunedFile, validatorMismatch } from './tuned_file.js';

/** An untuned M uses the row of the next larger tuned M only up to this factor (M=20 may use M=32). */
export const BUCKET_MAX_FACTOR = 2;
/** Rows of one file that cannot run here are warned about one by one up to this many, then counted. */
const ROW_WARNINGS_PER_FILE = 10;

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

  /** Removes `row` when it is still its key's row; whether it was. */
  remove(row: TunedRow): boolean {
    const key = keyString(row);
    if (this.exact.get(key) !== row) return false;
    this.exact.delete(key);
    const k = keyWithoutM(row);
    const ms = this.tunedMs.get(k)!.filter((m) => m !== row.m);
    if (ms.length === 0) this.tunedMs.delete(k);
    else this.tunedMs.set(k, ms);
    return true;
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
  /** Rows in the file. */
  rows: number;
  /** Rows whose config cannot run here (each reported as a warning naming its line, and not used); absent when none. */
  skipped?: number;
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

/** Why `row`'s config cannot run the row's own problem on `native`, or null when it can. */
function rowCannotRun(native: NativeSurface, backend: string, row: TunedRow): string | null {
  try {
    const desc = specDesc(backend, row);
    // A prepacked row's blocked config runs on a weight packed in its own layout (as prepack() makes it).
    const layout = row.prepacked ? native.packedLayout?.(backend, row.config) ?? null : null;
    return native.supports(layout === null ? desc : { ...desc, packedLayout: layout }, row.config);
  } catch (e) {
    return (e as Error).message; // a problem the backend refuses outright (dimensions too large to index)
  }
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
    let native: NativeSurface | undefined;
    let reason: string | undefined;
    try {
      native = resolveBackend('setTunedFile', backend);
      reason = validatorMismatch(path, file.validators, currentValidators(native, backend));
    } catch (e) {
      reason = `tuned file ${path} is for backend '${backend}', which is not available here (${(e as Error).message}); it is not used`;
    }
    if (reason || !native) {
      warnOnce(reason!);
      status.push({ path, backend, rows: file.rows.length, used: false, reason });
      continue;
    }
    const table = next.get(backend) ?? new TunedTable();
    let skipped = 0;
    for (const row of file.rows) {
      const why = rowCannotRun(native, backend, row);
      if (why === null) {
        table.add(row);
        continue;
      }
      if (++skipped <= ROW_WARNINGS_PER_FILE) {
        warnOnce(`tuned file ${path}:${row.line}: config ${row.config} cannot run ${describeSpec(row)} here (${why}); the row is skipped`);
      }
    }
    if (skipped > ROW_WARNINGS_PER_FILE) {
      warnOnce(`tuned file ${path}: ${skipped} rows in all name configs that cannot run here and are skipped (the first ${ROW_WARNINGS_PER_FILE} were reported)`);
    }
    next.set(backend, table);
    status.push({ path, backend, rows: file.rows.length, used: true, ...(skipped > 0 ? { skipped } : {}) });
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
 * Loads tuned files for matmul's dispatch, replacing GEMMKIT_TUNED_FILE and any earlier call: one path,
 * several joined by ':', or an array of paths. null or undefined clears the table (no tuned file); an
 * empty path is a TypeError, so a variable that happens to be '' never clears it by accident. Throws
 * TunedFileError (naming file and line) when a file is missing, too large or malformed; a file made for
 * another machine (validators differ) is reported once as a warning and not used, and a row whose config
 * cannot run here is reported as a warning and skipped.
 */
export function setTunedFile(paths?: string | readonly string[] | null): TunedFileStatus[] {
  const where = 'setTunedFile';
  let list: string[];
  if (paths === null || paths === undefined) {
    list = [];
  } else if (typeof paths === 'string') {
    list = paths.split(':').filter((p) => p !== '');
    if (list.length === 0) {
      throw new TypeError(`${where}: paths ${JSON.stringify(paths)} names no file; pass null (or nothing) to clear the tuned table`);
    }
  } else if (Array.isArray(paths)) {
    list = [...paths];
    list.forEach((p, i) => {
      if (typeof p !== 'string' || p === '') throw new TypeError(`${where}: paths[${i}] must be a non-empty string (a file path), got ${JSON.stringify(p)}`);
    });
  } else {
    throw new TypeError(`${where}: paths must be a file path, an array of paths, or null to clear, got ${typeof paths}`);
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
  /**
   * The inputs the panel's kernel multiplies: 'any' dtype (f32 panels), or 'bf16' only (bf16 panels of
   * the AMX and AVX512-BF16 kernels, which would have to round f32/f16 inputs to bf16).
   */
  inputs: 'any' | 'bf16';
}

const panelInputsCache = new Map<string, 'any' | 'bf16'>();

// What inputs the kernel of a packed layout takes (info().kernels; prepacked weights are CPU-only).
function panelInputs(layout: string): 'any' | 'bf16' {
  let inputs = panelInputsCache.get(layout);
  if (inputs === undefined) {
    const kernel = layout.slice(0, layout.lastIndexOf('.kc'));
    inputs = cpuNative().info().kernels.find((k) => k.id === kernel)?.inputs ?? 'any';
    panelInputsCache.set(layout, inputs);
  }
  return inputs;
}

/** What dispatch needs of a weight prepacked in `layout` from a weight of `dtypeB`. */
export function preparedWeightRef(layout: string, dtypeB: DType, hasSource: boolean): PreparedWeightRef {
  return Object.freeze({ layout, hasSource, panelLarger: panelLargerThanSource(layout, dtypeB), inputs: panelInputs(layout) });
}

/** Whether the weight's packed panel can be multiplied with inputs of `dtypeA` by its own kernel. */
function panelServes(weight: PreparedWeightRef, dtypeA: DType): boolean {
  return weight.inputs === 'any' || dtypeA === 'bf16';
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
 * How a prepared weight without a tuned row runs `config`, the plain problem's heuristic pick for inputs
 * of `dtypeA`: on its packed panel or its kept source; or not: 'mismatch' when config reads another
 * packed layout (or reads B as stored and the source was not kept), 'panel' when at this M the packed
 * panel beats reading the source. In those two cases the heuristic for the weight's packed panel runs
 * instead. A panel its kernel cannot multiply with these inputs (a bf16 panel, f32 inputs) is not used
 * while the source is kept: the call runs as the unpacked call would.
 */
export function untunedWeightRun(native: NativeSurface, backend: string, m: number, dtypeA: DType, config: string,
  weight: PreparedWeightRef): 'packed' | 'source' | 'mismatch' | 'panel' {
  if (!panelServes(weight, dtypeA)) return weight.hasSource ? 'source' : 'mismatch';
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
    if (layoutCache.size >= 4096) layoutCache.clear(); // opts.config may name anything: stay bounded
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

interface DecideOptions {
  /** opts.config */
  forced?: string;
  /** b is a prepack()ed weight */
  weight?: PreparedWeightRef;
  /** explain() asks: name the heuristic's config on plain calls, and record nothing */
  explaining: boolean;
  /** false: decide as if no tuned row matched (the fallback after a tuned row failed) */
  useTable?: boolean;
}

/**
 * The one decision behind matmul and explain: which config runs, why, and for a prepack()ed b which form
 * of the weight it reads. A prepared weight follows the tuned row (or the heuristic) when that config can
 * run on what the weight holds: its packed layout, or the kept source for configs that read B as stored;
 * otherwise what weightFallback() says runs, and the reason says why. For explain (`explaining`) it fills
 * in the heuristic's config name on plain calls (matmul leaves that to the native side); for matmul it
 * records untuned keys when asked.
 */
function decide(native: NativeSurface, desc: ProblemDesc, spec: GemmSpec, o: DecideOptions): Decision {
  const backend = desc.backend;
  const { weight, forced, explaining } = o;
  const serves = weight === undefined || panelServes(weight, desc.dtypeA);
  const formFor = (config: string): 'packed' | 'source' | undefined => {
    if (!weight) return undefined;
    const layout = packedLayoutOf(native, backend, config);
    if (layout === null) return weight.hasSource ? 'source' : undefined;
    return layout === weight.layout && serves ? 'packed' : undefined;
  };
  // What runs when the weight cannot serve the chosen config: the heuristic for its packed panel; or,
  // where the panel's kernel cannot take these inputs (a bf16 panel, f32 or f16 a), the unpacked call's
  // heuristic on the kept source, else (keepSource: false) the backend's heuristic for the panel, which
  // runs an f32 kernel that widens the panel's bf16 blocks as it packs them.
  const weightFallback = (why: () => string): Decision => {
    if (serves) {
      return { backend, config: native.heuristic(desc), source: 'default', weight: 'packed',
        why: () => `${why()}; the heuristic for the weight's packed layout ${weight!.layout} runs` };
    }
    const panel = () => `the weight is packed as ${weight!.layout}, whose kernel multiplies bf16 inputs only, and a is ${desc.dtypeA}`;
    if (weight!.hasSource) {
      return { backend, config: native.heuristic(withoutHandle(desc)), source: 'default', weight: 'source',
        why: () => `${why()}; ${panel()}, so the unpacked call's heuristic runs on the kept source` };
    }
    return { backend, config: native.heuristic(desc), source: 'default', weight: 'packed',
      why: () => `${why()}; ${panel()} and the source was not kept (keepSource: false), so an f32 kernel reads the panel, widening each block to f32 as it packs it` };
  };
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
  const table = o.useTable === false ? undefined : ensureLoaded().get(backend);
  const hit = table?.lookup(spec);
  if (!explaining && o.useTable !== false && recordPath !== undefined && (!hit || hit.bucket) && desc.m > 0 && desc.n > 0 && desc.k > 0) {
    recordUntuned(recordPath, backend, spec);
  }
  if (hit) {
    const { row } = hit;
    const where = () => `${row.file}:${row.line}`;
    const form = formFor(row.config);
    if (weight && form === undefined) {
      const wants = packedLayoutOf(native, backend, row.config);
      return weightFallback(() => (wants === null
        ? `tuned row ${where()} (${row.config}) reads the weight as stored, but this PackedWeight keeps only its packed form (keepSource: false)`
        : `tuned row ${where()} (${row.config}) reads a weight packed as ${wants}, but this one is packed as ${weight.layout}`));
    }
    const common = { backend, config: row.config, row, ...(form ? { weight: form } : {}) };
    return hit.bucket
      ? { ...common, source: 'bucket',
          why: () => `M=${spec.m} is not tuned; using the row for M=${row.m} (${where()}), the nearest tuned M within ${BUCKET_MAX_FACTOR}x` }
      : { ...common, source: 'tuned', why: () => `tuned row ${where()}` };
  }
  const why = () => (o.useTable === false
    ? `the tuned row for ${describeSpec(spec)} failed to run here and was dropped; the heuristic picks`
    : fileStatus.some((f) => f.used)
      ? `${describeSpec(spec)} is not in the tuned table and no tuned M within ${BUCKET_MAX_FACTOR}x above M=${spec.m}; the heuristic picks`
      : 'no tuned file is loaded (GEMMKIT_TUNED_FILE or setTunedFile); the heuristic picks');
  if (weight) {
    const config = native.heuristic(withoutHandle(desc));
    const run = untunedWeightRun(native, backend, desc.m, desc.dtypeA, config, weight);
    if (run === 'mismatch' || !serves) return weightFallback(why);
    if (run === 'panel') return weightFallback(() => `${why()}; at M=${desc.m} the packed panel beats reading the source with ${config}`);
    return { backend, config, source: 'default', why, weight: run };
  }
  return { backend, config: explaining ? native.heuristic(desc) : '', source: 'default', why };
}

function choiceOf(d: Decision): Choice {
  return { config: d.config, ...(d.weight ? { weight: d.weight } : {}) };
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
    return choiceOf(decide(native, desc, specOf(desc, false), { explaining: false }));
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
    choice = choiceOf(decide(native, desc, specOf(desc, true), { weight, explaining: false }));
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
 * After `choice`'s config failed to run `ran` (the call as passed to the backend, from `desc`): when the
 * config is a tuned row's and the failure is the config's (the backend no longer supports it for this
 * problem, or says so in the error), the row is dropped from the table with one warning and what the
 * heuristic runs instead is returned; otherwise undefined (the error is the caller's).
 */
export function tunedRowFailed(native: NativeSurface, desc: ProblemDesc, ran: ProblemDesc, weight: PreparedWeightRef | undefined,
  choice: Choice, error: unknown): Choice | undefined {
  // The row the choice came from: the call's lookup (a choice kept for a weight was made from the table
  // as it is now: changing the table forgets the kept choices).
  const spec = specOf(desc, weight !== undefined);
  const table = desc.batch === 1 ? ensureLoaded().get(desc.backend) : undefined;
  const row = table?.lookup(spec)?.row;
  if (!row || row.config !== choice.config) return undefined;
  let why: string | null = (error as { code?: string } | undefined)?.code === 'GEMMKIT_UNSUPPORTED' ? (error as Error).message : null;
  if (why === null) {
    try {
      why = native.supports(ran, row.config);
    } catch (e) {
      why = (e as Error).message;
    }
  }
  if (why === null) return undefined;
  table!.remove(row);
  weightChoices = new WeakMap(); // decided with the row
  warnOnce(`tuned file ${row.file}:${row.line}: config ${row.config} failed to run ${describeSpec(row)} (${why}); the row is dropped and the heuristic runs its calls`);
  return choiceOf(decide(native, desc, spec, { weight, explaining: false, useTable: false }));
}

/**
 * The config a weight for `desc` is prepacked for when a tuned table is loaded: the winner of the tuned
 * row with the largest M among the prepacked rows for this weight (same dtypes, transposes, N and K) whose
 * config reads a packed layout. Large M is where packing pays; smaller Ms follow that layout or read the
 * kept source. undefined when no such row exists.
 */
export function tunedPackedConfig(native: NativeSurface, desc: ProblemDesc): TunedRow | undefined {
  const table = ensureLoaded().get(desc.backend);
  if (!table) return undefined;
  const weight = weightKey(desc);
  let best: TunedRow | undefined;
  for (const r of table.rows()) {
    if (!r.prepacked || weightKey(r) !== weight) continue;
    if (packedLayoutOf(native, desc.backend, r.config) === null) continue;
    if (!best || r.m > best.m) best = r;
  }
  return best;
}

/**
 * A tuned row's config could not pack a weight (prepack): the row is dropped with one warning, like a row
 * that fails to run a call.
 */
export function tunedPackFailed(backend: string, row: TunedRow, error: Error): void {
  if (ensureLoaded().get(backend)?.remove(row)) {
    weightChoices = new WeakMap();
    warnOnce(`tuned file ${row.file}:${row.line}: config ${row.config} cannot pack this weight (${error.message}); the row is dropped and the weight is packed for the heuristic`);
  }
}

/**
 * Which config a validated matmul call would run, and why (tuned, bucket, default or forced); for a
 * prepack()ed b also which form of the weight it reads. `forced` is opts.config.
 */
export function explainCall(native: NativeSurface, desc: ProblemDesc, weight: PreparedWeightRef | undefined, forced: string | undefined): Explanation {
  const spec = specOf(desc, weight !== undefined);
  const { why, ...d } = decide(native, desc, spec, { forced, weight, explaining: true });
  return { ...d, reason: why(), key: `${desc.backend}|${keyString(spec)}` };
}

export { TunedFileError };
