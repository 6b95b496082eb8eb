// The tuned file: CSV that starts with validator lines, then a header and one row per key.
//
//   # gemmkit tuned GEMM configs, format 1
//   # gemmkit: 0.1.0
//   # backend: cpu
//   # device: AMD EPYC 9R14
//   # arch: cpu.avx2.fma.f16c.avx512
//   # libraries: openblas 0.3.21, blis 0.9.0
//   # threads: 2
//   backend,arch,dtype,out_dtype,trans_a,trans_b,epilogue,m,n,k,kernel,config,median_us,...
//
// A file is only used where every validator matches the running machine. Updates hold a lock file,
// merge with the rows already there (the faster row wins per key) and replace the file by rename, so a
// crash mid-write leaves the old file and two tuners writing one file lose no rows.
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { type DType, isDType } from '../dtype.js';
import type { NativeSurface } from '../native.js';
import { VERSION } from '../version.js';
import { withFileLock } from './file_lock.js';
import { type GemmSpec, dtypeColumn, epilogueName, keyString, keyWithoutM, parseDtypeColumn, parseEpilogue, parseInteger, parseWeightColumn, weightColumn } from './key.js';

export const MAGIC_LINE = '# gemmkit tuned GEMM configs, format 1';
export const VALIDATOR_KEYS = ['gemmkit', 'backend', 'device', 'arch', 'libraries', 'threads'] as const;
export type Validators = Record<(typeof VALIDATOR_KEYS)[number], string>;

export const TUNED_COLUMNS = [
  'backend', 'arch', 'dtype', 'out_dtype', 'trans_a', 'trans_b', 'weight', 'epilogue', 'm', 'n', 'k',
  'kernel', 'config', 'median_us', 'tflops', 'default_us', 'speedup', 'max_error', 'status',
] as const;

/** ok: the winner passed the numerical check; unchecked: tuned with --no-check. */
export type RowStatus = 'ok' | 'unchecked';

export interface TunedRow extends GemmSpec {
  backend: string;
  arch: string;
  kernel: string;
  config: string;
  medianUs: number;
  tflops: number;
  defaultUs: number;
  speedup: number;
  /** Largest |got - want| / magnitude of the summed terms, from the numerical check (NaN: unchecked). */
  maxError: number;
  status: RowStatus;
  /** Where the row was read from (set when read from a file). */
  file?: string;
  line?: number;
}

export interface TunedFile {
  path: string;
  validators: Validators;
  rows: TunedRow[];
}

/** A tuned file that cannot be read as one: the message names the file and line. */
export class TunedFileError extends Error {
  constructor(path: string, line: number | undefined, what: string) {
    super(`${line === undefined ? path : `${path}:${line}`}: ${what}`);
    this.name = 'TunedFileError';
  }
}

/** What the running machine looks like to a tuned file for `backend` on `native`. */
export function currentValidators(native: NativeSurface, backend: string, device = 0): Validators {
  const info = native.info();
  const dev = info.backends.find((b) => b.name === backend)?.devices[device];
  if (!dev) throw new Error(`backend '${backend}' has no device ${device} in this addon`);
  const libs = (info.libraries ?? []).map((l) => `${l.name} ${l.version}`).join(', ');
  return {
    gemmkit: VERSION,
    backend,
    device: dev.name,
    arch: dev.arch,
    libraries: libs === '' ? 'none' : libs,
    threads: String(backend === 'cpu' ? info.threads : dev.computeUnits),
  };
}

/** The first validator that differs, as a sentence; undefined when the file fits this machine. */
export function validatorMismatch(path: string, file: Validators, current: Validators): string | undefined {
  for (const key of VALIDATOR_KEYS) {
    if (file[key] !== current[key]) {
      return `tuned file ${path} was made for ${key} "${file[key]}" but this machine has "${current[key]}"; it is not used (tune again with \`npm run tune\`)`;
    }
  }
  return undefined;
}

function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return '';
  return String(Number(x.toPrecision(6)));
}

export function rowToRecord(r: TunedRow): string[] {
  return [
    r.backend, r.arch, dtypeColumn(r.dtypeA, r.dtypeB), r.outDtype, String(r.transA), String(r.transB),
    weightColumn(r.prepacked), epilogueName(r.bias, r.activation), String(r.m), String(r.n), String(r.k), r.kernel, r.config,
    formatNumber(r.medianUs), formatNumber(r.tflops), formatNumber(r.defaultUs), formatNumber(r.speedup),
    Number.isNaN(r.maxError) ? '' : r.maxError.toExponential(3), r.status,
  ];
}

export function formatTunedFile(validators: Validators, rows: TunedRow[]): string {
  const head = [MAGIC_LINE, ...VALIDATOR_KEYS.map((k) => `# ${k}: ${validators[k]}`)].join('\n') + '\n';
  // Grouped by key without M, then by M, so a file reads like a table of batch sizes.
  const sorted = [...rows].sort((x, y) => {
    const a = keyWithoutM(x), b = keyWithoutM(y);
    return a < b ? -1 : a > b ? 1 : x.m - y.m;
  });
  return head + stringify([[...TUNED_COLUMNS], ...sorted.map(rowToRecord)]);
}

