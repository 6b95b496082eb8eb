// The ops beyond GEMM a model needs (native/core/ops.h): embedding, RMSNorm, LayerNorm, rotary embeddings,
// the KV-cache store, causal grouped-query attention, softmax, SwiGLU, add, activations, argmax and cast.
// Each validates its arguments (TypeError / RangeError naming the argument and shapes), runs natively on
// the device where its tensors live (the CPU addon for 'cpu', the GPU addon's opSync for 'cuda:<n>' /
// 'hip:<n>') and allocates its result on that device. Arithmetic is f32 whatever the storage dtype; a
// 16-bit result is rounded once to nearest even.
//
// Matrices are row-major: a tensor of any rank is [rows = the product of its leading dimensions, cols =
// its last]. Where a model needs a block of a wider matrix without a copy (q, k and v inside one fused
// projection output), the lower-level form takes a MatrixView (matrixView(), columns()): rows x cols at an
// element offset with a row stride. Views are this module's internal form; the package exports Tensors.
import { type Placement, parseDevice } from './device.js';
import { type DType, dtypeSize, isDType } from './dtype.js';
import { formatShape } from './errors.js';
import { ACTIVATIONS, type Activation, type OpDesc, type OpKindName, OP_KINDS, buildScript, cpuNative, gpuNative } from './native.js';
import { allocate, allocateOnDevice, checkTensor, overlaps } from './problem.js';
import { Tensor, describeValue, tensor } from './tensor.js';

/** rows x cols of a tensor's elements from `offset`, row stride `ld` (>= cols). */
export interface MatrixView {
  readonly tensor: Tensor;
  readonly offset: number;
  readonly rows: number;
  readonly cols: number;
  readonly ld: number;
}

/** A tensor (as [rows, cols]) or a view of one. */
export type OpInput = Tensor | MatrixView;

function isView(x: unknown): x is MatrixView {
  return typeof x === 'object' && x !== null && !(x instanceof Tensor) && (x as MatrixView).tensor instanceof Tensor;
}

function checkCount(where: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`${where}: ${name} must be a non-negative integer, got ${typeof v === 'number' ? v : describeValue(v)}`);
  }
  return v;
}

/** A view of `t`'s elements; every element it spans must lie inside t. */
export function matrixView(t: Tensor, view: { offset?: number; rows: number; cols: number; ld?: number }): MatrixView {
  const where = 'matrixView';
  checkTensor(where, 'tensor', t);
  const offset = checkCount(where, 'offset', view.offset ?? 0);
  const rows = checkCount(where, 'rows', view.rows), cols = checkCount(where, 'cols', view.cols);
  const ld = checkCount(where, 'ld', view.ld ?? cols);
  if (ld < cols) throw new RangeError(`${where}: ld = ${ld} is less than cols = ${cols}`);
  const extent = rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
  if (offset + extent > t.size) {
    throw new RangeError(`${where}: [${rows}, ${cols}] with ld ${ld} from element ${offset} spans ${offset + extent} elements but the tensor ${formatShape(t.shape)} has ${t.size}`);
  }
  return { tensor: t, offset, rows, cols, ld };
}

/** Columns [start, start + width) of a 2-D tensor [rows, n], as a view (no copy). */
export function columns(t: Tensor, start: number, width: number): MatrixView {
  if (t.shape.length !== 2) throw new RangeError(`columns: the tensor is ${formatShape(t.shape)}; expected [rows, cols]`);
  const [rows, n] = t.shape;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(width) || start < 0 || width < 0 || start + width > n) {
    throw new RangeError(`columns: [${start}, ${start + width}) is not inside the ${n} columns of ${formatShape(t.shape)}`);
  }
  return matrixView(t, { offset: start, rows, cols: width, ld: n });
}

// A tensor as [rows, cols] (rank >= 1), or a checked view.
function asMatrix(where: string, name: string, x: unknown): MatrixView {
  if (isView(x)) {
    checkTensor(where, name, x.tensor);
    try {
      return matrixView(x.tensor, x);
    } catch (e) {
      throw new RangeError(`${where}: ${name}: ${(e as Error).message.replace(/^matrixView: /, '')}`);
    }
  }
  const t = checkTensor(where, name, x);
  if (t.shape.length === 0) throw new RangeError(`${where}: ${name} is a scalar ${formatShape(t.shape)}; expected at least [cols]`);
  const cols = t.shape[t.shape.length - 1];
  const rows = t.shape.slice(0, -1).reduce((p, d) => p * d, 1);
  return { tensor: t, offset: 0, rows, cols, ld: cols };
}

