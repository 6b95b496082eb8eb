// The mutation fuzz of the tuned-file parser, run as a child process by tuned_file_fuzz.test.ts (so a hang
// can be caught and killed). From a valid tuned file it generates mutated ones with fast-check (byte flips,
// truncations, duplicated and removed lines and fields, huge numbers, wrong validators, wrong configs,
// binary junk) and loads each with setTunedFile, then runs a matmul for the base file's shapes: each file
// must load, or fail with a TunedFileError naming the file and line, within TIME_BOUND_MS, and the calls
// must still run. It prints one JSON line per PROGRESS_EVERY files and a summary at the end; a failing
// file is shrunk by fast-check and printed. Usage: node --import tsx test/tuned_file_fuzz_child.ts
// <dir> <runs> <seed>
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { TunedFileError, matmulSync, setTunedFile, tensor } from '../src/index.js';
import { row, spec, tunedFileText } from './tuner_helpers.js';

const [dir, runsArg, seedArg] = process.argv.slice(2);
const runs = Number(runsArg), seed = Number(seedArg);
/** Loading one file (and the calls after it) may take at most this long. */
export const TIME_BOUND_MS = 2000;
const PROGRESS_EVERY = 250;

// The base file: plain and prepacked rows, several dtypes, epilogues and kernel families.
const shapes = [
  spec(1, 16, 32), spec(8, 16, 32, { bias: true, activation: 'relu' }), spec(32, 16, 32, { prepacked: true }),
  spec(4, 24, 16, { dtypeA: 'bf16', dtypeB: 'bf16', outDtype: 'bf16' }), spec(64, 24, 16, { transB: false, outDtype: 'f16', dtypeA: 'f16', dtypeB: 'f16' }),
];
const configs = ['cpu.scalar.f32.4x8.mc8.kc16.nc16.t1', 'cpu.gemv.scalar.kc256.ks1.t1', 'cpu.scalar.f32.4x8.mc16.kc32.nc32.t2', 'cpu.gemv.scalar.kc64.ks2.t1', 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1'];
const base = tunedFileText(shapes.map((s, i) => row(s, configs[i], 5 + i)));
const baseLines = base.split('\n');
const ROWS_FROM = baseLines.findIndex((l) => l.startsWith('backend,')) + 1;

// What a mutation may put in a field.
const oddValues = [
  '1e308', '9'.repeat(400), '18446744073709551616', '9007199254740993', '-1', '0', 'NaN', 'Infinity', '0x10', '1.5', '',
  ' 7', 'true', 'prepacked', 'bf16*f32', 'bias+gelu', 'cpu.cblas.openblas-0.3.21', 'cpu.gemv.avx512.kc256.ks0.t1',
  'cpu.avx512.f32.14x32.mc14.kc64.nc32.t9999', 'cuda.sm80.bf16.mma.128x128x32.w4.s3.g8', 'garbage', '"quoted,field"', '"', '\u00e9',
];
const validatorEdits = [
  ['gemmkit', '9.9.9'], ['threads', '9999'], ['arch', 'cpu.avx2'], ['backend', 'cuda'], ['backend', 'nosuch'], ['libraries', 'none'],
  ['device', 'Some Other CPU'], ['gemmkit', ''],
];

type Mutation =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'duplicate-line'; line: number; to: number }
  | { kind: 'remove-line'; line: number }
  | { kind: 'duplicate-field'; line: number; field: number }
  | { kind: 'remove-field'; line: number; field: number }
  | { kind: 'set-field'; line: number; field: number; value: string }
  | { kind: 'validator'; key: number; value: string | undefined; duplicate: boolean }
  | { kind: 'junk'; at: number; bytes: Uint8Array };

