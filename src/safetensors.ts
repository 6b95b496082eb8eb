// Safetensors: the project's one reader and writer of the format, and of sharded checkpoints.
//
// A file is: u64 little-endian header length N; N bytes of UTF-8 JSON mapping tensor names to
// { dtype, shape, data_offsets: [begin, end] } (offsets relative to the data section that follows the
// header) plus an optional "__metadata__" of string -> string; then the data section. Every rule of the
// format is checked before any tensor is read, and every violation is a SafetensorsError naming the file
// and the tensor: header length at most 100 MB and inside the file, known dtypes, shapes of at most
// MAX_TENSOR_RANK dimensions each at most MAX_TENSOR_DIM (so that no reader, here or in the models, can be
// sent looping over a huge dimension of an empty tensor), byte length = product(shape) x item size (a safe
// integer), offsets safe integers inside the data section, and tensors tiling the data section exactly
// (no overlap, no hole, nothing after the last one). Only regular files are read: a directory, FIFO,
// socket or device is a TypeError before anything is read (a FIFO is never waited on).
//
// Reading: a file whose data section is at most `wholeFileLimit` bytes (default 1 GiB) is read with one
// read into one buffer, and each tensor is a view into it when its offset is aligned to its item size (no
// copy) or a copy when it is not. A larger file is read tensor by tensor, on demand, straight into each
// tensor's own buffer; this is how files over 2 GiB load (Node cannot hold them in one Buffer read).
// F32, F16 and BF16 load as they are; F64 converts to f32; every other dtype is an "unsupported dtype"
// error when it is read (the header reader still lists it). A loaded tensor holds at most
// MAX_LOADED_ELEMENTS elements (what one typed array can).
import { type Stats, closeSync, existsSync, constants as fsConstants, fstatSync, openSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { DType } from './dtype.js';
import { formatShape } from './errors.js';
import { Tensor } from './tensor.js';

/** Bits per element of every dtype the format defines. */
const DTYPE_BITS: Readonly<Record<string, number>> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16,
  I32: 32, U32: 32, F32: 32,
  I64: 64, U64: 64, F64: 64, C64: 64,
  F4: 4, F6_E2M3: 6, F6_E3M2: 6,
};

/** The file dtypes gemmkit loads, and the tensor dtype each becomes. */
const LOADED_AS: Readonly<Record<string, DType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16', F64: 'f32' };
const FILE_DTYPE: Readonly<Record<DType, string>> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

export const MAX_HEADER_BYTES = 100_000_000;
/** Most dimensions a tensor may have. */
export const MAX_TENSOR_RANK = 64;
/** Largest size of one dimension (int32's largest: no real model comes near it). */
export const MAX_TENSOR_DIM = 2 ** 31 - 1;
/** Most elements a tensor may have to be loaded (one typed array's limit in Node). */
export const MAX_LOADED_ELEMENTS = 2 ** 32;
/** Largest JSON file (config.json, the shard index) read beside a checkpoint. */
export const MAX_JSON_BYTES = 100_000_000;
/** Data sections up to this size are read in one read; larger ones tensor by tensor. */
export const DEFAULT_WHOLE_FILE_LIMIT = 2 ** 30;
// One read() moves at most this much (Linux caps a single read near 2 GiB).
const READ_CHUNK = 2 ** 30;

export class SafetensorsError extends Error {
  readonly file: string;
  readonly tensor: string | undefined;
  constructor(file: string, tensor: string | undefined, problem: string) {
    super(`safetensors: ${file}${tensor !== undefined ? `: tensor '${clip(tensor)}'` : ''}: ${problem}`);
    this.name = 'SafetensorsError';
    this.file = file;
    this.tensor = tensor;
  }
}

export interface SafetensorsTensorInfo {
  name: string;
  /** As written in the file: 'F32', 'BF16', 'I64', ... */
  dtype: string;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data section. */
  dataOffsets: [number, number];
  byteLength: number;
}

export interface SafetensorsHeader {
  path: string;
  fileBytes: number;
  headerBytes: number;
  /** Absolute file offset of the data section: 8 + headerBytes. */
  dataStart: number;
  metadata: Record<string, string>;
  /** In file order (ascending offsets). */
  tensors: SafetensorsTensorInfo[];
}