type Column = (typeof TUNED_COLUMNS)[number];

function parseRow(path: string, line: number, f: string[], validators: Validators): TunedRow {
  const field = (column: Column) => f[TUNED_COLUMNS.indexOf(column)];
  const bad = (column: Column, want: string) =>
    new TunedFileError(path, line, `column ${column} is ${JSON.stringify(field(column))}; expected ${want}`);
  const int = (column: Column, min: number) => {
    const x = parseInteger(field(column), min);
    if (x === undefined) throw bad(column, `an integer >= ${min}`);
    return x;
  };
  const num = (column: Column, allowEmpty = false) => {
    const v = field(column);
    if (allowEmpty && v === '') return NaN;
    const x = Number(v);
    if (v === '' || !Number.isFinite(x) || x < 0) throw bad(column, 'a non-negative number');
    return x;
  };
  const bool = (column: Column) => {
    if (field(column) !== 'true' && field(column) !== 'false') throw bad(column, 'true or false');
    return field(column) === 'true';
  };
  if (field('backend') !== validators.backend) throw bad('backend', `"${validators.backend}" (the file's backend validator)`);
  if (field('arch') !== validators.arch) throw bad('arch', `"${validators.arch}" (the file's arch validator)`);
  const dt = parseDtypeColumn(field('dtype'));
  if (!dt) throw bad('dtype', "f32, f16, bf16 or two of them as 'a*b'");
  if (!isDType(field('out_dtype'))) throw bad('out_dtype', 'f32, f16 or bf16');
  const prepacked = parseWeightColumn(field('weight'));
  if (prepacked === undefined) throw bad('weight', 'plain or prepacked');
  const epi = parseEpilogue(field('epilogue'));
  if (!epi) throw bad('epilogue', "none, bias, relu, gelu, silu or 'bias+<activation>'");
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(field('kernel'))) throw bad('kernel', 'a kernel name');
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(field('config'))) throw bad('config', 'a config name');
  if (field('status') !== 'ok' && field('status') !== 'unchecked') throw bad('status', 'ok or unchecked');
  const medianUs = num('median_us');
  if (medianUs <= 0) throw bad('median_us', 'a positive number');
  return {
    backend: field('backend'), arch: field('arch'), dtypeA: dt[0], dtypeB: dt[1], outDtype: field('out_dtype') as DType,
    transA: bool('trans_a'), transB: bool('trans_b'), prepacked, bias: epi.bias, activation: epi.activation,
    m: int('m', 1), n: int('n', 1), k: int('k', 1), kernel: field('kernel'), config: field('config'),
    medianUs, tflops: num('tflops'), defaultUs: num('default_us'), speedup: num('speedup'), maxError: num('max_error', true),
    status: field('status') as RowStatus, file: path, line,
  };
}

/**
 * The largest tuned file gemmkit reads (16 MiB, about 90,000 rows; a model's GEMMs at every batch size
 * need a few hundred). A larger one is refused with a TunedFileError before anything is read, so a stray
 * file cannot stall the first matmul or take the process's memory.
 */
export const MAX_TUNED_FILE_BYTES = 16 * 1024 * 1024;
/** The longest line of a tuned file (a row is under 400 characters). */
export const MAX_TUNED_LINE_CHARS = 4096;

// Reads a tuned file line by line (a row never spans lines), so memory holds one chunk and the rows,
// never the whole text twice.
class TunedFileParser {
  private lineNo = 0;
  private validators: Partial<Validators> = {};
  private header = false;
  readonly rows: TunedRow[] = [];

  constructor(private readonly path: string) {}

  private error(what: string, line = this.lineNo): TunedFileError {
    return new TunedFileError(this.path, line, what);
  }

  line(raw: string): void {
    this.lineNo++;
    if (raw.length > MAX_TUNED_LINE_CHARS) throw this.error(`the line is longer than ${MAX_TUNED_LINE_CHARS} characters; not a tuned file row`);
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (this.lineNo === 1) {
      if (text !== MAGIC_LINE) throw this.error(`not a gemmkit tuned file (the first line must be "${MAGIC_LINE}")`);
      return;
    }
    if (text === '') return;
    if (!this.header && text.startsWith('#')) {
      const m = /^# ([a-z_]+): (.*)$/.exec(text);
      if (!m) throw this.error('a validator line must read "# <name>: <value>"');
      const key = m[1] as keyof Validators;
      if (!(VALIDATOR_KEYS as readonly string[]).includes(key)) return; // a later format's validator: ignored
      if (this.validators[key] !== undefined && this.validators[key] !== m[2]) {
        throw this.error(`validator "${key}" is given twice, as "${this.validators[key]}" and "${m[2]}"`);
      }
      this.validators[key] = m[2];
      return;
    }
    const fields = splitCsvLine(text, (why) => this.error(`not valid CSV: ${why}`));
    if (!this.header) {
      for (const key of VALIDATOR_KEYS) {
        if (this.validators[key] === undefined) throw this.error(`validator line "# ${key}: ..." is missing before the header`);
      }
      if (fields.join(',') !== TUNED_COLUMNS.join(',')) throw this.error(`the header must be ${TUNED_COLUMNS.join(',')}`);
      this.header = true;
      return;
    }
    if (fields.length !== TUNED_COLUMNS.length) {
      throw this.error(`has ${fields.length} fields, expected ${TUNED_COLUMNS.length} (the file is truncated or hand-edited)`);
    }
    this.rows.push(parseRow(this.path, this.lineNo, fields, this.validators as Validators));
  }