function viewShape(v: MatrixView): string {
  return v.ld === v.cols && v.offset === 0 ? formatShape(v.tensor.shape) : `[${v.rows}, ${v.cols}] (ld ${v.ld})`;
}

function checkOptions(where: string, opts: unknown, keys: readonly string[]): Record<string, unknown> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object') throw new TypeError(`${where}: options must be an object, got ${describeValue(opts)}`);
  for (const key of Object.keys(opts)) {
    if (!keys.includes(key)) throw new TypeError(`${where}: unknown option '${key}' (known: ${keys.join(', ')})`);
  }
  return opts as Record<string, unknown>;
}

function checkDtypeOption(where: string, name: string, v: unknown): DType | undefined {
  if (v === undefined) return undefined;
  if (!isDType(v)) throw new TypeError(`${where}: ${name} must be 'f32', 'f16' or 'bf16', got ${JSON.stringify(v)}`);
  return v;
}

// Host int arrays: integers that fit int32 (the native side checks them against what they index).
function int32s(where: string, name: string, v: unknown, length?: number): Int32Array {
  let out: Int32Array;
  if (v instanceof Int32Array) out = v;
  else if (Array.isArray(v) || ArrayBuffer.isView(v)) {
    const a = v as ArrayLike<unknown>;
    out = new Int32Array(a.length);
    for (let i = 0; i < a.length; i++) {
      const x = a[i];
      if (typeof x !== 'number' || !Number.isInteger(x) || x < -(2 ** 31) || x >= 2 ** 31) {
        throw new RangeError(`${where}: ${name}[${i}] is ${JSON.stringify(x)}; expected an integer`);
      }
      out[i] = x;
    }
  } else throw new TypeError(`${where}: ${name} must be an Int32Array or an array of integers, got ${describeValue(v)}`);
  if (length !== undefined && out.length !== length) throw new RangeError(`${where}: ${name} has ${out.length} entries; expected ${length}`);
  return out;
}

// --- running an op where its tensors are ---------------------------------------------------------------------

/** The operands of one op (see OpDesc): views or tensors for memory, host Int32Arrays for indices. */
export interface OpOperands {
  x?: MatrixView;
  y?: MatrixView;
  out?: MatrixView;
  weight?: Tensor;
  bias?: Tensor;
  kCache?: Tensor;
  vCache?: Tensor;
  ids?: Int32Array;
  positions?: Int32Array;
  slotIndex?: Int32Array;
  past?: Int32Array;
  idsOut?: Int32Array;
}

/** The scalar fields of an op (OpDesc less its operands and the strides and dtypes the operands give). */
export type OpFields = Omit<OpDesc, 'kind' | 'ldx' | 'ldy' | 'ldout' | 'dtypeX' | 'dtypeY' | 'dtypeOut' | 'device' | keyof OpOperands>;

function placeOf(where: string, ops: OpOperands): Placement {
  let device: string | undefined, first = '';
  for (const [name, v] of Object.entries(ops)) {
    const t = v instanceof Tensor ? v : isView(v) ? v.tensor : undefined;
    if (!t) continue;
    if (device === undefined) [device, first] = [t.device, name];
    else if (t.device !== device) {
      throw new TypeError(`${where}: ${first} is on ${device} but ${name} is on ${t.device}; move them to one device with .to(${JSON.stringify(device)})`);
    }
  }
  return parseDevice(where, device ?? 'cpu');
}

function memory(where: string, name: string, t: Tensor, offset: number): NonNullable<OpDesc['x']> {
  if (t.storage) return { buffer: t.storage.handle(`${where}: ${name}`), byteOffset: offset * dtypeSize(t.dtype) };
  return offset === 0 ? t.data : t.data.subarray(offset);
}

function buildDesc(where: string, kind: OpKindName, fields: OpFields, ops: OpOperands, place: Placement): OpDesc {
  const desc: OpDesc = { kind: OP_KINDS[kind], ...fields };
  if (place.backend !== 'cpu') desc.device = place.index;
  for (const [name, key, ldKey, dtypeKey] of [['x', 'x', 'ldx', 'dtypeX'], ['y', 'y', 'ldy', 'dtypeY'], ['out', 'out', 'ldout', 'dtypeOut']] as const) {
    const v = ops[name];
    if (!v) continue;
    desc[key] = memory(where, name, v.tensor, v.offset);
    desc[ldKey] = v.ld;
    desc[dtypeKey] = v.tensor.dtype;
  }
  if (ops.weight) desc.weight = memory(where, 'weight', ops.weight, 0);
  if (ops.bias) desc.bias = memory(where, 'bias', ops.bias, 0);
  if (ops.kCache) desc.kCache = memory(where, 'kCache', ops.kCache, 0) as OpDesc['kCache'];
  if (ops.vCache) desc.vCache = memory(where, 'vCache', ops.vCache, 0) as OpDesc['vCache'];
  for (const name of ['ids', 'positions', 'slotIndex', 'past', 'idsOut'] as const) {
    if (ops[name]) desc[name] = ops[name];
  }
  return desc;
}

