// Mutation fuzzing of the safetensors reader and of a Llama config.json, run in a child process by
// safetensors_fuzz.test.ts and config_fuzz.test.ts (so that a hang or an abort fails the test, not the run).
//
//   node --import tsx test/fuzz_driver.ts <safetensors|config> <seed> <runs> <workDir>
//
// fast-check generates the mutations from the seed (so a failure reproduces) and shrinks a failing one.
// Every case must end, within CASE_MS, in a valid load (whose tensors or model then work) or in a clear
// error: a SafetensorsError naming the file, or a TypeError/RangeError naming the file or the config.json
// field. Before each case a line 'case <n>: <mutation>' goes to stderr, so the parent can name a case that
// hung. The last line printed on stdout is a JSON summary.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  MLP_METADATA_KEY, SafetensorsError, Tensor, forward, loadModel, loadSafetensors, saveSafetensors, tensor, writeRandomLlamaCheckpoint,
} from '../src/index.js';
import { randTensor } from './helpers.js';

const CASE_MS = 3000;

const [kind, seedText, runsText, workDir] = process.argv.slice(2);
if ((kind !== 'safetensors' && kind !== 'config') || !workDir) {
  console.error('usage: fuzz_driver.ts <safetensors|config> <seed> <runs> <workDir>');
  process.exit(2);
}
const seed = Number(seedText);
const runs = Number(runsText);
mkdirSync(workDir, { recursive: true });

// A tiny Llama checkpoint (the config fuzz mutates its config.json, the safetensors fuzz its weights file).
const LLAMA = {
  model_type: 'llama', hidden_act: 'silu', hidden_size: 16, intermediate_size: 24, num_attention_heads: 2, num_key_value_heads: 1,
  num_hidden_layers: 1, rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: 11, tie_word_embeddings: false, max_position_embeddings: 64,
  torch_dtype: 'float32', bos_token_id: 1, eos_token_id: 2,
};
const llamaDir = join(workDir, 'llama-base');
writeRandomLlamaCheckpoint(llamaDir, LLAMA, { dtype: 'f32', seed: 1 });

// --- what a case may end in ------------------------------------------------------------------------------

type Outcome = 'loaded' | 'SafetensorsError' | 'TypeError' | 'RangeError';

/** The outcome of `run`, or throws (failing the property) when the error is not a clear one naming `names`. */
async function classify(run: () => Promise<void> | void, names: string[]): Promise<Outcome> {
  try {
    await run();
    return 'loaded';
  } catch (e) {
    const err = e as Error;
    const clear = e instanceof SafetensorsError || e instanceof TypeError || e instanceof RangeError;
    if (!clear) throw new Error(`not a clear error: ${err?.name}: ${err?.message}\n${err?.stack}`);
    if (!names.some((n) => err.message.includes(n))) throw new Error(`the error names none of ${names.join(', ')}: ${err.name}: ${err.message}`);
    const seen = (samples[err.name] ??= []);
    if (seen.length < 12) seen.push(err.message.slice(0, 300));
    return err.name as Outcome;
  }
}

/** A loaded model must also run: a forward of one input, then dispose(). */
async function loadAndRun(path: string): Promise<void> {
  const model = await loadModel(path);
  try {
    if (model.kind === 'llama') await forward(model, [model.config.vocabSize - 1], { logits: 'last' });
    else await forward(model, tensor(new Float32Array(2 * model.inputFeatures).fill(0.5), [2, model.inputFeatures]));
  } finally {
    model.dispose();
  }
}

// --- safetensors mutations -------------------------------------------------------------------------------

interface BaseFile {
  name: string;
  bytes: Buffer;
  header: Record<string, unknown>;
  /** Where the mutated file goes, and what to run on it besides the reader. */
  path: string;
  model?: string;
}

function readBase(name: string, source: string, path: string, model?: string): BaseFile {
  const bytes = readFileSync(source);
  const length = Number(bytes.readBigUInt64LE(0));
  return { name, bytes, header: JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as Record<string, unknown>, path, model };
}

