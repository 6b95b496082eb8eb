// Where the tuner's shapes come from: `--shape MxNxK`, shape files, and a model's weights.
// Shape files are CSV in one of three formats, told apart by the header:
//   ours:    backend,dtype,out_dtype,trans_a,trans_b,epilogue,m,n,k   (what GEMMKIT_RECORD_UNTUNED writes)
//   tuned:   a gemmkit tuned file (its rows' keys are tuned again)
//   Gradlib: M,N,K,bias,dtype[,outdtype,...] as vLLM/Gradlib write them: F.linear(x[M, K], W[N, K]),
//            i.e. transB, with dtype torch.float32 / torch.float16 / torch.bfloat16.
import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import type { Device } from '../device.js';
import type { DType } from '../dtype.js';
import type { Activation } from '../native.js';
import { modelGemmShapes } from '../models/index.js';
import { type GemmSpec, parseInteger } from './key.js';
import { UNTUNED_COLUMNS, parseUntunedRecord } from './record.js';
import { MAGIC_LINE, parseTunedFile } from './tuned_file.js';

/** Defaults for what a shape string or a file row does not say. */
export interface ShapeDefaults {
  dtype: DType;
  outDtype?: DType;
  transA: boolean;
  transB: boolean;
  bias: boolean;
  activation: Activation;
  /** B will be a prepack()ed weight (see GemmSpec.prepacked). Default false. */
  prepacked?: boolean;
}

export class ShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShapeError';
  }
}

/** "128x4096x4096" (M x N x K, each a positive integer). */
export function parseShapeArg(s: string, d: ShapeDefaults): GemmSpec {
  const m = /^([0-9]+)x([0-9]+)x([0-9]+)$/.exec(s.trim());
  const dims = m ? [m[1], m[2], m[3]].map(Number) : [];
  if (!m || dims.some((x) => !Number.isSafeInteger(x) || x < 1)) {
    throw new ShapeError(`--shape ${JSON.stringify(s)} is not MxNxK with positive integers (e.g. --shape 128x4096x4096)`);
  }
  return {
    m: dims[0], n: dims[1], k: dims[2], dtypeA: d.dtype, dtypeB: d.dtype, outDtype: d.outDtype ?? d.dtype,
    transA: d.transA, transB: d.transB, bias: d.bias, activation: d.activation, prepacked: d.prepacked ?? false, label: `--shape ${s}`,
  };
}

const TORCH_DTYPES: Record<string, DType> = {
  'torch.float32': 'f32', 'torch.float': 'f32', 'torch.float16': 'f16', 'torch.half': 'f16', 'torch.bfloat16': 'bf16',
  float32: 'f32', float16: 'f16', bfloat16: 'bf16', f32: 'f32', f16: 'f16', bf16: 'bf16',
};

function gradlibShapes(path: string, records: { record: string[]; info: { lines: number } }[], d: ShapeDefaults): GemmSpec[] {
  const header = records[0].record.map((h) => h.trim());
  const col = (name: string) => header.findIndex((h) => h.toLowerCase() === name.toLowerCase());
  const [iM, iN, iK, iBias, iDtype, iOut, iScale] = ['M', 'N', 'K', 'bias', 'dtype', 'outdtype', 'scaleAB'].map(col);
  const out: GemmSpec[] = [];
  for (const { record, info } of records.slice(1)) {
    const at = `${path}:${info.lines}`;
    if (record.length !== header.length) throw new ShapeError(`${at}: has ${record.length} fields but the header has ${header.length}`);
    const dims = [iM, iN, iK].map((i) => record[i].trim());
    if (dims.some((x) => parseInteger(x, 1) === undefined)) {
      throw new ShapeError(`${at}: M, N and K must be positive integers, got ${dims.join(', ')}`);
    }
    const bool = (i: number, name: string) => {
      if (i < 0) return false;
      const v = record[i].trim().toLowerCase();
      if (v !== 'true' && v !== 'false' && v !== '1' && v !== '0') throw new ShapeError(`${at}: ${name} must be True or False, got ${JSON.stringify(record[i])}`);
      return v === 'true' || v === '1';
    };
    const dtypeOf = (i: number, name: string, fallback: DType | undefined) => {
      if (i < 0 || record[i].trim() === '') return fallback;
      const t = TORCH_DTYPES[record[i].trim()];
      if (!t) throw new ShapeError(`${at}: ${name} ${JSON.stringify(record[i])} is not one of ${Object.keys(TORCH_DTYPES).slice(0, 5).join(', ')}`);
      return t;
    };
    if (bool(iScale, 'scaleAB')) throw new ShapeError(`${at}: scaled (fp8) GEMMs (scaleAB True) are not supported`);
    const dtype = dtypeOf(iDtype, 'dtype', d.dtype)!;
    out.push({
      m: Number(dims[0]), n: Number(dims[1]), k: Number(dims[2]), dtypeA: dtype, dtypeB: dtype,
      outDtype: dtypeOf(iOut, 'outdtype', undefined) ?? dtype, transA: false, transB: true,
      bias: bool(iBias, 'bias'), activation: 'none', prepacked: d.prepacked ?? false, label: at,
    });
  }
  return out;
}