function nativeFor(where: string, place: Placement): { opSync(d: OpDesc): void; opAsync(d: OpDesc): Promise<void> } {
  if (place.backend === 'cpu') return cpuNative();
  const native = gpuNative(place.backend, where);
  if (typeof native.opSync !== 'function' || typeof native.opAsync !== 'function') {
    throw new Error(`${where}: the ${place.backend} addon has no ops beyond GEMM; rebuild it with \`npm run ${buildScript(place.backend)}\``);
  }
  return native as { opSync(d: OpDesc): void; opAsync(d: OpDesc): Promise<void> };
}

/**
 * Runs one op on the device of its operands (all on one device), synchronously. The lower-level form
 * behind every function here; the native side checks extents and indices again.
 */
export function runOp(where: string, kind: OpKindName, fields: OpFields, ops: OpOperands): void {
  const place = placeOf(where, ops);
  nativeFor(where, place).opSync(buildDesc(where, kind, fields, ops, place));
}

/** runOp off the event loop (the CPU addon's libuv pool; a GPU addon's stream, waited for off the loop). */
export function runOpAsync(where: string, kind: OpKindName, fields: OpFields, ops: OpOperands): Promise<void> {
  const place = placeOf(where, ops);
  return nativeFor(where, place).opAsync(buildDesc(where, kind, fields, ops, place));
}

/**
 * One op whose description is built once and run many times: what a model runs at every step on buffers
 * it reuses. The device, the native entry and the operands' memory are settled here; a call then costs
 * only the addon's own checks. The host int arrays (ids, positions, slotIndex, past, idsOut) are held by
 * reference, so the caller refills them between runs (the addon copies them at each call). The operands
 * must stay alive and undisposed while it is used; the addon checks every extent and index again, so a
 * stale or malformed one is an error, never a stray access.
 */
export class PreparedOp {
  readonly desc: OpDesc;
  readonly #native: { opSync(d: OpDesc): void; opAsync(d: OpDesc): Promise<void> };

  constructor(where: string, kind: OpKindName, fields: OpFields, ops: OpOperands) {
    const place = placeOf(where, ops);
    this.#native = nativeFor(where, place);
    this.desc = buildDesc(where, kind, fields, ops, place);
  }

  run(): void {
    this.#native.opSync(this.desc);
  }

  runAsync(): Promise<void> {
    return this.#native.opAsync(this.desc);
  }
}

// The result of an op: `out` when given (checked: device, shape, no overlap with inputs that it may not
// alias), else a new tensor of `shape` on the device of `like`.
function output(where: string, outOpt: unknown, like: Tensor, dtype: DType, shape: number[], rows: number, cols: number,
                inputs: [string, MatrixView | Tensor | undefined][] = []): { view: MatrixView; result: Tensor } {
  if (outOpt === undefined) {
    const place = parseDevice(where, like.device);
    const t = place.backend === 'cpu' ? allocate(where, dtype, shape) : allocateOnDevice(where, place, dtype, shape);
    return { view: { tensor: t, offset: 0, rows, cols, ld: cols }, result: t };
  }
  const view = asMatrix(where, 'out', outOpt);
  if (view.tensor.dtype !== dtype) throw new TypeError(`${where}: out is ${view.tensor.dtype} but the result is ${dtype}`);
  if (view.rows !== rows || view.cols !== cols) {
    throw new RangeError(`${where}: out is ${viewShape(view)} but the result is [${rows}, ${cols}]`);
  }
  if (view.tensor.device !== like.device) {
    throw new TypeError(`${where}: out is on ${view.tensor.device} but the inputs are on ${like.device}`);
  }
  for (const [name, v] of inputs) {
    if (v && viewsOverlap(view, v instanceof Tensor ? asMatrix(where, name, v) : v)) {
      throw new TypeError(`${where}: out shares memory with ${name}; the result would overwrite its own input`);
    }
  }
  return { view, result: view.tensor };
}