function safetensorsBases(): BaseFile[] {
  const mixedPath = join(workDir, 'mixed-base.safetensors');
  saveSafetensors(mixedPath, {
    a: randTensor([5, 3], 'f32', 1), b: randTensor([4], 'bf16', 2), c: randTensor([2, 2], 'f16', 3), empty: tensor([], [0, 4]), scalar: tensor([7], []),
    d: { dtype: 'F64', shape: [3], data: new Float64Array([1, -2, 0.5]) }, ids: { dtype: 'I64', shape: [2], data: new BigInt64Array([1n, 2n]) },
  }, { format: 'pt' });
  const mlpPath = join(workDir, 'mlp-base.safetensors');
  saveSafetensors(mlpPath, {
    'fc1.weight': randTensor([6, 4], 'bf16', 4), 'fc1.bias': randTensor([6], 'f32', 5), 'ln.weight': randTensor([6], 'f32', 6),
    'fc2.weight': randTensor([3, 6], 'f32', 7),
  }, {
    [MLP_METADATA_KEY]: JSON.stringify({ type: 'mlp', layers: [
      { op: 'linear', weight: 'fc1.weight', bias: 'fc1.bias', activation: 'relu' }, { op: 'layernorm', weight: 'ln.weight', eps: 1e-5 },
      { op: 'linear', weight: 'fc2.weight' }, { op: 'softmax' },
    ] }),
  });
  const llamaCase = join(workDir, 'llama-case');
  mkdirSync(llamaCase, { recursive: true });
  copyFileSync(join(llamaDir, 'config.json'), join(llamaCase, 'config.json'));
  return [
    readBase('mixed', mixedPath, join(workDir, 'case.safetensors')),
    readBase('mlp', mlpPath, join(workDir, 'case-mlp.safetensors'), join(workDir, 'case-mlp.safetensors')),
    readBase('llama', join(llamaDir, 'model.safetensors'), join(llamaCase, 'model.safetensors'), llamaCase),
  ];
}

// Numbers and non-numbers that break size arithmetic.
const awkwardValue = fc.oneof(
  fc.constantFrom(0, 1, -1, 2, 3, 4, 7, 8, 16, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 52, 2 ** 53, 2 ** 53 + 2, 1e308, -0, 0.5, 1.5, -(2 ** 31)),
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.string({ maxLength: 8 }),
  fc.constantFrom(null, true, false),
  fc.jsonValue({ maxDepth: 3 }),
);
const knownDtype = fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'U8', 'BOOL', 'F8_E4M3', 'F4', 'F6_E2M3', 'C64', 'f32', 'Q4', '');

const jsonEdit = fc.oneof(
  fc.record({ op: fc.constant('offset' as const), tensor: fc.nat(), which: fc.constantFrom(0, 1), value: awkwardValue }),
  fc.record({ op: fc.constant('offsetShift' as const), tensor: fc.nat(), which: fc.constantFrom(0, 1), delta: fc.integer({ min: -16, max: 16 }) }),
  fc.record({ op: fc.constant('dim' as const), tensor: fc.nat(), dim: fc.nat(), value: awkwardValue }),
  fc.record({ op: fc.constant('dims' as const), tensor: fc.nat(), value: fc.array(fc.oneof(fc.constantFrom(0, 1, 2, 2 ** 31 - 1, 2 ** 52), fc.nat()), { maxLength: 70 }) }),
  fc.record({ op: fc.constant('dtype' as const), tensor: fc.nat(), value: fc.oneof(knownDtype, awkwardValue) }),
  fc.record({ op: fc.constant('delete' as const), tensor: fc.nat(), field: fc.constantFrom('dtype', 'shape', 'data_offsets') }),
  fc.record({ op: fc.constant('entry' as const), tensor: fc.nat(), value: awkwardValue }),
  fc.record({ op: fc.constant('add' as const), name: fc.string({ maxLength: 12 }), value: fc.oneof(awkwardValue, fc.record({ dtype: knownDtype, shape: fc.array(fc.nat(9), { maxLength: 3 }), data_offsets: fc.tuple(fc.nat(200), fc.nat(200)) })) }),
  fc.record({ op: fc.constant('rename' as const), tensor: fc.nat(), name: fc.string({ maxLength: 12 }) }),
  fc.record({ op: fc.constant('metadata' as const), value: awkwardValue }),
  fc.record({ op: fc.constant('spec' as const), layer: fc.nat(), field: fc.constantFrom('op', 'weight', 'bias', 'activation', 'eps', 'type', 'layers'), value: awkwardValue }),
);