// Names and values from a file go into messages shortened: a header may hold a 100 MB name or a deeply
// nested array, and an error message must stay readable (and JSON.stringify must not recurse into it).
const CLIP = 120;

function clip(text: string): string {
  return text.length <= CLIP ? text : `${text.slice(0, CLIP)}... (${text.length} characters)`;
}

/** A short description of a JSON value from a file, for messages. */
export function preview(value: unknown): string {
  if (Array.isArray(value)) {
    const flat = value.length <= 16 && value.every((x) => x === null || typeof x !== 'object');
    return flat ? clip(JSON.stringify(value)) : `an array of ${value.length} items`;
  }
  if (value !== null && typeof value === 'object') return 'an object';
  return value === undefined ? 'undefined' : clip(JSON.stringify(value));
}

function fail(file: string, tensor: string | undefined, problem: string): never {
  throw new SafetensorsError(file, tensor, problem);
}

function isSafeNonNegative(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/**
 * Validates a header's JSON text against a file of `fileBytes` bytes whose header is `headerBytes` long.
 * Exported for tests and for callers that already hold the header bytes.
 */
export function parseSafetensorsHeader(path: string, json: string, headerBytes: number, fileBytes: number): SafetensorsHeader {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    fail(path, undefined, `the header is not valid JSON (${clip((e as Error).message)})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    fail(path, undefined, 'the header is not a JSON object');
  }
  const dataStart = 8 + headerBytes;
  const dataBytes = fileBytes - dataStart;
  let metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) fail(path, undefined, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(path, undefined, `__metadata__ value '${clip(k)}' is not a string`);
      }
      metadata = { ...(entry as Record<string, string>) };
      continue;
    }
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) fail(path, name, 'the entry is not an object');
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string') fail(path, name, 'dtype is missing or not a string');
    const bits = DTYPE_BITS[dtype];
    if (bits === undefined) fail(path, name, `unknown dtype ${preview(dtype)} (known: ${Object.keys(DTYPE_BITS).join(', ')})`);
    if (!Array.isArray(shape) || !shape.every(isSafeNonNegative)) {
      fail(path, name, `shape ${preview(shape)} is not a list of non-negative safe integers`);
    }
    if (shape.length > MAX_TENSOR_RANK) fail(path, name, `shape has ${shape.length} dimensions, more than the ${MAX_TENSOR_RANK} allowed`);
    const tooLong = shape.find((d) => d > MAX_TENSOR_DIM);
    if (tooLong !== undefined) {
      fail(path, name, `shape ${formatShape(shape)} has a dimension of ${tooLong}, more than the ${MAX_TENSOR_DIM} allowed`);
    }
    let elements = 1;
    for (const d of shape) elements *= d;
    if (!Number.isSafeInteger(elements * bits)) fail(path, name, `shape ${formatShape(shape)} has too many elements`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSafeNonNegative)) {
      fail(path, name, `data_offsets ${preview(offsets)} is not a pair of non-negative safe integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(path, name, `data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataBytes) {
      fail(path, name, `data_offsets [${begin}, ${end}] run past the end of the data section (${Math.max(dataBytes, 0)} bytes; file truncated?)`);
    }
    if ((elements * bits) % 8 !== 0) fail(path, name, `${dtype} ${formatShape(shape)} is not a whole number of bytes`);
    const need = (elements * bits) / 8;
    if (end - begin !== need) {
      fail(path, name, `data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} ${formatShape(shape)} needs ${need}`);
    }
    tensors.push({ name, dtype, shape: [...shape], dataOffsets: [begin, end], byteLength: need });
  }
  tensors.sort((x, y) => x.dataOffsets[0] - y.dataOffsets[0] || x.dataOffsets[1] - y.dataOffsets[1]);
  let covered = 0;
  let previous: string | undefined;
  for (const t of tensors) {
    const [begin, end] = t.dataOffsets;
    if (begin < covered) fail(path, t.name, `data_offsets [${begin}, ${end}] overlap tensor '${previous}' (which ends at ${covered})`);
    if (begin > covered) {
      fail(path, t.name, `data_offsets [${begin}, ${end}] leave a hole: bytes [${covered}, ${begin}) belong to no tensor`);
    }
    covered = end;
    previous = t.name;
  }
  if (covered !== dataBytes) {
    fail(path, previous, `the data section has ${dataBytes} bytes but the tensors cover ${covered} (trailing bytes belong to no tensor)`);
  }
  return { path, fileBytes, headerBytes, dataStart, metadata, tensors };
}

// Reads byteLength bytes at file `position` into `into` from byteOffset, in chunks: one read() moves at
// most READ_CHUNK bytes, and one Uint8Array view at most 2^32 (a tensor may be larger).
function readExactly(path: string, fd: number, into: ArrayBuffer, byteOffset: number, byteLength: number, position: number, what: string): void {
  let done = 0;
  while (done < byteLength) {
    const want = Math.min(READ_CHUNK, byteLength - done);
    const got = readSync(fd, new Uint8Array(into, byteOffset + done, want), 0, want, position + done);
    if (got === 0) fail(path, undefined, `unexpected end of file reading ${what} (the file shrank while being read?)`);
    done += got;
  }
}

function readHeaderFromFd(path: string, fd: number): SafetensorsHeader {
  if (endianness() !== 'LE') fail(path, undefined, 'safetensors data is little-endian; this machine is big-endian');
  const fileBytes = fstatSync(fd).size;
  if (fileBytes < 8) fail(path, undefined, `truncated: the file has ${fileBytes} bytes, fewer than the 8-byte header length`);
  const lengthBytes = new ArrayBuffer(8);
  readExactly(path, fd, lengthBytes, 0, 8, 0, 'the header length');
  const headerLength = new DataView(lengthBytes).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    fail(path, undefined, `the header length is ${headerLength} bytes, more than the 100 MB limit (not a safetensors file?)`);
  }
  const headerBytes = Number(headerLength);
  if (8 + headerBytes > fileBytes) {
    fail(path, undefined, `the header length says ${headerBytes} bytes but the file has only ${fileBytes - 8} after it (truncated or lying header length)`);
  }
  const headerRaw = new Uint8Array(headerBytes);
  readExactly(path, fd, headerRaw.buffer, 0, headerBytes, 8, 'the header');
  let json: string;
  try {
    json = new TextDecoder('utf-8', { fatal: true }).decode(headerRaw);
  } catch {
    fail(path, undefined, 'the header is not valid UTF-8');
  }
  return parseSafetensorsHeader(path, json, headerBytes, fileBytes);
}

/** Reads and validates only the header of a safetensors file: names, dtypes, shapes, offsets, metadata. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openRegularFile('readSafetensorsHeader', path);
  try {
    return readHeaderFromFd(path, fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens `path` for reading if it is a regular file: a directory, FIFO, socket or device is a TypeError
 * naming it. The open never blocks (O_NONBLOCK: a FIFO without a writer would otherwise wait forever), and
 * the check is on the opened file (fstat), so a file swapped in between cannot slip through.
 */
export function openRegularFile(where: string, path: string): number {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError(`${where}: path must be a non-empty string, got ${preview(path)}`);
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (e) {
    fail(path, undefined, `cannot open: ${(e as Error).message}`);
  }
  let st: Stats;
  try {
    st = fstatSync(fd);
  } catch (e) {
    closeSync(fd);
    fail(path, undefined, `cannot stat: ${(e as Error).message}`);
  }
  if (!st.isFile()) {
    closeSync(fd);
    throw new TypeError(`${where}: ${path} is ${fileKind(st)}, not a regular file`);
  }
  return fd;
}

function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

export interface SafetensorsOpenOptions {
  /** Data sections up to this many bytes are read whole; larger ones per tensor. Default 1 GiB. */
  wholeFileLimit?: number;
}

function wholeFileLimit(where: string, opts: SafetensorsOpenOptions): number {
  if (opts === null || typeof opts !== 'object') throw new TypeError(`${where}: options must be an object, got ${preview(opts)}`);
  const limit = opts.wholeFileLimit ?? DEFAULT_WHOLE_FILE_LIMIT;
  if (typeof limit !== 'number' || !(limit >= 0)) {
    throw new TypeError(`${where}: wholeFileLimit must be a non-negative number of bytes, got ${preview(opts.wholeFileLimit)}`);
  }
  return limit;
}

/** One open safetensors file: the header is read and validated at open; tensor data only on request. */
export class SafetensorsFile {
  readonly path: string;
  readonly header: SafetensorsHeader;
  /** True when the data section is read whole, once (tensors are views where aligned); false: per tensor. */
  readonly readWhole: boolean;
  private fd: number | undefined;
  private data: ArrayBuffer | undefined; // the data section, when read whole
  private readonly byName: Map<string, SafetensorsTensorInfo>;

  private constructor(path: string, fd: number, header: SafetensorsHeader, limit: number) {
    this.path = path;
    this.fd = fd;
    this.header = header;
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
    this.readWhole = header.fileBytes - header.dataStart <= limit;
  }

  // The whole data section, read at the first tensor request (so opening reads the header only).
  private wholeData(): ArrayBuffer {
    if (!this.data) {
      if (this.fd === undefined) fail(this.path, undefined, 'the file is closed');
      const bytes = this.header.fileBytes - this.header.dataStart;
      const data = new ArrayBuffer(bytes);
      readExactly(this.path, this.fd, data, 0, bytes, this.header.dataStart, 'the data section');
      this.data = data;
    }
    return this.data;
  }

  static open(path: string, opts: SafetensorsOpenOptions = {}): SafetensorsFile {
    const limit = wholeFileLimit('SafetensorsFile.open', opts);
    const fd = openRegularFile('SafetensorsFile.open', path);
    try {
      return new SafetensorsFile(path, fd, readHeaderFromFd(path, fd), limit);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    const t = this.byName.get(name);
    if (!t) fail(this.path, name, 'no such tensor in this file');
    return t;
  }

  /** The dtype tensor(name) gives (F64 loads as f32); an error naming file and tensor for other dtypes. */
  loadedDtype(name: string): DType {
    const t = this.info(name);
    const dtype = LOADED_AS[t.dtype];
    if (dtype === undefined) {
      fail(this.path, name, `unsupported dtype ${t.dtype} (gemmkit loads F32, F16, BF16, and F64 converted to f32)`);
    }
    return dtype;
  }

  /** The tensor `name` as f32/f16/bf16 (F64 converted to f32); a view into the file buffer when possible. */
  tensor(name: string): Tensor {
    const t = this.info(name);
    const dtype = this.loadedDtype(name);
    const itemBytes = DTYPE_BITS[t.dtype] / 8;
    const count = t.byteLength / itemBytes;
    if (count > MAX_LOADED_ELEMENTS) {
      fail(this.path, name, `${t.dtype} ${formatShape(t.shape)} has ${count} elements; a loaded tensor holds at most ${MAX_LOADED_ELEMENTS}`);
    }
    // The tensor's bytes are buffer[byteOffset, byteOffset + t.byteLength); aligned when freshly read.
    let buffer: ArrayBuffer;
    let byteOffset: number;
    if (this.readWhole) {
      buffer = this.wholeData();
      byteOffset = t.dataOffsets[0];
    } else {
      if (this.fd === undefined) fail(this.path, name, 'the file is closed');
      buffer = new ArrayBuffer(t.byteLength);
      byteOffset = 0;
      readExactly(this.path, this.fd, buffer, 0, t.byteLength, this.header.dataStart + t.dataOffsets[0], `tensor '${clip(name)}'`);
    }
    const aligned = byteOffset % itemBytes === 0;
    if (t.dtype === 'F64') {
      const out = new Float32Array(count);
      if (aligned) {
        const src = new Float64Array(buffer, byteOffset, count);
        for (let i = 0; i < count; i++) out[i] = src[i];
      } else {
        const view = new DataView(buffer, byteOffset, t.byteLength);
        for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, true);
      }
      return new Tensor('f32', t.shape, out);
    }
    if (!aligned) {
      buffer = buffer.slice(byteOffset, byteOffset + t.byteLength); // a fresh copy starts at offset 0
      byteOffset = 0;
    }
    const data = dtype === 'f32' ? new Float32Array(buffer, byteOffset, count) : new Uint16Array(buffer, byteOffset, count);
    return new Tensor(dtype, t.shape, data);
  }

  /** Closes the file; tensors already returned stay valid. */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.data = undefined;
  }
}

/** Reads every tensor of one safetensors file. */
export function loadSafetensors(path: string, opts: SafetensorsOpenOptions = {}): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const file = SafetensorsFile.open(path, opts);
  try {
    const tensors = new Map<string, Tensor>();
    for (const name of file.names()) tensors.set(name, file.tensor(name));
    return { tensors, metadata: file.metadata };
  } finally {
    file.close();
  }
}

/** Data to write that is not a gemmkit Tensor: any file dtype with its raw little-endian bytes. */
export interface RawTensor {
  dtype: string;
  shape: readonly number[];
  data: ArrayBufferView;
}

/**
 * Writes tensors (and string metadata) as one safetensors file. Tensors are laid out largest item size
 * first and the header is padded to a multiple of 8, so every tensor is aligned for zero-copy loading.
 */
export function saveSafetensors(
  path: string,
  tensors: Map<string, Tensor | RawTensor> | Record<string, Tensor | RawTensor>,
  metadata?: Record<string, string>,
): void {
  const entries = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))].map(([name, t]) => {
    if (name === '__metadata__') throw new TypeError(`saveSafetensors: '__metadata__' is reserved and cannot name a tensor`);
    const dtype = t instanceof Tensor ? FILE_DTYPE[t.dtype] : t.dtype;
    const bits = DTYPE_BITS[dtype];
    if (bits === undefined) throw new TypeError(`saveSafetensors: tensor '${name}' has unknown dtype ${JSON.stringify(dtype)}`);
    // The reader's rules, so that every file written can be read back.
    if (!Array.isArray(t.shape) || t.shape.length > MAX_TENSOR_RANK || !t.shape.every((d) => isSafeNonNegative(d) && d <= MAX_TENSOR_DIM)) {
      throw new RangeError(`saveSafetensors: tensor '${name}' has shape ${preview(t.shape)}; a shape is at most ${MAX_TENSOR_RANK} integers in [0, ${MAX_TENSOR_DIM}]`);
    }
    const elements = t.shape.reduce((p, d) => p * d, 1);
    const byteLength = (elements * bits) / 8;
    if (t.data.byteLength !== byteLength) {
      throw new RangeError(`saveSafetensors: tensor '${name}' is ${dtype} ${formatShape(t.shape)} (${byteLength} bytes) but its data has ${t.data.byteLength} bytes`);
    }
    return { name, dtype, bits, shape: [...t.shape], bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
  });
  entries.sort((x, y) => y.bits - x.bits || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new TypeError(`saveSafetensors: metadata '${k}' must be a string, got ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.byteLength] };
    offset += e.bytes.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) json = Buffer.concat([json, Buffer.alloc(padded - json.byteLength, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.byteLength));
  const fd = openSync(path, 'w');
  try {
    writeAll(fd, prefix);
    writeAll(fd, json);
    for (const e of entries) writeAll(fd, e.bytes);
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) {
    done += writeSync(fd, bytes, done, Math.min(READ_CHUNK, bytes.byteLength - done));
  }
}