function resultShape(x: OpInput, v: MatrixView): number[] {
  return x instanceof Tensor ? [...x.shape] : [v.rows, v.cols];
}

function vectorOf(where: string, name: string, t: unknown, n: number): Tensor {
  const w = checkTensor(where, name, t);
  if (w.shape.length !== 1 || w.shape[0] !== n) throw new RangeError(`${where}: ${name} is ${formatShape(w.shape)} but x has ${n} columns (expected [${n}])`);
  return w;
}

// Whether two views may touch a common element: column blocks of one tensor with one row stride overlap only
// where both their rows and their columns do; other views of shared memory are taken to overlap.
function viewsOverlap(a: MatrixView, b: MatrixView): boolean {
  if (a.rows === 0 || a.cols === 0 || b.rows === 0 || b.cols === 0 || !overlaps(a.tensor, b.tensor)) return false;
  if (a.tensor !== b.tensor || a.ld !== b.ld || a.ld === 0) return true;
  const [ra, ca, rb, cb] = [Math.floor(a.offset / a.ld), a.offset % a.ld, Math.floor(b.offset / b.ld), b.offset % b.ld];
  if (ca + a.cols > a.ld || cb + b.cols > b.ld) return true; // a block that wraps a row
  return ra < rb + b.rows && rb < ra + a.rows && ca < cb + b.cols && cb < ca + a.cols;
}

// Out may be exactly x (same memory and layout) for the ops that allow it; any other overlap is an error.
function sameView(a: MatrixView, b: MatrixView): boolean {
  return a.tensor === b.tensor && a.offset === b.offset && a.ld === b.ld;
}

// --- the ops -------------------------------------------------------------------------------------------------

export interface OutOptions {
  /** dtype of the result (default: the input's). */
  outDtype?: DType;
  /** Where to write the result (its dtype is the result's); allocated when absent. */
  out?: OpInput;
}

function outDtypeOf(where: string, o: Record<string, unknown>, fallback: DType): DType {
  const want = checkDtypeOption(where, 'outDtype', o.outDtype);
  const outTensor = o.out instanceof Tensor ? o.out : isView(o.out) ? o.out.tensor : undefined;
  if (want && outTensor && outTensor.dtype !== want) throw new TypeError(`${where}: outDtype is '${want}' but out is ${outTensor.dtype}`);
  return want ?? outTensor?.dtype ?? fallback;
}

/** Rows of `table` [vocab, dim] by token id: [ids.length, dim] (default: the table's dtype). */
export function embedding(table: Tensor, ids: Int32Array | readonly number[], opts?: OutOptions): Tensor {
  const where = 'embedding';
  const o = checkOptions(where, opts, ['outDtype', 'out']);
  const t = checkTensor(where, 'table', table);
  if (t.shape.length !== 2) throw new RangeError(`${where}: table is ${formatShape(t.shape)}; expected [vocab, dim]`);
  const [vocab, dim] = t.shape;
  const idx = int32s(where, 'ids', ids);
  for (let i = 0; i < idx.length; i++) {
    if (idx[i] < 0 || idx[i] >= vocab) throw new RangeError(`${where}: ids[${i}] = ${idx[i]} is outside the table's [0, ${vocab})`);
  }
  const { view, result } = output(where, o.out, t, outDtypeOf(where, o, t.dtype), [idx.length, dim], idx.length, dim, [['table', t]]);
  runOp(where, 'embedding', { rows: idx.length, cols: dim, vocab }, { x: { tensor: t, offset: 0, rows: vocab, cols: dim, ld: dim }, out: view, ids: idx });
  return result;
}

export interface NormOptions extends OutOptions {
  /** Added to the mean square (or variance) before the square root. */
  eps: number;
}

function norm(where: string, kind: 'rmsNorm' | 'layerNorm', x: OpInput, weight: Tensor, bias: Tensor | undefined, opts: unknown): Tensor {
  const o = checkOptions(where, opts, ['eps', 'outDtype', 'out']);
  if (typeof o.eps !== 'number' || !Number.isFinite(o.eps) || o.eps < 0) {
    throw new RangeError(`${where}: eps must be a finite number >= 0, got ${typeof o.eps === 'number' ? o.eps : describeValue(o.eps)}`);
  }
  const v = asMatrix(where, 'x', x);
  const w = vectorOf(where, 'weight', weight, v.cols);
  const b = bias === undefined ? undefined : vectorOf(where, 'bias', bias, v.cols);
  if (b && b.dtype !== w.dtype) throw new TypeError(`${where}: weight is ${w.dtype} but bias is ${b.dtype} (they share one dtype)`);
  const dtype = outDtypeOf(where, o, v.tensor.dtype);
  const out = output(where, o.out, v.tensor, dtype, resultShape(x, v), v.rows, v.cols, sameViewOrInputs(o.out, v, [['weight', w], ['bias', b]]));
  runOp(where, kind, { rows: v.rows, cols: v.cols, eps: o.eps, dtypeWeight: w.dtype }, { x: v, out: out.view, weight: w, bias: b });
  return out.result;
}