// Weighted towards edits a file survives (rows whose fields or configs change, lines duplicated or
// removed, validators of another machine), so that loading, not only refusing, is fuzzed too.
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('duplicate-line' as const), line: fc.nat(), to: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove-line' as const), line: fc.nat() }) },
  fc.record({ kind: fc.constant('duplicate-field' as const), line: fc.nat(), field: fc.nat() }),
  fc.record({ kind: fc.constant('remove-field' as const), line: fc.nat(), field: fc.nat() }),
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('set-field' as const), line: fc.nat(), field: fc.nat(), value: fc.oneof(fc.constantFrom(...oddValues), fc.string({ maxLength: 12 })) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('validator' as const), key: fc.nat(), value: fc.option(fc.constantFrom(...validatorEdits.map(([, v]) => v)), { nil: undefined }), duplicate: fc.boolean() }) },
  fc.record({ kind: fc.constant('junk' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
);

function applyMutation(text: Buffer, m: Mutation): Buffer {
  const lines = text.toString('latin1').split('\n');
  const pick = (n: number, length: number) => (length === 0 ? 0 : n % length);
  const joined = (ls: string[]) => Buffer.from(ls.join('\n'), 'latin1');
  switch (m.kind) {
    case 'flip': {
      if (text.length === 0) return text;
      const out = Buffer.from(text);
      out[pick(m.at, out.length)] ^= m.xor;
      return out;
    }
    case 'truncate':
      return text.subarray(0, pick(m.at, text.length + 1));
    case 'duplicate-line': {
      const l = lines[pick(m.line, lines.length)];
      lines.splice(pick(m.to, lines.length + 1), 0, l);
      return joined(lines);
    }
    case 'remove-line':
      lines.splice(pick(m.line, lines.length), 1);
      return joined(lines);
    case 'duplicate-field':
    case 'remove-field':
    case 'set-field': {
      // Mostly a row (after the magic line, the validators and the header), sometimes any line.
      const i = m.line % 4 !== 0 && lines.length > ROWS_FROM ? ROWS_FROM + pick(m.line, lines.length - ROWS_FROM) : pick(m.line, lines.length);
      const fields = lines[i].split(',');
      const f = pick(m.field, fields.length);
      if (m.kind === 'duplicate-field') fields.splice(f, 0, fields[f]);
      else if (m.kind === 'remove-field') fields.splice(f, 1);
      else fields[f] = m.value;
      lines[i] = fields.join(',');
      return joined(lines);
    }
    case 'validator': {
      const [key, value] = validatorEdits[pick(m.key, validatorEdits.length)];
      const i = lines.findIndex((l) => l.startsWith(`# ${key}: `));
      if (i < 0) return text;
      const edited = `# ${key}: ${value}`;
      if (m.value === undefined) lines.splice(i, 1);
      else if (m.duplicate) lines.splice(i + 1, 0, edited);
      else lines[i] = edited;
      return joined(lines);
    }
    case 'junk': {
      const at = pick(m.at, text.length + 1);
      return Buffer.concat([text.subarray(0, at), m.bytes, text.subarray(at)]);
    }
  }
}

const path = join(dir, 'tuned.csv');
const whereFile = new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+: \\S`);
const x = shapes.map((s) => tensor(new Float32Array(s.m * s.k).fill(1), [s.m, s.k], s.dtypeA));
const w = shapes.map((s) => tensor(new Float32Array(s.n * s.k).fill(1), s.transB ? [s.n, s.k] : [s.k, s.n], s.dtypeB));
let done = 0, loaded = 0, refused = 0, slowest = 0, warnings = 0;
// Counted as they are raised (the fuzz loop never yields to the event loop that would deliver them).
process.emitWarning = (() => void warnings++) as typeof process.emitWarning;
const started = performance.now();

const property = fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (mutations) => {
  let bytes: Buffer = Buffer.from(base, 'latin1');
  for (const m of mutations) bytes = applyMutation(bytes, m);
  writeFileSync(path, bytes);
  const t0 = performance.now();
  try {
    const status = setTunedFile(path);
    if (status.length !== 1) throw new Error(`setTunedFile returned ${status.length} statuses for one file`);
    loaded++;
  } catch (e) {
    if (!(e instanceof TunedFileError)) throw new Error(`not a TunedFileError: ${(e as Error)?.stack ?? e}`);
    if (!whereFile.test(e.message)) throw new Error(`the error does not name the file and line: ${e.message}`);
    refused++;
  }
  // Whatever was loaded, every call still runs and gives the right answer (every input is 1).
  shapes.forEach((s, i) => {
    const y = matmulSync(x[i], w[i], { transB: s.transB, outDtype: s.outDtype }).toFloat32();
    if (y.some((v) => v !== s.k)) throw new Error(`${s.m}x${s.n}x${s.k}: wrong result after loading the file`);
  });
  const ms = performance.now() - t0;
  slowest = Math.max(slowest, ms);
  if (ms > TIME_BOUND_MS) throw new Error(`loading and running took ${ms.toFixed(0)} ms (bound ${TIME_BOUND_MS} ms)`);
  if (++done % PROGRESS_EVERY === 0) process.stdout.write(`${JSON.stringify({ done })}\n`);
});

// The base file itself loads (so every mutation starts from a good file).
setTunedFile((writeFileSync(path, baseLines.join('\n')), path));
const result = fc.check(property, { numRuns: runs, seed, endOnFailure: false });
process.stdout.write(`${JSON.stringify({
  summary: true, runs: result.numRuns, failed: result.failed, seed, loaded, refused, warnings,
  slowestMs: Math.round(slowest), totalMs: Math.round(performance.now() - started),
  ...(result.failed ? { counterexample: fc.stringify(result.counterexample), error: String(result.errorInstance) } : {}),
})}\n`);
process.exitCode = result.failed ? 1 : 0;