  finish(): TunedFile {
    if (this.lineNo === 0) throw this.error('the file is empty', 1);
    if (!this.header) {
      const missing = VALIDATOR_KEYS.find((key) => this.validators[key] === undefined);
      if (missing) throw this.error(`validator line "# ${missing}: ..." is missing before the header`, this.lineNo + 1);
      throw this.error('the header row is missing (the file is truncated)', this.lineNo + 1);
    }
    return { path: this.path, validators: this.validators as Validators, rows: this.rows };
  }
}

// The fields of one CSV line. gemmkit writes rows without quotes (no field holds a comma or a quote);
// a hand-edited line with quotes goes through csv-parse.
function splitCsvLine(text: string, bad: (why: string) => Error): string[] {
  if (!text.includes('"')) return text.split(',');
  try {
    const records = parse(text, { relax_column_count: true }) as string[][];
    if (records.length !== 1) throw new Error(`${records.length} records on one line`);
    return records[0];
  } catch (e) {
    throw bad((e as Error).message);
  }
}

/** Parses a tuned file's text; throws TunedFileError naming the file and line for anything malformed. */
export function parseTunedFile(path: string, text: string): TunedFile {
  const parser = new TunedFileParser(path);
  for (let start = 0; start < text.length;) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    parser.line(text.slice(start, end));
    start = end + 1;
  }
  return parser.finish();
}

/**
 * Reads and parses a tuned file in chunks; a TunedFileError naming the file (and the line, for a malformed
 * one) when it cannot be read, is over MAX_TUNED_FILE_BYTES or is malformed.
 */
export function readTunedFile(path: string): TunedFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new TunedFileError(path, undefined, `cannot read the tuned file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_TUNED_FILE_BYTES) {
      throw new TunedFileError(path, undefined, `the tuned file is ${size} bytes, more than the ${MAX_TUNED_FILE_BYTES} bytes (16 MiB) gemmkit reads; it is not a tuned file, or it holds far more shapes than a workload uses (tune only the shapes you record)`);
    }
    const parser = new TunedFileParser(path);
    const decoder = new TextDecoder('utf-8');
    const chunk = Buffer.allocUnsafe(1 << 20);
    let pending = '';
    for (;;) {
      let bytes: number;
      try {
        bytes = readSync(fd, chunk, 0, chunk.length, null);
      } catch (e) {
        throw new TunedFileError(path, undefined, `cannot read the tuned file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
      // Bytes that are not UTF-8 become U+FFFD; no field may hold one, so such a row is an error naming its line.
      const text = pending + decoder.decode(chunk.subarray(0, bytes), { stream: bytes > 0 });
      let start = 0;
      for (let end = text.indexOf('\n'); end >= 0; end = text.indexOf('\n', start)) {
        parser.line(text.slice(start, end));
        start = end + 1;
      }
      pending = text.slice(start);
      if (pending.length > MAX_TUNED_LINE_CHARS) parser.line(pending); // throws: a line too long
      if (bytes === 0) break;
    }
    if (pending !== '') parser.line(pending);
    return parser.finish();
  } finally {
    closeSync(fd);
  }
}

/** Is `a` a better row for its key than `b`? Faster wins; a checked row beats an unchecked one. */
export function betterRow(a: TunedRow, b: TunedRow): boolean {
  if (a.status !== b.status) return a.status === 'ok';
  return a.medianUs < b.medianUs;
}

export function mergeRows(existing: TunedRow[], incoming: TunedRow[]): TunedRow[] {
  const byKey = new Map<string, TunedRow>();
  for (const r of [...existing, ...incoming]) {
    const k = keyString(r);
    const have = byKey.get(k);
    if (!have || betterRow(r, have)) byKey.set(k, r);
  }
  return [...byKey.values()];
}

function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // never created
    }
    throw e;
  }
}

/**
 * Adds rows to the tuned file at `path` (created when absent): under the file's lock, reads what is
 * there, keeps the better row per key, writes a temporary file and renames it over the old one.
 * Throws when the existing file is malformed or was made for another machine (it is never overwritten).
 */
export async function updateTunedFile(path: string, validators: Validators, rows: TunedRow[]): Promise<TunedRow[]> {
  return withFileLock(path, () => {
    let existing: TunedRow[] = [];
    if (existsSync(path)) {
      const file = readTunedFile(path);
      const mismatch = validatorMismatch(path, file.validators, validators);
      if (mismatch) throw new Error(`${mismatch}. Write to another --out file, or delete this one.`);
      existing = file.rows;
    }
    const merged = mergeRows(existing, rows);
    writeAtomically(path, formatTunedFile(validators, merged));
    return merged;
  });
}
