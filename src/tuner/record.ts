// GEMMKIT_RECORD_UNTUNED=path.csv: every matmul whose key the tuned table does not hold is appended to
// path once, in the shape-file format `gemmkit tune --shapes` reads. A matmul only queues its key (a
// Map access); the queue is written right after, outside the call, when the file's lock can be taken
// at once, so a slow disk or a lock held elsewhere never holds up a matmul. Each process remembers what
// it recorded; under the file's lock it reads the file before appending, so a key is never written
// twice even when several processes record into one file.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { tryWithFileLockSync, withFileLockSync } from './file_lock.js';
import { type GemmSpec, dtypeColumn, epilogueName, keyString, parseDtypeColumn, parseEpilogue, parseInteger, parseWeightColumn, weightColumn } from './key.js';
import { isDType } from '../dtype.js';

export const UNTUNED_COLUMNS = ['backend', 'dtype', 'out_dtype', 'trans_a', 'trans_b', 'weight', 'epilogue', 'm', 'n', 'k'] as const;

export function untunedLine(backend: string, s: GemmSpec): string {
  return [backend, dtypeColumn(s.dtypeA, s.dtypeB), s.outDtype, s.transA, s.transB, weightColumn(s.prepacked), epilogueName(s.bias, s.activation), s.m, s.n, s.k].join(',');
}

/** Parses one record of the untuned format; undefined when a field is malformed. */
export function parseUntunedRecord(f: string[]): (GemmSpec & { backend: string }) | undefined {
  if (f.length !== UNTUNED_COLUMNS.length) return undefined;
  const dt = parseDtypeColumn(f[1]);
  const prepacked = parseWeightColumn(f[5]);
  const epi = parseEpilogue(f[6]);
  const dims = f.slice(7).map((x) => parseInteger(x, 1));
  const bools = [f[3], f[4]].map((x) => (x === 'true' ? true : x === 'false' ? false : undefined));
  if (!/^[a-z0-9]+$/.test(f[0]) || !dt || !isDType(f[2]) || prepacked === undefined || !epi || bools.includes(undefined)) return undefined;
  if (dims.some((d) => d === undefined)) return undefined;
  return {
    backend: f[0], dtypeA: dt[0], dtypeB: dt[1], outDtype: f[2], transA: bools[0]!, transB: bools[1]!, prepacked,
    bias: epi.bias, activation: epi.activation, m: dims[0]!, n: dims[1]!, k: dims[2]!,
  };
}

function keysIn(text: string): Set<string> {
  const keys = new Set<string>();
  const records = parse(text, { relax_column_count: true, skip_empty_lines: true }) as string[][];
  for (const r of records) {
    const spec = parseUntunedRecord(r);
    if (spec) keys.add(`${spec.backend}|${keyString(spec)}`);
  }
  return keys;
}

const recorded = new Map<string, Set<string>>(); // path -> keys known to be in it, or queued for it
const queued = new Map<string, Map<string, string>>(); // path -> key -> line not written yet
const retryDelay = new Map<string, number>(); // path -> ms before the next try, while its lock is busy
const failedPaths = new Set<string>();
let exitHookInstalled = false;

/**
 * Queues the shape for `path` unless it is known to be there. Never throws and never waits: the shapes are
 * written after the call, when the file's lock is free (a busy lock is tried again later, and once more,
 * waiting at most EXIT_WAIT_MS, when the process exits). A failure to write is warned once.
 */
export function recordUntuned(path: string, backend: string, spec: GemmSpec): void {
  const key = `${backend}|${keyString(spec)}`;
  let known = recorded.get(path);
  if (known?.has(key) || failedPaths.has(path)) return;
  if (!known) recorded.set(path, (known = new Set()));
  known.add(key);
  let lines = queued.get(path);
  if (!lines) queued.set(path, (lines = new Map()));
  lines.set(key, untunedLine(backend, spec));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // When the event loop empties (a warning can still be delivered), and on process.exit() (it cannot).
    process.on('beforeExit', () => flushAtExit((m) => process.emitWarning(m, 'GemmkitWarning')));
    process.on('exit', () => flushAtExit((m) => process.stderr.write(`(node:${process.pid}) GemmkitWarning: ${m}\n`)));
  }
  if (!retryDelay.has(path)) {
    retryDelay.set(path, 1);
    setImmediate(() => flush(path));
  }
}

/** How long the exit hook waits for a busy lock before giving up on the queued shapes. */
export const EXIT_WAIT_MS = 1000;

// Appends the queued lines of `path` the file does not hold yet, under its lock. Throws on I/O errors.
function writeQueued(path: string): void {
  const lines = queued.get(path);
  if (!lines || lines.size === 0) return;
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const there = keysIn(text);
  const add = [...lines].filter(([key]) => !there.has(key)).map(([, line]) => `${line}\n`);
  const header = text.length > 0 ? '' : `${UNTUNED_COLUMNS.join(',')}\n`;
  // One write of whole lines with O_APPEND: a reader never sees half a line.
  if (add.length > 0) appendFileSync(path, header + add.join(''));
  for (const key of there) recorded.get(path)!.add(key);
  queued.delete(path);
}

function fail(path: string, e: unknown): void {
  failedPaths.add(path);
  queued.delete(path);
  process.emitWarning(`GEMMKIT_RECORD_UNTUNED: cannot record into ${path} (${(e as Error).message}); recording is off for this file`, 'GemmkitWarning');
}

// One try to take the lock, off any matmul's path; a busy lock is tried again later (the timer does not
// keep the process alive: the exit hook makes the last try).
function flush(path: string): void {
  try {
    if (tryWithFileLockSync(path, () => writeQueued(path))) {
      retryDelay.delete(path);
      if (queued.has(path)) flush(path); // queued while writing
      return;
    }
  } catch (e) {
    retryDelay.delete(path);
    fail(path, e);
    return;
  }
  const delay = Math.min(2 * retryDelay.get(path)!, 1000);
  retryDelay.set(path, delay);
  setTimeout(() => flush(path), delay).unref();
}

// The last try, as the process ends: waits up to EXIT_WAIT_MS for a busy lock, then reports what is lost.
function flushAtExit(report: (message: string) => void): void {
  for (const path of [...queued.keys()]) {
    try {
      withFileLockSync(path, () => writeQueued(path), EXIT_WAIT_MS);
    } catch (e) {
      const n = queued.get(path)?.size ?? 0;
      queued.delete(path);
      report(`GEMMKIT_RECORD_UNTUNED: ${n} untuned shape(s) not recorded into ${path} (${(e as Error).message})`);
    }
  }
}
