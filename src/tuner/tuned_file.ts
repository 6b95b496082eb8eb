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
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
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

/** Parses a tuned file's text; throws TunedFileError naming the file and line for anything malformed. */
export function parseTunedFile(path: string, text: string): TunedFile {
  const lines = text.split('\n');
  if (lines[0].replace(/\r$/, '') !== MAGIC_LINE) {
    throw new TunedFileError(path, 1, text.length === 0 ? 'the file is empty' : `not a gemmkit tuned file (the first line must be "${MAGIC_LINE}")`);
  }
  const validators: Partial<Validators> = {};
  let line = 1;
  for (; line < lines.length && lines[line].startsWith('#'); line++) {
    const m = /^# ([a-z_]+): (.*)$/.exec(lines[line].replace(/\r$/, ''));
    if (!m) throw new TunedFileError(path, line + 1, `a validator line must read "# <name>: <value>"`);
    if ((VALIDATOR_KEYS as readonly string[]).includes(m[1])) validators[m[1] as keyof Validators] = m[2];
  }
  for (const key of VALIDATOR_KEYS) {
    if (validators[key] === undefined) throw new TunedFileError(path, line + 1, `validator line "# ${key}: ..." is missing before the header`);
  }
  const v = validators as Validators;
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(lines.slice(line).join('\n'), { info: true, relax_column_count: true, skip_empty_lines: true }) as unknown as typeof records;
  } catch (e) {
    const lines = (e as { lines?: number }).lines;
    throw new TunedFileError(path, lines === undefined ? undefined : lines + line, `not valid CSV: ${(e as Error).message}`);
  }
  if (records.length === 0) throw new TunedFileError(path, line + 1, 'the header row is missing (the file is truncated)');
  const header = records[0].record;
  if (header.join(',') !== TUNED_COLUMNS.join(',')) {
    throw new TunedFileError(path, records[0].info.lines + line, `the header must be ${TUNED_COLUMNS.join(',')}`);
  }
  const rows: TunedRow[] = [];
  for (const { record, info } of records.slice(1)) {
    const at = info.lines + line;
    if (record.length !== TUNED_COLUMNS.length) {
      throw new TunedFileError(path, at, `has ${record.length} fields, expected ${TUNED_COLUMNS.length} (the file is truncated or hand-edited)`);
    }
    rows.push(parseRow(path, at, record, v));
  }
  return { path, validators: v, rows };
}

export function readTunedFile(path: string): TunedFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TunedFileError(path, undefined, `cannot read the tuned file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseTunedFile(path, text);
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