const safetensorsMutation = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('flip' as const), flips: fc.array(fc.record({ at: fc.nat(), bit: fc.nat(7), inHeader: fc.boolean() }), { minLength: 1, maxLength: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('bytes' as const), at: fc.nat(), inHeader: fc.boolean(), values: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('length' as const), value: fc.oneof(fc.constantFrom(0n, 1n, 2n, 7n, 8n, 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), delta: fc.option(fc.integer({ min: -16, max: 16 })) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ maxLength: 64 }) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('json' as const), edits: fc.array(jsonEdit, { minLength: 1, maxLength: 4 }), lengthRight: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('text' as const), inserts: fc.array(fc.record({ at: fc.nat(), text: fc.string({ unit: fc.constantFrom(...'0123456789,[]{}":-.eE \\u\u00ff'), minLength: 1, maxLength: 6 }) }), { minLength: 1, maxLength: 4 }) }) },
);

type SafetensorsMutation = typeof safetensorsMutation extends fc.Arbitrary<infer T> ? T : never;

function withLength(json: Buffer, lengthField: bigint, data: Buffer): Buffer {
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthField);
  return Buffer.concat([prefix, json, data]);
}

function applySafetensorsMutation(base: BaseFile, m: SafetensorsMutation): Buffer {
  const bytes = Buffer.from(base.bytes);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const headerEnd = 8 + headerLength;
  const pos = (at: number, inHeader: boolean) => (inHeader ? at % headerEnd : at % bytes.length);
  switch (m.kind) {
    case 'flip':
      for (const f of m.flips) bytes[pos(f.at, f.inHeader)] ^= 1 << f.bit;
      return bytes;
    case 'bytes':
      m.values.forEach((v, i) => {
        const at = pos(m.at + i, m.inHeader);
        bytes[at] = v;
      });
      return bytes;
    case 'length': {
      const value = m.delta === null ? m.value : BigInt(Math.max(0, headerLength + m.delta));
      bytes.writeBigUInt64LE(value, 0);
      return bytes;
    }
    case 'truncate':
      return bytes.subarray(0, m.at % (bytes.length + 1));
    case 'append':
      return Buffer.concat([bytes, m.bytes]);
    case 'text': {
      let text = bytes.subarray(8, headerEnd).toString('latin1');
      for (const ins of m.inserts) {
        const at = ins.at % (text.length + 1);
        text = text.slice(0, at) + ins.text + text.slice(at + (ins.at % 3));
      }
      const json = Buffer.from(text, 'latin1');
      return withLength(json, BigInt(json.length), bytes.subarray(headerEnd));
    }
    case 'json': {
      const header = structuredClone(base.header) as Record<string, unknown>;
      const names = () => Object.keys(header).filter((k) => k !== '__metadata__');
      const entryOf = (i: number): Record<string, unknown> | undefined => {
        const n = names();
        if (n.length === 0) return undefined;
        const e = header[n[i % n.length]];
        return e !== null && typeof e === 'object' && !Array.isArray(e) ? (e as Record<string, unknown>) : undefined;
      };
      for (const e of m.edits) {
        if (e.op === 'offset' || e.op === 'offsetShift') {
          const entry = entryOf(e.tensor);
          const offsets = entry?.data_offsets;
          if (Array.isArray(offsets)) offsets[e.which] = e.op === 'offset' ? e.value : Number(offsets[e.which]) + e.delta;
        } else if (e.op === 'dim') {
          const shape = entryOf(e.tensor)?.shape;
          if (Array.isArray(shape) && shape.length > 0) shape[e.dim % shape.length] = e.value;
        } else if (e.op === 'dims' || e.op === 'dtype') {
          const entry = entryOf(e.tensor);
          if (entry) entry[e.op === 'dims' ? 'shape' : 'dtype'] = e.value;
        } else if (e.op === 'delete') {
          const entry = entryOf(e.tensor);
          if (entry) delete entry[e.field];
        } else if (e.op === 'entry' || e.op === 'rename') {
          const n = names();
          if (n.length === 0) continue;
          const name = n[e.tensor % n.length];
          if (e.op === 'entry') header[name] = e.value;
          else {
            header[e.name] = header[name];
            if (e.name !== name) delete header[name];
          }
        } else if (e.op === 'add') {
          header[e.name] = e.value;
        } else if (e.op === 'metadata') {
          header.__metadata__ = e.value;
        } else if (e.op === 'spec') {
          const meta = header.__metadata__ as Record<string, string> | undefined;
          const text = meta?.[MLP_METADATA_KEY];
          if (meta === undefined || typeof text !== 'string') continue;
          const spec = JSON.parse(text) as Record<string, unknown>;
          const layers = spec.layers;
          if (e.field === 'type' || e.field === 'layers') spec[e.field] = e.value;
          else if (Array.isArray(layers) && layers.length > 0) {
            const layer = layers[e.layer % layers.length] as unknown;
            if (layer !== null && typeof layer === 'object') (layer as Record<string, unknown>)[e.field] = e.value;
          }
          meta[MLP_METADATA_KEY] = JSON.stringify(spec);
        }
      }
      const json = Buffer.from(JSON.stringify(header));
      return withLength(json, BigInt(m.lengthRight ? json.length : headerLength), bytes.subarray(headerEnd));
    }
  }
}