// --- checkpoints: one file, or a directory with model.safetensors or a sharded index -------------------

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

export interface CheckpointTensorInfo extends SafetensorsTensorInfo {
  /** The file that holds it. */
  file: string;
}

/**
 * A checkpoint: a .safetensors file, or a directory holding model.safetensors or a sharded
 * model.safetensors.index.json (whose weight_map names each tensor's shard), and optionally config.json.
 * Opening reads and validates headers only; `tensor(name)` reads data.
 */
export class Checkpoint {
  readonly path: string;
  /** The directory's config.json, parsed, when there is one. */
  readonly config: Record<string, unknown> | undefined;
  /** The single file's __metadata__ (or the index's "metadata" entries that are strings). */
  readonly metadata: Record<string, string>;
  private readonly files: SafetensorsFile[];
  private readonly owner: Map<string, SafetensorsFile>;

  private constructor(path: string, config: Record<string, unknown> | undefined, metadata: Record<string, string>, files: SafetensorsFile[], owner: Map<string, SafetensorsFile>) {
    this.path = path;
    this.config = config;
    this.metadata = metadata;
    this.files = files;
    this.owner = owner;
  }

  static open(path: string, opts: SafetensorsOpenOptions = {}): Checkpoint {
    if (typeof path !== 'string' || path.length === 0) throw new TypeError(`Checkpoint.open: path must be a non-empty string, got ${preview(path)}`);
    wholeFileLimit('Checkpoint.open', opts);
    let st;
    try {
      st = statSync(path);
    } catch (e) {
      fail(path, undefined, `cannot open: ${(e as Error).message}`);
    }
    if (!st.isDirectory()) {
      const file = SafetensorsFile.open(path, opts);
      return new Checkpoint(path, undefined, file.metadata, [file], new Map(file.names().map((n) => [n, file])));
    }
    const config = readJsonFile(join(path, 'config.json'), false);
    const indexPath = join(path, INDEX_FILE);
    if (existsSync(indexPath)) return Checkpoint.openSharded(path, indexPath, config, opts);
    const single = join(path, SINGLE_FILE);
    if (!existsSync(single)) {
      fail(path, undefined, `a directory without ${SINGLE_FILE} or ${INDEX_FILE}`);
    }
    const file = SafetensorsFile.open(single, opts);
    return new Checkpoint(path, config, file.metadata, [file], new Map(file.names().map((n) => [n, file])));
  }

