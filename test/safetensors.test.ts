// Safetensors reader/writer: round trips in every loadable dtype, zero-copy views vs copies, the
// per-tensor path (and a real >2 GiB file, sparse on disk), sharded checkpoints, and every malformed
// file giving a SafetensorsError that names the file and the tensor, never a crash.
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync, ftruncateSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  Checkpoint, SafetensorsError, SafetensorsFile, loadSafetensors, readSafetensorsHeader, saveSafetensors, tensor,
} from '../src/index.js';
import { randTensor, rng } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'gemmkit-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileCount = 0;
const freshPath = (name = 'f') => join(dir, `${name}-${fileCount++}.safetensors`);

/** A file from a header object (or raw header text) and data bytes, exactly as given: for malformed cases. */
function rawFile(header: unknown, data: Uint8Array | number = 0, headerLength?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLength ?? BigInt(json.byteLength));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const path = freshPath('raw');
  writeFileSync(path, Buffer.concat([prefix, json, body]));
  return path;
}

function expectSafetensorsError(fn: () => unknown, file: string, tensorName: string | undefined, message: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected an error matching ${message}`).toBeInstanceOf(SafetensorsError);
  const err = thrown as SafetensorsError;
  expect(err.message).toMatch(message);
  expect(err.file).toBe(file);
  expect(err.message).toContain(file);
  expect(err.tensor).toBe(tensorName);
  if (tensorName !== undefined) expect(err.message).toContain(`tensor '${tensorName}'`);
}

describe('safetensors round trip', () => {
  it('f32, f16, bf16 and F64 (converted), with metadata, zero-sized and scalar tensors', () => {
    const path = freshPath();
    const w = randTensor([7, 5], 'f32', 1);
    const h = randTensor([3, 3], 'f16', 2);
    const b = randTensor([1, 77], 'bf16', 3);
    const f64 = new Float64Array([1.5, -2.25, 1 / 3, 1e300]);
    saveSafetensors(path, {
      w, h, 'model.layers.0.b': b,
      empty: tensor([], [0, 4]),
      scalar: tensor([42], []),
      d: { dtype: 'F64', shape: [2, 2], data: f64 },
      ids: { dtype: 'I64', shape: [3], data: new BigInt64Array([1n, 2n, 3n]) },
    }, { format: 'pt', spec: '{"a":1}' });
    for (const wholeFileLimit of [undefined, 0]) {
      const file = SafetensorsFile.open(path, { wholeFileLimit });
      expect(file.readWhole).toBe(wholeFileLimit === undefined);
      expect(file.metadata).toEqual({ format: 'pt', spec: '{"a":1}' });
      expect(file.tensor('w').dtype).toBe('f32');
      expect(file.tensor('w').shape).toEqual([7, 5]);
      expect([...file.tensor('w').data]).toEqual([...w.data]);
      expect(file.tensor('h').dtype).toBe('f16');
      expect([...file.tensor('h').data]).toEqual([...h.data]);
      expect(file.tensor('model.layers.0.b').dtype).toBe('bf16');
      expect([...file.tensor('model.layers.0.b').data]).toEqual([...b.data]);
      expect(file.tensor('empty').shape).toEqual([0, 4]);
      expect(file.tensor('scalar').shape).toEqual([]);
      expect([...file.tensor('scalar').data]).toEqual([42]);
      const d = file.tensor('d');
      expect(d.dtype).toBe('f32');
      expect([...d.data]).toEqual([...Float32Array.from(f64)]);
      expectSafetensorsError(() => file.tensor('ids'), path, 'ids', /unsupported dtype I64/);
      expectSafetensorsError(() => file.tensor('nope'), path, 'nope', /no such tensor/);
      file.close();
    }
    const header = readSafetensorsHeader(path);
    expect(header.dataStart % 8).toBe(0);
    expect(header.tensors.map((t) => t.name)).toContain('ids');
    const ids = header.tensors.find((t) => t.name === 'ids')!;
    expect(ids).toMatchObject({ dtype: 'I64', shape: [3], byteLength: 24 });
    expect(header.tensors.every((t) => t.dataOffsets[0] % (t.dtype === 'F64' || t.dtype === 'I64' ? 8 : t.dtype === 'F32' ? 4 : 2) === 0)).toBe(true);
  });

  it('aligned tensors are views into one buffer (no copy); misaligned ones are copied', () => {
    // BF16 [1] at offset 0 pushes the F32 after it to offset 2 (not 4-aligned); another BF16 [1] realigns.
    const data = new Uint8Array(2 + 8 + 2 + 8);
    const dv = new DataView(data.buffer);
    dv.setUint16(0, 0x3f80, true); // bf16 1.0
    dv.setFloat32(2, 3.5, true); dv.setFloat32(6, -1, true);
    dv.setUint16(10, 0x4000, true); // bf16 2.0
    dv.setFloat32(12, 7, true); dv.setFloat32(16, 8, true);
    const path = rawFile({
      one: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] },
      odd: { dtype: 'F32', shape: [2], data_offsets: [2, 10] },
      two: { dtype: 'BF16', shape: [1], data_offsets: [10, 12] },
      even: { dtype: 'F32', shape: [2], data_offsets: [12, 20] },
    }, data);
    const file = SafetensorsFile.open(path);
    expect(file.readWhole).toBe(true);
    const one = file.tensor('one'), odd = file.tensor('odd'), even = file.tensor('even');
    expect([...odd.data]).toEqual([3.5, -1]);
    expect([...even.data]).toEqual([7, 8]);
    expect(one.toFloat32()[0]).toBe(1);
    expect(file.tensor('two').toFloat32()[0]).toBe(2);
    expect(one.data.buffer).toBe(even.data.buffer); // both views of the data section
    expect(odd.data.buffer).not.toBe(even.data.buffer); // copied
    file.close();
  });

  it('a closed per-tensor file says so', () => {
    const path = freshPath();
    saveSafetensors(path, { x: tensor([1], [1]) });
    const file = SafetensorsFile.open(path, { wholeFileLimit: 0 });
    file.close();
    expectSafetensorsError(() => file.tensor('x'), path, 'x', /the file is closed/);
  });

  it('the writer rejects data of the wrong size and reserved names', () => {
    expect(() => saveSafetensors(freshPath(), { x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(/F32 \[3\] \(12 bytes\) but its data has 8 bytes/);
    expect(() => saveSafetensors(freshPath(), { x: { dtype: 'Q4', shape: [3], data: new Float32Array(3) } })).toThrow(/unknown dtype "Q4"/);
    expect(() => saveSafetensors(freshPath(), { __metadata__: tensor([1], [1]) })).toThrow(/reserved/);
  });
});

describe('malformed files: each a SafetensorsError naming file and tensor', () => {
  const f32 = (shape: number[], begin: number, end: number) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

  it('shorter than the 8-byte length', () => {
    const path = freshPath('short');
    writeFileSync(path, new Uint8Array(5));
    expectSafetensorsError(() => SafetensorsFile.open(path), path, undefined, /truncated: the file has 5 bytes/);
    const empty = freshPath('empty');
    writeFileSync(empty, new Uint8Array(0));
    expectSafetensorsError(() => readSafetensorsHeader(empty), empty, undefined, /truncated/);
  });
  it('header length over 100 MB, or lying (past the end of the file)', () => {
    const huge = rawFile({}, 0, 2n ** 63n);
    expectSafetensorsError(() => SafetensorsFile.open(huge), huge, undefined, /more than the 100 MB limit/);
    const lying = rawFile({ x: f32([1], 0, 4) }, 4, 1000n);
    expectSafetensorsError(() => SafetensorsFile.open(lying), lying, undefined, /header length says 1000 bytes but the file has only \d+ after it/);
  });
  it('header truncated mid-JSON, not JSON, not an object, not UTF-8', () => {
    const full = Buffer.from(JSON.stringify({ x: f32([1], 0, 4) }));
    const cut = rawFile(full.subarray(0, full.length - 3).toString('utf8'), 4);
    expectSafetensorsError(() => SafetensorsFile.open(cut), cut, undefined, /not valid JSON/);
    const notJson = rawFile('hello, world');
    expectSafetensorsError(() => SafetensorsFile.open(notJson), notJson, undefined, /not valid JSON/);
    const arr = rawFile('[1, 2]');
    expectSafetensorsError(() => SafetensorsFile.open(arr), arr, undefined, /not a JSON object/);
    const path = freshPath('utf8');
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(4n);
    writeFileSync(path, Buffer.concat([prefix, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]));
    expectSafetensorsError(() => SafetensorsFile.open(path), path, undefined, /not valid UTF-8/);
  });
  it('entries and metadata of the wrong kind', () => {
    const cases: [unknown, string | undefined, RegExp][] = [
      [{ x: 5 }, 'x', /entry is not an object/],
      [{ x: { shape: [1], data_offsets: [0, 4] } }, 'x', /dtype is missing/],
      [{ __metadata__: { a: 1 } }, undefined, /__metadata__ value 'a' is not a string/],
      [{ __metadata__: [] }, undefined, /__metadata__ is not an object/],
    ];
    for (const [header, name, msg] of cases) {
      const path = rawFile(header, 4);
      expectSafetensorsError(() => SafetensorsFile.open(path), path, name, msg);
    }
  });
  it('unknown dtype', () => {
    const path = rawFile({ x: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, 4);
    expectSafetensorsError(() => SafetensorsFile.open(path), path, 'x', /unknown dtype "F33"/);
  });
  it('shapes that are not lists of non-negative safe integers', () => {
    for (const shape of [[1.5], [-1], ['2'], 3, [2 ** 53], null]) {
      const path = rawFile({ x: { dtype: 'F32', shape, data_offsets: [0, 4] } }, 4);
      expectSafetensorsError(() => SafetensorsFile.open(path), path, 'x', /shape .* is not a list of non-negative safe integers/);
    }
    const big = rawFile({ x: { dtype: 'F64', shape: [2 ** 26, 2 ** 26], data_offsets: [0, 4] } }, 4);
    expectSafetensorsError(() => SafetensorsFile.open(big), big, 'x', /too many elements/);
  });
  it('offsets that are not safe integers, or reversed', () => {
    for (const offsets of [[0, 2 ** 53 + 2], [0.5, 4], [-4, 0], ['0', '4'], [0], [0, 4, 8], 'x']) {
      const path = rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: offsets } }, 4);
      expectSafetensorsError(() => SafetensorsFile.open(path), path, 'x', /data_offsets .* is not a pair of non-negative safe integers/);
    }
    const rev = rawFile({ x: f32([0], 4, 0) }, 4);
    expectSafetensorsError(() => SafetensorsFile.open(rev), rev, 'x', /end before they begin/);
  });
  it('offsets past the end of the data section (truncated file)', () => {
    const path = rawFile({ a: f32([2], 0, 8), b: f32([2], 8, 16) }, 12);
    expectSafetensorsError(() => SafetensorsFile.open(path), path, 'b', /run past the end of the data section \(12 bytes; file truncated\?\)/);
  });
  it('wrong byte count for dtype x shape', () => {
    const path = rawFile({ x: f32([3], 0, 8) }, 8);
    expectSafetensorsError(() => SafetensorsFile.open(path), path, 'x', /hold 8 bytes but F32 \[3\] needs 12/);
    const bits = rawFile({ x: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2);
    expectSafetensorsError(() => SafetensorsFile.open(bits), bits, 'x', /not a whole number of bytes/);
  });
  it('overlapping tensors', () => {
    const path = rawFile({ a: f32([2], 0, 8), b: f32([2], 4, 12) }, 12);
    expectSafetensorsError(() => SafetensorsFile.open(path), path, 'b', /overlap tensor 'a'/);
    const same = rawFile({ a: f32([2], 0, 8), b: f32([2], 0, 8) }, 8);
    expectSafetensorsError(() => SafetensorsFile.open(same), same, 'b', /overlap tensor 'a'/);
  });
  it('holes between tensors, before the first, after the last', () => {
    const gap = rawFile({ a: f32([1], 0, 4), b: f32([1], 8, 12) }, 12);
    expectSafetensorsError(() => SafetensorsFile.open(gap), gap, 'b', /leave a hole: bytes \[4, 8\) belong to no tensor/);
    const lead = rawFile({ a: f32([1], 4, 8) }, 8);
    expectSafetensorsError(() => SafetensorsFile.open(lead), lead, 'a', /hole: bytes \[0, 4\)/);
    const tail = rawFile({ a: f32([1], 0, 4) }, 9);
    expectSafetensorsError(() => SafetensorsFile.open(tail), tail, 'a', /data section has 9 bytes but the tensors cover 4/);
  });
  it('random corruption of a valid file: loads, or fails with a SafetensorsError, never anything else', () => {
    const good = freshPath('good');
    saveSafetensors(good, { a: randTensor([5, 3], 'f32', 1), b: randTensor([4], 'bf16', 2), c: randTensor([2, 2], 'f16', 3) }, { k: 'v' });
    const bytes = readFileSync(good);
    const r = rng(7);
    let failures = 0;
    for (let trial = 0; trial < 400; trial++) {
      const copy = Buffer.from(bytes);
      const mode = trial % 3;
      let out: Buffer = copy;
      if (mode === 0) copy[Math.floor(r() * copy.length)] = Math.floor(r() * 256);
      else if (mode === 1) out = copy.subarray(0, Math.floor(r() * copy.length));
      else for (let i = 0; i < 4; i++) copy[Math.floor(r() * Math.min(copy.length, 140))] = '0123456789,[]{}":-.e'.charCodeAt(Math.floor(r() * 19));
      const path = join(dir, 'fuzz.safetensors');
      writeFileSync(path, out);
      try {
        const { tensors } = loadSafetensors(path);
        for (const t of tensors.values()) expect(t.data.length).toBe(t.shape.reduce((p, d) => p * d, 1));
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw new Error(`trial ${trial} (mode ${mode}): ${String(e)}`);
        failures++;
      }
    }
    expect(failures).toBeGreaterThan(100);
  });
});

describe('files over 2 GiB (sparse on disk)', () => {
  it('the header and a tensor past the 2 GiB mark read per tensor without reading the rest', () => {
    // big: F32 covering 2 GiB + 4 KiB of zeros (a hole on disk), then tail: F32 [4] with real values.
    const bigBytes = 2 ** 31 + 4096;
    const header = Buffer.from(JSON.stringify({
      big: { dtype: 'F32', shape: [bigBytes / 4], data_offsets: [0, bigBytes] },
      tail: { dtype: 'F32', shape: [4], data_offsets: [bigBytes, bigBytes + 16] },
    }));
    const path = freshPath('sparse');
    const fd = openSync(path, 'w');
    try {
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(header.length));
      writeSync(fd, prefix, 0, 8, 0);
      writeSync(fd, header, 0, header.length, 8);
      const dataStart = 8 + header.length;
      ftruncateSync(fd, dataStart + bigBytes + 16);
      writeSync(fd, new Uint8Array(new Float32Array([1, -2, 3.5, 1e30]).buffer), 0, 16, dataStart + bigBytes);
    } finally {
      closeSync(fd);
    }
    const st = statSync(path);
    expect(st.size).toBeGreaterThan(2 ** 31);
    // On a filesystem without sparse files this test writes 2 GiB; note it in the output when so.
    if (st.blocks * 512 > 2 ** 26) console.warn(`sparse file test: ${path} occupies ${st.blocks * 512} bytes (no sparse files here)`);
    const file = SafetensorsFile.open(path);
    try {
      expect(file.readWhole).toBe(false);
      expect(file.info('big').byteLength).toBe(bigBytes);
      expect(file.info('tail').dataOffsets).toEqual([bigBytes, bigBytes + 16]);
      const tail = file.tensor('tail');
      expect([...tail.data]).toEqual([1, -2, 3.5, Math.fround(1e30)]);
    } finally {
      file.close();
      rmSync(path);
    }
  });
});

describe('checkpoints: single file, directory, sharded index', () => {
  it('a directory with model.safetensors and config.json', () => {
    const d = join(dir, 'single');
    mkdirSync(d);
    saveSafetensors(join(d, 'model.safetensors'), { x: tensor([1, 2], [2]) }, { m: '1' });
    writeFileSync(join(d, 'config.json'), JSON.stringify({ hidden_size: 4 }));
    const ck = Checkpoint.open(d);
    expect(ck.config).toEqual({ hidden_size: 4 });
    expect(ck.metadata).toEqual({ m: '1' });
    expect([...ck.tensor('x').data]).toEqual([1, 2]);
    ck.close();
  });
  it('shards via model.safetensors.index.json', () => {
    const d = join(dir, 'sharded');
    mkdirSync(d);
    saveSafetensors(join(d, 's1.safetensors'), { a: tensor([1], [1]), b: tensor([2, 3], [2], 'bf16') });
    saveSafetensors(join(d, 's2.safetensors'), { c: tensor([4, 5, 6], [3]) });
    writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1 }, weight_map: { a: 's1.safetensors', b: 's1.safetensors', c: 's2.safetensors' } }));
    const ck = Checkpoint.open(d, { wholeFileLimit: 0 });
    expect(ck.names().sort()).toEqual(['a', 'b', 'c']);
    expect(ck.info('c').file).toBe(join(d, 's2.safetensors'));
    expect([...ck.tensor('c').data]).toEqual([4, 5, 6]);
    expect(ck.tensor('b').toFloat32()[1]).toBe(3);
    ck.close();
  });
  it('index errors name the index file and the tensor', () => {
    const d = join(dir, 'badindex');
    mkdirSync(d);
    saveSafetensors(join(d, 's1.safetensors'), { a: tensor([1], [1]) });
    const index = join(d, 'model.safetensors.index.json');
    writeFileSync(index, JSON.stringify({ weight_map: { a: 's1.safetensors', z: 's1.safetensors' } }));
    expectSafetensorsError(() => Checkpoint.open(d), index, 'z', /weight_map puts it in s1.safetensors, which does not hold it/);
    writeFileSync(index, JSON.stringify({ weight_map: { a: '../s1.safetensors' } }));
    expectSafetensorsError(() => Checkpoint.open(d), index, 'a', /outside the checkpoint directory/);
    writeFileSync(index, JSON.stringify({ weight_map: { a: 's9.safetensors' } }));
    expectSafetensorsError(() => Checkpoint.open(d), join(d, 's9.safetensors'), undefined, /cannot open/);
    writeFileSync(index, JSON.stringify({ metadata: {} }));
    expectSafetensorsError(() => Checkpoint.open(d), index, undefined, /weight_map is missing/);
    writeFileSync(index, '{');
    expectSafetensorsError(() => Checkpoint.open(d), index, undefined, /not valid JSON/);
    const empty = join(dir, 'emptydir');
    mkdirSync(empty);
    expectSafetensorsError(() => Checkpoint.open(empty), empty, undefined, /without model.safetensors or model.safetensors.index.json/);
    expectSafetensorsError(() => Checkpoint.open(join(dir, 'missing')), join(dir, 'missing'), undefined, /cannot open/);
  });
});