// --- config.json mutations -------------------------------------------------------------------------------

const CONFIG_FIELDS = Object.keys(LLAMA).concat(['head_dim', 'rope_scaling', 'attention_bias']);

// Raw JSON text for a value, so that 1e400, -0 and 1.0 can appear as written.
const rawValue = fc.oneof(
  fc.constantFrom('-1', '0', '-0', '1', '2', '3', '1.5', '1e400', '-1e400', '1e9', '1e15', '2147483647', '2147483648', '4294967296',
    '9007199254740993', '1e308', '5e-324', '"64"', '"llama"', 'true', 'false', 'null', '[]', '{}', '[16]', '{"type":"linear","factor":2}'),
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null'),
  fc.string({ maxLength: 10 }).map((s) => JSON.stringify(s)),
);

const configEdit = fc.oneof(
  fc.record({ op: fc.constant('delete' as const), field: fc.constantFrom(...CONFIG_FIELDS) }),
  { weight: 4, arbitrary: fc.record({ op: fc.constant('set' as const), field: fc.constantFrom(...CONFIG_FIELDS), raw: rawValue }) },
  fc.record({ op: fc.constant('add' as const), field: fc.string({ maxLength: 10 }), raw: rawValue }),
);

const configMutation = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('fields' as const), edits: fc.array(configEdit, { minLength: 1, maxLength: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('junk' as const), raw: fc.oneof(rawValue, fc.string({ maxLength: 40 })) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bytes' as const), at: fc.nat(), values: fc.uint8Array({ minLength: 1, maxLength: 4 }) }) },
);

type ConfigMutation = typeof configMutation extends fc.Arbitrary<infer T> ? T : never;

function configText(m: ConfigMutation): Buffer {
  const entries: [string, string][] = Object.entries(LLAMA).map(([k, v]) => [k, JSON.stringify(v)]);
  const base = () => `{${entries.map(([k, raw]) => `${JSON.stringify(k)}:${raw}`).join(',')}}`;
  switch (m.kind) {
    case 'fields':
      for (const e of m.edits) {
        const at = entries.findIndex(([k]) => k === e.field);
        if (e.op === 'delete') {
          if (at >= 0) entries.splice(at, 1);
        } else if (at >= 0) entries[at][1] = e.raw;
        else entries.push([e.field, e.raw]);
      }
      return Buffer.from(base());
    case 'truncate': {
      const text = base();
      return Buffer.from(text.slice(0, m.at % (text.length + 1)));
    }
    case 'junk':
      return Buffer.from(m.raw);
    case 'bytes': {
      const bytes = Buffer.from(base());
      m.values.forEach((v, i) => (bytes[(m.at + i) % bytes.length] = v));
      return bytes;
    }
  }
}

// --- the run -----------------------------------------------------------------------------------------------

const outcomes: Record<string, number> = {};
const samples: Record<string, string[]> = {}; // a few error messages of each kind, for GEMMKIT_FUZZ_SAMPLES
let caseNumber = 0;
let maxCaseMs = 0;

async function timed(what: string, body: () => Promise<void>): Promise<void> {
  caseNumber++;
  process.stderr.write(`case ${caseNumber}: ${what}\n`); // synchronous on a pipe
  const start = performance.now();
  await body();
  const ms = performance.now() - start;
  maxCaseMs = Math.max(maxCaseMs, ms);
  if (ms > CASE_MS) throw new Error(`case took ${ms.toFixed(0)} ms (bound ${CASE_MS} ms)`);
}

function count(outcome: string): void {
  outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
}

const start = performance.now();
let details: { failed: boolean; numRuns: number };
let report: string | undefined;
if (kind === 'safetensors') {
  const bases = safetensorsBases();
  const run = await fc.check(fc.asyncProperty(fc.nat(bases.length - 1), safetensorsMutation, async (which, m) => {
    const base = bases[which];
    await timed(`${base.name} ${JSON.stringify(m, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`, async () => {
      writeFileSync(base.path, applySafetensorsMutation(base, m));
      const read = await classify(() => {
        const { tensors } = loadSafetensors(base.path);
        for (const [name, t] of tensors) {
          if (!(t instanceof Tensor) || t.data.length !== t.shape.reduce((p, d) => p * d, 1)) throw new Error(`tensor '${name}' does not match its shape`);
        }
      }, [base.path]);
      if (read !== 'loaded' && read !== 'SafetensorsError') throw new Error(`the reader gave a ${read}, not a SafetensorsError`);
      count(`reader ${read}`);
      if (base.model) count(`loadModel ${await classify(() => loadAndRun(base.model!), [base.model])}`);
    });
  }), { seed, numRuns: runs });
  details = run;
  report = run.failed ? fc.defaultReportMessage(run) : undefined;
} else {
  const dirPath = join(workDir, 'llama-config');
  mkdirSync(dirPath, { recursive: true });
  copyFileSync(join(llamaDir, 'model.safetensors'), join(dirPath, 'model.safetensors'));
  const configPath = join(dirPath, 'config.json');
  const run = await fc.check(fc.asyncProperty(configMutation, async (m) => {
    await timed(JSON.stringify(m), async () => {
      writeFileSync(configPath, configText(m));
      count(`loadModel ${await classify(() => loadAndRun(dirPath), [configPath, dirPath, 'config.json'])}`);
    });
  }), { seed, numRuns: runs });
  details = run;
  report = run.failed ? fc.defaultReportMessage(run) : undefined;
}
const summary = {
  kind, seed, runs: details.numRuns, cases: caseNumber, failed: details.failed, ms: Math.round(performance.now() - start),
  maxCaseMs: Math.round(maxCaseMs), outcomes, report, samples: process.env.GEMMKIT_FUZZ_SAMPLES ? samples : undefined,
};
console.log(JSON.stringify(summary));
process.exitCode = details.failed ? 1 : 0;