// The inputs out may not overlap: x unless out is exactly x (the row ops read a row before writing it).
function sameViewOrInputs(outOpt: unknown, x: MatrixView, others: [string, MatrixView | Tensor | undefined][]): [string, MatrixView | Tensor | undefined][] {
  if (outOpt !== undefined && (outOpt instanceof Tensor || isView(outOpt))) {
    const o = outOpt instanceof Tensor ? asMatrix('', 'out', outOpt) : outOpt;
    if (sameView(o, x)) return others;
  }
  return [['x', x], ...others];
}

/** x / sqrt(mean(x^2) + eps) * weight, over the last dimension of x; weight: [cols]. out may be x. */
export function rmsNorm(x: OpInput, weight: Tensor, opts: NormOptions): Tensor {
  return norm('rmsNorm', 'rmsNorm', x, weight, undefined, opts);
}

/** (x - mean) / sqrt(var + eps) * weight + bias (biased variance) over the last dimension; out may be x. */
export function layerNorm(x: OpInput, weight: Tensor, bias: Tensor | undefined, opts: NormOptions): Tensor {
  return norm('layerNorm', 'layerNorm', x, weight, bias, opts);
}

/** cos and sin of position x inverse frequency, [positions, headDim / 2] f32 each (computed in float64). */
export function ropeTables(theta: number, positions: number, headDim: number): { cos: Tensor; sin: Tensor } {
  const where = 'ropeTables';
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) throw new RangeError(`${where}: theta must be a positive number, got ${theta}`);
  checkCount(where, 'positions', positions);
  if (!Number.isSafeInteger(headDim) || headDim < 2 || headDim % 2 !== 0) throw new RangeError(`${where}: headDim must be even and >= 2, got ${headDim}`);
  const half = headDim / 2;
  const cos = new Float32Array(positions * half), sin = new Float32Array(positions * half);
  for (let i = 0; i < half; i++) {
    const invFreq = 1 / theta ** ((2 * i) / headDim);
    for (let p = 0; p < positions; p++) {
      cos[p * half + i] = Math.cos(p * invFreq);
      sin[p * half + i] = Math.sin(p * invFreq);
    }
  }
  return { cos: tensor(cos, [positions, half]), sin: tensor(sin, [positions, half]) };
}

export interface RopeOptions {
  heads: number;
  headDim: number;
  /** ropeTables(): [positions, headDim / 2] f32 each, on x's device. */
  cos: Tensor;
  sin: Tensor;
  /** Rotate x itself instead of a copy. */
  inPlace?: boolean;
  /** Where the rotated copy goes (same dtype and shape as x). */
  out?: OpInput;
}

/**
 * Rotary embeddings (Hugging Face's rotate_half): row r of x [rows, heads * headDim] is rotated, per head,
 * pair (i, i + headDim/2) by the angle of position positions[r] and frequency i. Returns the rotated copy
 * (or x, rotated in place, with inPlace).
 */