/** The shapes of a shape file (any of the three formats); errors name the file and line. */
export function readShapesFile(path: string, d: ShapeDefaults): GemmSpec[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ShapeError(`--shapes ${path}: cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (text.startsWith(MAGIC_LINE)) {
    return parseTunedFile(path, text).rows.map((r) => ({
      m: r.m, n: r.n, k: r.k, dtypeA: r.dtypeA, dtypeB: r.dtypeB, outDtype: r.outDtype, transA: r.transA,
      transB: r.transB, prepacked: r.prepacked, bias: r.bias, activation: r.activation, label: `${path}:${r.line}`,
    }));
  }
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { info: true, relax_column_count: true, skip_empty_lines: true }) as unknown as typeof records;
  } catch (e) {
    throw new ShapeError(`${path}:${(e as { lines?: number }).lines ?? '?'}: not valid CSV: ${(e as Error).message}`);
  }
  if (records.length === 0) throw new ShapeError(`${path}: the file is empty (expected a header row)`);
  const header = records[0].record.map((h) => h.trim());
  if (header.join(',') === UNTUNED_COLUMNS.join(',')) {
    return records.slice(1).map(({ record, info }) => {
      const s = parseUntunedRecord(record);
      if (!s) throw new ShapeError(`${path}:${info.lines}: not a valid row of ${UNTUNED_COLUMNS.join(',')} (got ${record.join(',')})`);
      const { backend: _backend, ...spec } = s;
      return { ...spec, label: `${path}:${info.lines}` };
    });
  }
  const lower = header.map((h) => h.toLowerCase());
  if (lower[0] === 'backend') {
    throw new ShapeError(`${path}:1: the header ${JSON.stringify(header.join(','))} is not ${UNTUNED_COLUMNS.join(',')} (the GEMMKIT_RECORD_UNTUNED format)`);
  }
  if (lower.includes('m') && lower.includes('n') && lower.includes('k')) return gradlibShapes(path, records, d);
  throw new ShapeError(
    `${path}:1: unknown shape file header ${JSON.stringify(header.join(','))}; expected ${UNTUNED_COLUMNS.join(',')} ` +
      '(GEMMKIT_RECORD_UNTUNED), M,N,K,bias,dtype (vLLM/Gradlib) or a gemmkit tuned file',
  );
}

/**
 * The GEMMs forward() runs for a model (a gemmkit MLP .safetensors or a Llama checkpoint) loaded on `device`,
 * at each batch size, from the models module: A in the dtype the model feeds the GEMM there
 * (linearInputDtype), results f32; the weight (B) keeps its dtype and is applied as x @ W^T, prepacked at
 * load on the CPU (so the shapes are tuned as prepacked) and a plain device tensor on a GPU. A GEMM forward
 * runs with beta = 1 (a fused residual add) is tuned with beta = 0: beta is not part of the key, and it
 * changes the work by one read of C.
 */
export async function modelShapes(path: string, batches: number[], d: ShapeDefaults, device: Device = 'cpu'): Promise<GemmSpec[]> {
  let shapes;
  try {
    shapes = await modelGemmShapes(path, batches, { device });
  } catch (e) {
    throw new ShapeError(`--model ${path}: ${(e as Error).message}`);
  }
  return shapes.map((s) => ({
    m: s.m, n: s.n, k: s.k, dtypeA: s.dtypeA, dtypeB: s.dtype, outDtype: d.outDtype ?? s.dtypeC, transA: false,
    transB: s.transB, prepacked: s.prepacked, bias: s.bias, activation: s.activation, label: `${path}: ${s.name}`,
  }));
}