  private static openSharded(dir: string, indexPath: string, config: Record<string, unknown> | undefined, opts: SafetensorsOpenOptions): Checkpoint {
    const index = readJsonFile(indexPath, true)!;
    const weightMap = index.weight_map;
    if (weightMap === null || typeof weightMap !== 'object' || Array.isArray(weightMap)) {
      fail(indexPath, undefined, 'weight_map is missing or not an object');
    }
    const metadata: Record<string, string> = {};
    if (index.metadata && typeof index.metadata === 'object') {
      for (const [k, v] of Object.entries(index.metadata as Record<string, unknown>)) if (typeof v === 'string') metadata[k] = v;
    }
    const shards = new Map<string, SafetensorsFile>();
    const owner = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shardName] of Object.entries(weightMap as Record<string, unknown>)) {
        if (typeof shardName !== 'string' || shardName.length === 0) fail(indexPath, name, 'its weight_map entry is not a file name');
        const shardPath = resolve(dir, shardName);
        const rel = relative(resolve(dir), shardPath);
        if (rel.startsWith('..') || isAbsolute(rel)) fail(indexPath, name, `shard ${preview(shardName)} is outside the checkpoint directory`);
        let shard = shards.get(shardPath);
        if (!shard) {
          shard = SafetensorsFile.open(shardPath, opts);
          shards.set(shardPath, shard);
        }
        if (!shard.has(name)) fail(indexPath, name, `weight_map puts it in ${clip(shardName)}, which does not hold it`);
        owner.set(name, shard);
      }
    } catch (e) {
      for (const s of shards.values()) s.close();
      throw e;
    }
    return new Checkpoint(dir, config, metadata, [...shards.values()], owner);
  }

  names(): string[] {
    return [...this.owner.keys()];
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): CheckpointTensorInfo {
    const file = this.owner.get(name);
    if (!file) fail(this.path, name, 'no such tensor in this checkpoint');
    return { ...file.info(name), file: file.path };
  }

  tensors(): CheckpointTensorInfo[] {
    return this.names().map((n) => this.info(n));
  }

  /** The dtype tensor(name) gives; see SafetensorsFile.loadedDtype. */
  loadedDtype(name: string): DType {
    const file = this.owner.get(name);
    if (!file) fail(this.path, name, 'no such tensor in this checkpoint');
    return file.loadedDtype(name);
  }

  tensor(name: string): Tensor {
    const file = this.owner.get(name);
    if (!file) fail(this.path, name, 'no such tensor in this checkpoint');
    return file.tensor(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

/**
 * A JSON object from a file (undefined when absent and not required); errors are SafetensorsErrors naming
 * it, and a TypeError when it is not a regular file (a FIFO is never waited on).
 */
export function readJsonFile(path: string, required: boolean): Record<string, unknown> | undefined {
  if (!existsSync(path)) {
    if (required) fail(path, undefined, 'does not exist');
    return undefined;
  }
  const fd = openRegularFile('readJsonFile', path);
  let text: string;
  try {
    const bytes = fstatSync(fd).size;
    if (bytes > MAX_JSON_BYTES) fail(path, undefined, `${bytes} bytes, more than the ${MAX_JSON_BYTES} allowed for a JSON file`);
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    fail(path, undefined, `not valid JSON (${clip((e as Error).message)})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(path, undefined, 'not a JSON object');
  return value as Record<string, unknown>;
}