export function rope(x: OpInput, positions: Int32Array | readonly number[], opts: RopeOptions): Tensor {
  const where = 'rope';
  const o = checkOptions(where, opts, ['heads', 'headDim', 'cos', 'sin', 'inPlace', 'out']);
  const v = asMatrix(where, 'x', x);
  const heads = checkCount(where, 'heads', o.heads), headDim = checkCount(where, 'headDim', o.headDim);
  if (heads < 1 || headDim < 2 || headDim % 2 !== 0) throw new RangeError(`${where}: heads must be >= 1 and headDim even and >= 2, got ${heads} and ${headDim}`);
  if (v.cols !== heads * headDim) throw new RangeError(`${where}: x is ${viewShape(v)} but heads * headDim = ${heads} * ${headDim} = ${heads * headDim}`);
  const cos = checkTensor(where, 'cos', o.cos), sin = checkTensor(where, 'sin', o.sin);
  for (const [name, t] of [['cos', cos], ['sin', sin]] as const) {
    if (t.dtype !== 'f32' || t.shape.length !== 2 || t.shape[1] !== headDim / 2 || t.shape[0] !== cos.shape[0]) {
      throw new RangeError(`${where}: ${name} is ${t.dtype} ${formatShape(t.shape)}; expected f32 [positions, ${headDim / 2}] (see ropeTables), cos and sin alike`);
    }
  }
  const pos = int32s(where, 'positions', positions, v.rows);
  for (let i = 0; i < pos.length; i++) {
    if (pos[i] < 0 || pos[i] >= cos.shape[0]) throw new RangeError(`${where}: positions[${i}] = ${pos[i]} is outside the tables' [0, ${cos.shape[0]})`);
  }
  if (o.inPlace !== undefined && typeof o.inPlace !== 'boolean') throw new TypeError(`${where}: inPlace must be a boolean`);
  if (o.inPlace && o.out !== undefined) throw new TypeError(`${where}: give inPlace or out, not both`);
  let target = v, result = v.tensor;
  if (!o.inPlace) {
    const out = output(where, o.out, v.tensor, v.tensor.dtype, resultShape(x, v), v.rows, v.cols, [['x', v]]);
    runOp(where, 'cast', { rows: v.rows, cols: v.cols }, { x: v, out: out.view });
    [target, result] = [out.view, out.result];
  }
  runOp(where, 'rope', { rows: v.rows, cols: v.cols, heads, headDim, ropePositions: cos.shape[0] }, { x: target, weight: cos, bias: sin, positions: pos });
  return result;
}

/** Which cache slot each sequence of a batch uses, and how many positions it already holds. */
export interface CacheOptions {
  /** slots[b]: the cache slot of sequence b (distinct for kvStore). */
  slots: Int32Array | readonly number[];
  /** Positions already cached per sequence (one number: the same for all). */
  past: Int32Array | readonly number[] | number;
  /** New tokens per sequence: rows are [batch * tokens], sequence-major. */
  tokens: number;
}

// The cache [slots, kvHeads, capacity, headDim] f32 and the batch layout, checked.
function cacheLayout(where: string, name: string, cache: unknown, o: Record<string, unknown>, rows: number) {
  const c = checkTensor(where, name, cache);
  if (c.dtype !== 'f32' || c.shape.length !== 4) throw new RangeError(`${where}: ${name} is ${c.dtype} ${formatShape(c.shape)}; expected f32 [slots, kvHeads, capacity, headDim]`);
  const [slotCount, kvHeads, capacity, headDim] = c.shape;
  const tokens = checkCount(where, 'tokens', o.tokens);
  if (tokens < 1) throw new RangeError(`${where}: tokens must be >= 1`);
  const slots = int32s(where, 'slots', o.slots);
  const batch = slots.length;
  if (batch * tokens !== rows) throw new RangeError(`${where}: ${rows} rows but ${batch} sequences (slots) x ${tokens} tokens = ${batch * tokens}`);
  const past = typeof o.past === 'number' ? new Int32Array(batch).fill(checkCount(where, 'past', o.past)) : int32s(where, 'past', o.past, batch);
  for (let b = 0; b < batch; b++) {
    if (slots[b] < 0 || slots[b] >= slotCount) throw new RangeError(`${where}: slots[${b}] = ${slots[b]} is outside the cache's [0, ${slotCount})`);
    if (past[b] < 0 || past[b] + tokens > capacity) {
      throw new RangeError(`${where}: sequence ${b}: past = ${past[b]} plus ${tokens} new positions exceed the cache capacity of ${capacity}`);
    }
  }
  return { cache: c, slotCount, kvHeads, capacity, headDim, tokens, batch, slots, past };
}

/**
 * Stores the new tokens' keys (or values) x [batch * tokens, kvHeads * headDim] in cache [slots, kvHeads,
 * capacity, headDim] f32 at positions past[b] .. past[b] + tokens - 1 of slot slots[b].
 */
export function kvStore(cache: Tensor, x: OpInput, opts: CacheOptions): void {
  const where = 'kvStore';
  const o = checkOptions(where, opts, ['slots', 'past', 'tokens']);
  const v = asMatrix(where, 'x', x);
  const l = cacheLayout(where, 'cache', cache, o, v.rows);
  if (v.cols !== l.kvHeads * l.headDim) throw new RangeError(`${where}: x is ${viewShape(v)} but the cache holds kvHeads * headDim = ${l.kvHeads * l.headDim} per position`);
  if (new Set(l.slots).size !== l.batch) throw new RangeError(`${where}: slots ${JSON.stringify([...l.slots])} name one slot twice`);
  if (overlaps(l.cache, v.tensor)) throw new TypeError(`${where}: x shares memory with the cache`);
  runOp(where, 'kvStore', {
    rows: v.rows, cols: v.cols, kvHeads: l.kvHeads, headDim: l.headDim, batch: l.batch, tokens: l.tokens, slots: l.slotCount, capacity: l.capacity,
  }, { x: v, out: { tensor: l.cache, offset: 0, rows: 1, cols: l.cache.size, ld: l.cache.size }, slotIndex: l.slots, past: l.past });
}

