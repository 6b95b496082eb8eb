// GEMMKIT_RECORD_UNTUNED=path.csv: every matmul whose key the tuned table does not hold is appended to
// path once, in the shape-file format `gemmkit tune --shapes` reads. Each process remembers what it
// recorded; under the file's lock it reads the file before appending, so a key is never written twice
// even when several processes record into one file.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { withFileLockSync } from './file_lock.js';
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

const recorded = new Map<string, Set<string>>(); // path -> keys this process knows are in it
const failedPaths = new Set<string>();

/** Appends the shape to `path` unless it is there already. Never throws: a failure is warned once. */
export function recordUntuned(path: string, backend: string, spec: GemmSpec): void {
  const key = `${backend}|${keyString(spec)}`;
  let known = recorded.get(path);
  if (known?.has(key) || failedPaths.has(path)) return;
  try {
    withFileLockSync(path, () => {
      const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
      known = keysIn(text);
      recorded.set(path, known);
      if (known.has(key)) return;
      const header = text.length > 0 ? '' : `${UNTUNED_COLUMNS.join(',')}\n`;
      // One write of whole lines with O_APPEND: a reader never sees half a line.
      appendFileSync(path, `${header}${untunedLine(backend, spec)}\n`);
      known.add(key);
    }, 10_000);
  } catch (e) {
    failedPaths.add(path);
    process.emitWarning(`GEMMKIT_RECORD_UNTUNED: cannot record into ${path} (${(e as Error).message}); recording is off for this file`, 'GemmkitWarning');
  }
}