export interface AttentionOptions extends CacheOptions, OutOptions {
  heads: number;
  /** The cache's (checked when given). */
  kvHeads?: number;
  headDim?: number;
  /** Default 1 / sqrt(headDim). */
  scale?: number;
}

/**
 * Causal grouped-query attention over the KV cache: q [batch * tokens, heads * headDim]; query head h
 * reads KV head h / (heads / kvHeads) of slot slots[b] at positions 0 .. past[b] + t (the new tokens'
 * keys and values must be stored first, kvStore). Returns softmax(scale q k^T) v: [batch * tokens, heads * headDim].
 */
export function attention(q: OpInput, keys: Tensor, values: Tensor, opts: AttentionOptions): Tensor {
  const where = 'attention';
  const o = checkOptions(where, opts, ['slots', 'past', 'tokens', 'heads', 'kvHeads', 'headDim', 'scale', 'outDtype', 'out']);
  const v = asMatrix(where, 'q', q);
  const l = cacheLayout(where, 'keys', keys, o, v.rows);
  const vals = checkTensor(where, 'values', values);
  if (vals.dtype !== 'f32' || vals.shape.join() !== l.cache.shape.join()) {
    throw new RangeError(`${where}: keys are ${formatShape(l.cache.shape)} but values are ${vals.dtype} ${formatShape(vals.shape)}`);
  }
  const heads = checkCount(where, 'heads', o.heads);
  for (const [name, want] of [['kvHeads', l.kvHeads], ['headDim', l.headDim]] as const) {
    if (o[name] !== undefined && o[name] !== want) throw new RangeError(`${where}: ${name} is ${o[name]} but the cache ${formatShape(l.cache.shape)} has ${want}`);
  }
  if (heads < 1 || heads % l.kvHeads !== 0) throw new RangeError(`${where}: heads = ${heads} is not a positive multiple of kvHeads = ${l.kvHeads}`);
  if (v.cols !== heads * l.headDim) throw new RangeError(`${where}: q is ${viewShape(v)} but heads * headDim = ${heads} * ${l.headDim} = ${heads * l.headDim}`);
  const scale = o.scale === undefined ? 1 / Math.sqrt(l.headDim) : o.scale;
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new RangeError(`${where}: scale must be a finite number, got ${String(scale)}`);
  const out = output(where, o.out, v.tensor, outDtypeOf(where, o, v.tensor.dtype), resultShape(q, v), v.rows, v.cols, [['q', v], ['keys', l.cache], ['values', vals]]);
  runOp(where, 'attention', {
    rows: v.rows, cols: v.cols, heads, kvHeads: l.kvHeads, headDim: l.headDim, batch: l.batch, tokens: l.tokens, slots: l.slotCount,
    capacity: l.capacity, scale,
  }, { x: v, out: out.view, kCache: l.cache, vCache: vals, slotIndex: l.slots, past: l.past });
  return out.result;
}

/** softmax over the last dimension (max subtracted first); out may be x. */
export function softmax(x: OpInput, opts?: OutOptions): Tensor {
  const where = 'softmax';
  const o = checkOptions(where, opts, ['outDtype', 'out']);
  const v = asMatrix(where, 'x', x);
  const out = output(where, o.out, v.tensor, outDtypeOf(where, o, v.tensor.dtype), resultShape(x, v), v.rows, v.cols, sameViewOrInputs(o.out, v, []));
  runOp(where, 'softmax', { rows: v.rows, cols: v.cols }, { x: v, out: out.view });
  return out.result;
}

/**
 * The SwiGLU product silu(gate) * up, element by element. With one input [rows, 2I], gate is its first
 * half of columns and up the second; with two, they are [rows, I] each. out may be gate.
 */
export function swiglu(gate: OpInput, up?: OpInput, opts?: OutOptions): Tensor {
  const where = 'swiglu';
  const o = checkOptions(where, opts, ['outDtype', 'out']);
  let g = asMatrix(where, 'gate', gate), u: MatrixView;
  let shape: number[];
  if (up === undefined) {
    if (g.cols % 2 !== 0) throw new RangeError(`${where}: a fused gate/up input has an even number of columns; gate is ${viewShape(g)}`);
    const half = g.cols / 2;
    u = { ...g, offset: g.offset + half, cols: half };
    g = { ...g, cols: half };
    shape = gate instanceof Tensor ? [...gate.shape.slice(0, -1), half] : [g.rows, half];
  } else {
    u = asMatrix(where, 'up', up);
    if (u.rows !== g.rows || u.cols !== g.cols) throw new RangeError(`${where}: gate is ${viewShape(g)} but up is ${viewShape(u)}`);
    if (u.tensor.device !== g.tensor.device) throw new TypeError(`${where}: gate is on ${g.tensor.device} but up is on ${u.tensor.device}`);
    shape = resultShape(gate, g);
  }
  const out = output(where, o.out, g.tensor, outDtypeOf(where, o, g.tensor.dtype), shape, g.rows, g.cols, sameViewOrInputs(o.out, g, [['up', u]]));
  runOp(where, 'swiglu', { rows: g.rows, cols: g.cols }, { x: g, y: u, out: out.view });
  return out.result;
}

/** x + y element by element (same shape); out may be x (the residual stream). */
export function add(x: OpInput, y: OpInput, opts?: OutOptions): Tensor {
  const where = 'add';
  const o = checkOptions(where, opts, ['outDtype', 'out']);
  const a = asMatrix(where, 'x', x), b = asMatrix(where, 'y', y);
  if (a.rows !== b.rows || a.cols !== b.cols) throw new RangeError(`${where}: x is ${viewShape(a)} but y is ${viewShape(b)}`);
  if (a.tensor.device !== b.tensor.device) throw new TypeError(`${where}: x is on ${a.tensor.device} but y is on ${b.tensor.device}`);
  const out = output(where, o.out, a.tensor, outDtypeOf(where, o, a.tensor.dtype), resultShape(x, a), a.rows, a.cols, sameViewOrInputs(o.out, a, [['y', b]]));
  runOp(where, 'add', { rows: a.rows, cols: a.cols }, { x: a, y: b, out: out.view });
  return out.result;
}

/** activation(x) element by element: 'relu', 'gelu' (the erf form) or 'silu'; out may be x. */
export function activate(x: OpInput, activation: Exclude<Activation, 'none'>, opts?: OutOptions): Tensor {
  const where = 'activate';
  const o = checkOptions(where, opts, ['outDtype', 'out']);
  if (!ACTIVATIONS.includes(activation) || activation === ('none' as Activation)) {
    throw new TypeError(`${where}: activation must be 'relu', 'gelu' or 'silu', got ${JSON.stringify(activation)}`);
  }
  const v = asMatrix(where, 'x', x);
  const out = output(where, o.out, v.tensor, outDtypeOf(where, o, v.tensor.dtype), resultShape(x, v), v.rows, v.cols, sameViewOrInputs(o.out, v, []));
  runOp(where, 'activate', { rows: v.rows, cols: v.cols, activation }, { x: v, out: out.view });
  return out.result;
}

/** The index of the largest value of each row (the lowest on ties; NaN never wins, an all-NaN row gives 0), on the host. */
export function argmax(x: OpInput): Int32Array {
  const where = 'argmax';
  const v = asMatrix(where, 'x', x);
  if (v.rows > 0 && v.cols === 0) throw new RangeError(`${where}: x is ${viewShape(v)}; rows of no values have no argmax`);
  const ids = new Int32Array(v.rows);
  runOp(where, 'argmax', { rows: v.rows, cols: v.cols }, { x: v, idsOut: ids });
  return ids;
}

/** x converted to `dtype` (rounded to nearest even); a view is gathered into a dense tensor. */
export function cast(x: OpInput, dtype: DType, opts?: { out?: OpInput }): Tensor {
  const where = 'cast';
  const o = checkOptions(where, opts, ['out']);
  if (!isDType(dtype)) throw new TypeError(`${where}: dtype must be 'f32', 'f16' or 'bf16', got ${JSON.stringify(dtype)}`);
  const v = asMatrix(where, 'x', x);
  const out = output(where, o.out, v.tensor, dtype, resultShape(x, v), v.rows, v.cols, [['x', v]]);
  runOp(where, 'cast', { rows: v.rows, cols: v.cols }, { x: v, out: out.view });
  return out.result;
}
