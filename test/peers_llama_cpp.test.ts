// The llama.cpp peer of bench:models: the GGUF writer (bench/peers/gguf.ts) read back by a reader written
// here from the format's specification, the rotary row permutation held to a float64 rotary embedding, the
// converted checkpoint's tensors and metadata, and (where bench/peers/setup-llama-cpp.sh has installed
// node-llama-cpp) llama.cpp's next-token logits on the converted file against gemmkit's on the checkpoint.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Checkpoint, type LlamaModel, createKVCache, forward, loadModel, writeRandomLlamaCheckpoint } from '../src/index.js';
import { GGUF_ALIGNMENT, type GgufTensor, llamaCheckpointToGguf, minimalVocabulary, permuteRotaryRows, writeGguf } from '../bench/peers/gguf.js';
import { LLAMA_CPP_INSTALL_DIR, LlamaCppPeer, compareLogits, llamaCppStatus } from '../bench/peers/llama_cpp.js';

const tmp = mkdtempSync(join(tmpdir(), 'gemmkit-test-gguf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// ---- a GGUF v3 reader, from the specification (independent of the writer) ---------------------------------

type Value = number | bigint | boolean | string | Value[];
interface ReadTensor { name: string; ne: number[]; type: number; offset: number }
interface ReadGguf { version: number; kv: Map<string, { type: number; value: Value }>; tensors: ReadTensor[]; dataStart: number; bytes: Buffer }

function readGguf(path: string): ReadGguf {
  const bytes = readFileSync(path);
  let at = 0;
  const u32 = () => { const v = bytes.readUInt32LE(at); at += 4; return v; };
  const u64 = () => { const v = bytes.readBigUInt64LE(at); at += 8; return Number(v); };
  const str = () => { const n = u64(); const s = bytes.toString('utf8', at, at + n); at += n; return s; };
  const value = (type: number): Value => {
    switch (type) {
      case 0: return bytes.readUInt8(at++);
      case 1: return bytes.readInt8(at++);
      case 2: { const v = bytes.readUInt16LE(at); at += 2; return v; }
      case 3: { const v = bytes.readInt16LE(at); at += 2; return v; }
      case 4: return u32();
      case 5: { const v = bytes.readInt32LE(at); at += 4; return v; }
      case 6: { const v = bytes.readFloatLE(at); at += 4; return v; }
      case 7: { const v = bytes.readUInt8(at++); if (v > 1) throw new Error(`bool ${v}`); return v === 1; }
      case 8: return str();
      case 9: { const t = u32(); const n = u64(); return Array.from({ length: n }, () => value(t)); }
      case 10: return u64();
      case 11: { const v = bytes.readBigInt64LE(at); at += 8; return v; }
      case 12: { const v = bytes.readDoubleLE(at); at += 8; return v; }
      default: throw new Error(`unknown value type ${type} at ${at}`);
    }
  };
  if (bytes.toString('latin1', 0, 4) !== 'GGUF') throw new Error('not GGUF');
  at = 4;
  const version = u32();
  const tensorCount = u64(), kvCount = u64();
  const kv = new Map<string, { type: number; value: Value }>();
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    const type = u32();
    kv.set(key, { type, value: value(type) });
  }
  const tensors: ReadTensor[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = str();
    const nDims = u32();
    const ne = Array.from({ length: nDims }, () => u64());
    tensors.push({ name, ne, type: u32(), offset: u64() });
  }
  const alignment = (kv.get('general.alignment')?.value as number | undefined) ?? 32;
  return { version, kv, tensors, dataStart: Math.ceil(at / alignment) * alignment, bytes };
}

const tensorBytes = (g: ReadGguf, t: ReadTensor, itemBytes: number) =>
  g.bytes.subarray(g.dataStart + t.offset, g.dataStart + t.offset + t.ne.reduce((p, d) => p * d, 1) * itemBytes);

// ---- the writer -------------------------------------------------------------------------------------------

describe('writeGguf', () => {
  const f32 = Float32Array.from({ length: 45 * 77 }, (_, i) => Math.sin(i));
  const bf16 = Uint16Array.from({ length: 15 }, (_, i) => 0x3f80 + i); // 30 bytes: the next tensor needs padding
  const one = Float32Array.of(7.5);
  const tensors: GgufTensor[] = [
    { name: 'a.weight', shape: [45, 77], type: 'f32', data: () => new Uint8Array(f32.buffer) },
    { name: 'b', shape: [3, 5], type: 'bf16', data: () => new Uint8Array(bf16.buffer) },
    { name: 'c', shape: [1], type: 'f32', data: () => new Uint8Array(one.buffer) },
    { name: 'd', shape: [1, 2, 3, 7], type: 'f32', data: () => new Uint8Array(new Float32Array(42).fill(-1).buffer) },
  ];

  it('writes header, typed metadata, tensor infos (dims innermost first) and aligned data that read back', () => {
    const path = join(tmp, 'plain.gguf');
    writeGguf(path, [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['x.u32', { type: 'uint32', value: 4294967295 }],
      ['x.i32', { type: 'int32', value: -7 }],
      ['x.u64', { type: 'uint64', value: 2 ** 40 + 3 }],
      ['x.f32', { type: 'float32', value: 1e-5 }],
      ['x.bool', { type: 'bool', value: true }],
      ['x.strings', { type: 'array', itemType: 'string', value: ['', 'é▁', '<0x0A>'] }],
      ['x.floats', { type: 'array', itemType: 'float32', value: Float32Array.of(0.5, -2) }],
      ['x.ints', { type: 'array', itemType: 'int32', value: Int32Array.of(1, -6) }],
      ['x.empty', { type: 'array', itemType: 'uint32', value: [] }],
    ], tensors);
    const g = readGguf(path);
    expect(g.version).toBe(3);
    expect([...g.kv.keys()]).toEqual(['general.architecture', 'x.u32', 'x.i32', 'x.u64', 'x.f32', 'x.bool', 'x.strings', 'x.floats', 'x.ints', 'x.empty', 'general.alignment']);
    expect(g.kv.get('general.architecture')).toEqual({ type: 8, value: 'llama' });
    expect(g.kv.get('x.u32')).toEqual({ type: 4, value: 4294967295 });
    expect(g.kv.get('x.i32')).toEqual({ type: 5, value: -7 });
    expect(g.kv.get('x.u64')).toEqual({ type: 10, value: 2 ** 40 + 3 });
    expect(g.kv.get('x.f32')?.value).toBeCloseTo(1e-5, 12);
    expect(g.kv.get('x.bool')).toEqual({ type: 7, value: true });
    expect(g.kv.get('x.strings')).toEqual({ type: 9, value: ['', 'é▁', '<0x0A>'] });
    expect(g.kv.get('x.floats')).toEqual({ type: 9, value: [0.5, -2] });
    expect(g.kv.get('x.ints')).toEqual({ type: 9, value: [1, -6] });
    expect(g.kv.get('x.empty')).toEqual({ type: 9, value: [] });
    expect(g.kv.get('general.alignment')).toEqual({ type: 4, value: GGUF_ALIGNMENT });

    expect(g.tensors.map((t) => [t.name, t.ne, t.type])).toEqual([['a.weight', [77, 45], 0], ['b', [5, 3], 30], ['c', [1], 0], ['d', [7, 3, 2, 1], 0]]);
    for (const t of g.tensors) expect(t.offset % GGUF_ALIGNMENT).toBe(0);
    expect(g.dataStart % GGUF_ALIGNMENT).toBe(0);
    expect(new Float32Array(Uint8Array.from(tensorBytes(g, g.tensors[0], 4)).buffer)).toEqual(f32);
    expect(new Uint16Array(Uint8Array.from(tensorBytes(g, g.tensors[1], 2)).buffer)).toEqual(bf16);
    expect(new Float32Array(Uint8Array.from(tensorBytes(g, g.tensors[2], 4)).buffer)).toEqual(one);
    // The file ends with the last tensor's bytes.
    expect(g.bytes.length).toBe(g.dataStart + g.tensors[3].offset + 42 * 4);
  });

  it('refuses shapes GGUF cannot hold and data of the wrong size, naming the tensor', () => {
    const path = join(tmp, 'bad.gguf');
    const t = (shape: number[], bytes: number): GgufTensor => ({ name: 'w', shape, type: 'f32', data: () => new Uint8Array(bytes) });
    expect(() => writeGguf(path, [], [t([], 4)])).toThrow(/tensor w has shape \[\]/);
    expect(() => writeGguf(path, [], [t([2, 0], 0)])).toThrow(RangeError);
    expect(() => writeGguf(path, [], [t([1, 1, 1, 1, 1], 4)])).toThrow(/1 to 4 positive dims/);
    expect(() => writeGguf(path, [], [t([2, 3], 20)])).toThrow(/tensor w has 20 bytes, its shape and type need 24/);
  });
});

// ---- the rotary layout ------------------------------------------------------------------------------------

/** Hugging Face's rotary embedding of one head (rotate_half: element i pairs with i + d/2), in float64. */
function ropeHalf(x: number[], pos: number, theta = 10000): number[] {
  const d = x.length, h = d / 2, out = [...x];
  for (let i = 0; i < h; i++) {
    const a = pos / theta ** ((2 * i) / d), c = Math.cos(a), s = Math.sin(a);
    out[i] = x[i] * c - x[i + h] * s;
    out[i + h] = x[i + h] * c + x[i] * s;
  }
  return out;
}

/** llama.cpp's rotary embedding of one head for Llama (element 2i pairs with 2i + 1), in float64. */
function ropePairs(x: number[], pos: number, theta = 10000): number[] {
  const d = x.length, out = [...x];
  for (let i = 0; i < d / 2; i++) {
    const a = pos / theta ** ((2 * i) / d), c = Math.cos(a), s = Math.sin(a);
    out[2 * i] = x[2 * i] * c - x[2 * i + 1] * s;
    out[2 * i + 1] = x[2 * i + 1] * c + x[2 * i] * s;
  }
  return out;
}

const matVec = (w: Float32Array, rows: number, k: number, x: number[]) =>
  Array.from({ length: rows }, (_, r) => x.reduce((s, xi, j) => s + w[r * k + j] * xi, 0));

describe('permuteRotaryRows', () => {
  for (const [heads, d, k] of [[1, 2, 1], [2, 6, 7], [3, 64, 45], [4, 128, 77]]) {
    it(`${heads} heads of ${d} rows, K = ${k}: llama.cpp's rotary on the permuted rows equals Hugging Face's, permuted; scores are unchanged`, () => {
      const rows = heads * d;
      const w = Float32Array.from({ length: rows * k }, (_, i) => Math.sin(1.3 * i + 0.2));
      const wk = Float32Array.from({ length: rows * k }, (_, i) => Math.cos(0.7 * i));
      const x = Array.from({ length: k }, (_, i) => Math.cos(0.37 * i) + 0.1);
      const p = permuteRotaryRows(w, heads, k), pk = permuteRotaryRows(wk, heads, k);
      const [posQ, posK] = [5, 2];
      for (let h = 0; h < heads; h++) {
        const head = (v: number[]) => v.slice(h * d, (h + 1) * d);
        const hfQ = ropeHalf(head(matVec(w, rows, k, x)), posQ), llQ = ropePairs(head(matVec(p, rows, k, x)), posQ);
        for (let i = 0; i < d / 2; i++) {
          expect(llQ[2 * i]).toBeCloseTo(hfQ[i], 9);
          expect(llQ[2 * i + 1]).toBeCloseTo(hfQ[d / 2 + i], 9);
        }
        const hfK = ropeHalf(head(matVec(wk, rows, k, x)), posK), llK = ropePairs(head(matVec(pk, rows, k, x)), posK);
        const dot = (a: number[], b: number[]) => a.reduce((s, ai, i) => s + ai * b[i], 0);
        expect(dot(llQ, llK)).toBeCloseTo(dot(hfQ, hfK), 8);
      }
    });
  }

  it('moves bf16 bit patterns the same way and leaves its input alone', () => {
    const w = Uint16Array.from({ length: 2 * 4 * 3 }, (_, i) => i);
    const copy = w.slice();
    // head 0 rows [0, 1, 2, 3] -> [0, 2, 1, 3]; head 1 likewise.
    expect([...permuteRotaryRows(w, 2, 3)]).toEqual([0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11, 12, 13, 14, 18, 19, 20, 15, 16, 17, 21, 22, 23]);
    expect(w).toEqual(copy);
  });

  it('refuses rows that are not whole heads of an even size', () => {
    expect(() => permuteRotaryRows(new Float32Array(3 * 4), 1, 4)).toThrow(/even number of rows/);
    expect(() => permuteRotaryRows(new Float32Array(4 * 4), 3, 4)).toThrow(RangeError);
    expect(() => permuteRotaryRows(new Float32Array(10), 1, 4)).toThrow(RangeError);
  });
});

describe('minimalVocabulary', () => {
  it('<unk>, <s>, </s>, the 256 byte tokens, then distinct pieces, with types and scores', () => {
    for (const size of [259, 260, 1000]) {
      const v = minimalVocabulary(size);
      expect(v.tokens).toHaveLength(size);
      expect(new Set(v.tokens).size).toBe(size);
      expect(v.scores).toHaveLength(size);
      expect(v.tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
      expect(v.tokens[3 + 0x0a]).toBe('<0x0A>');
      expect(v.tokens[258]).toBe('<0xFF>');
      expect([...v.types.slice(0, 4)]).toEqual([2, 3, 3, 6]);
      expect(v.types[258]).toBe(6);
      if (size > 259) expect([v.tokens[259], v.types[259]]).toEqual(['\u2581', 1]);
    }
  });

  it('refuses a vocabulary too small for the special and byte tokens', () => {
    expect(() => minimalVocabulary(258)).toThrow(/no room for 3 special and 256 byte tokens/);
  });
});

// ---- converting a checkpoint ---------------------------------------------------------------------------

const hf = { hidden_size: 64, intermediate_size: 96, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 300, rms_norm_eps: 1e-5, rope_theta: 10000, model_type: 'llama' };

describe('llamaCheckpointToGguf', () => {
  it('writes llama.cpp names, dims, types and metadata; q and k rows permuted, norms f32, the rest byte for byte', () => {
    const dir = join(tmp, 'ck-bf16'), out = join(tmp, 'ck-bf16.gguf');
    writeRandomLlamaCheckpoint(dir, hf, { dtype: 'bf16', seed: 3 });
    llamaCheckpointToGguf(dir, out, { contextLength: 77 });
    const g = readGguf(out);
    const meta = (key: string) => g.kv.get(key)?.value;
    expect(meta('general.architecture')).toBe('llama');
    expect(meta('general.file_type')).toBe(32);
    expect([meta('llama.context_length'), meta('llama.embedding_length'), meta('llama.block_count'), meta('llama.feed_forward_length')]).toEqual([77, 64, 2, 96]);
    expect([meta('llama.attention.head_count'), meta('llama.attention.head_count_kv'), meta('llama.rope.dimension_count')]).toEqual([4, 2, 16]);
    expect(meta('llama.attention.layer_norm_rms_epsilon')).toBeCloseTo(1e-5, 10);
    expect(meta('llama.rope.freq_base')).toBe(10000);
    expect(meta('tokenizer.ggml.model')).toBe('llama');
    expect((meta('tokenizer.ggml.tokens') as string[]).length).toBe(300);
    // llama.cpp checks the type of every key it reads: counts are uint32, floats float32, token types int32.
    for (const key of ['llama.context_length', 'llama.block_count', 'llama.attention.head_count_kv', 'tokenizer.ggml.bos_token_id']) expect(g.kv.get(key)?.type).toBe(4);
    expect(g.kv.get('llama.attention.layer_norm_rms_epsilon')?.type).toBe(6);

    const byName = new Map(g.tensors.map((t) => [t.name, t]));
    expect(g.tensors).toHaveLength(1 + 2 * 9 + 2);
    expect(byName.get('token_embd.weight')).toMatchObject({ ne: [64, 300], type: 30 });
    expect(byName.get('output.weight')).toMatchObject({ ne: [64, 300], type: 30 });
    expect(byName.get('blk.1.attn_k.weight')).toMatchObject({ ne: [64, 32], type: 30 });
    expect(byName.get('blk.1.ffn_down.weight')).toMatchObject({ ne: [96, 64], type: 30 });
    expect(byName.get('blk.0.attn_norm.weight')).toMatchObject({ ne: [64], type: 0 });
    expect(byName.get('output_norm.weight')).toMatchObject({ ne: [64], type: 0 });

    const ck = Checkpoint.open(dir);
    try {
      const bits = (name: string) => ck.tensor(name).data as Uint16Array;
      const read16 = (name: string) => new Uint16Array(Uint8Array.from(tensorBytes(g, byName.get(name)!, 2)).buffer);
      expect(read16('blk.1.attn_q.weight')).toEqual(permuteRotaryRows(bits('model.layers.1.self_attn.q_proj.weight'), 4, 64));
      expect(read16('blk.1.attn_k.weight')).toEqual(permuteRotaryRows(bits('model.layers.1.self_attn.k_proj.weight'), 2, 64));
      expect(read16('blk.1.attn_q.weight')).not.toEqual(bits('model.layers.1.self_attn.q_proj.weight'));
      expect(read16('blk.0.attn_v.weight')).toEqual(bits('model.layers.0.self_attn.v_proj.weight'));
      expect(read16('blk.0.ffn_gate.weight')).toEqual(bits('model.layers.0.mlp.gate_proj.weight'));
      expect(read16('token_embd.weight')).toEqual(bits('model.embed_tokens.weight'));
      const norm = new Float32Array(Uint8Array.from(tensorBytes(g, byName.get('blk.1.ffn_norm.weight')!, 4)).buffer);
      expect(norm).toEqual(ck.tensor('model.layers.1.post_attention_layernorm.weight').toFloat32());
    } finally {
      ck.close();
    }
  });

  it('a tied checkpoint has no output.weight (llama.cpp then reads token_embd)', () => {
    const dir = join(tmp, 'ck-tied'), out = join(tmp, 'ck-tied.gguf');
    writeRandomLlamaCheckpoint(dir, { ...hf, tie_word_embeddings: true }, { dtype: 'f32', seed: 3 });
    llamaCheckpointToGguf(dir, out);
    const g = readGguf(out);
    expect(g.tensors.map((t) => t.name)).not.toContain('output.weight');
    expect(g.kv.get('general.file_type')?.value).toBe(0);
    expect(g.tensors.find((t) => t.name === 'blk.0.attn_q.weight')?.type).toBe(0);
  });

  it('refuses a directory that is not a Llama checkpoint', () => {
    expect(() => llamaCheckpointToGguf(join(tmp, 'nowhere'), join(tmp, 'x.gguf'))).toThrow(/cannot open/);
  });
});

// ---- the peer ----------------------------------------------------------------------------------------------

describe('the llama.cpp peer without node-llama-cpp', () => {
  it('says it is not set up and how to set it up, without throwing', async () => {
    const status = llamaCppStatus('/nonexistent/node-llama-cpp');
    expect(status.available).toBe(false);
    expect(status.detail).toMatch(/^not set up: run .*setup-llama-cpp\.sh$/);
    const peer = await LlamaCppPeer.open({ threads: 1, dir: '/nonexistent/node-llama-cpp' });
    expect(peer).toEqual({ error: status.detail });
  });

  it('compareLogits: relative max difference, both top-1 tokens and the gap between them', () => {
    const ours = Float32Array.of(0.5, -4, 2, 1.9), theirs = Float32Array.of(0.52, -4, 1.8, 1.95);
    const c = compareLogits(ours, theirs);
    expect(c.relativeMaxDiff).toBeCloseTo(0.2 / 4, 6);
    expect([c.topOurs, c.topTheirs]).toEqual([2, 3]);
    expect(c.topGap).toBeCloseTo(0.1, 6);
    expect(compareLogits(ours, Float32Array.of(0.5, NaN, 2, 1.9)).relativeMaxDiff).toBeNaN();
    expect(() => compareLogits(ours, new Float32Array(3))).toThrow(RangeError);
  });
});

const installed = llamaCppStatus().available;
describe.skipIf(!installed)(`llama.cpp (node-llama-cpp in ${LLAMA_CPP_INSTALL_DIR}) on the converted checkpoint`, () => {
  it("node-llama-cpp's own GGUF reader reads the file as written", async () => {
    const dir = join(tmp, 'nlc-read'), out = join(tmp, 'nlc-read.gguf');
    writeRandomLlamaCheckpoint(dir, hf, { dtype: 'bf16', seed: 5 });
    llamaCheckpointToGguf(dir, out);
    const entry = join(LLAMA_CPP_INSTALL_DIR, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
    const { readGgufFileInfo } = (await import(pathToFileURL(entry).href)) as {
      readGgufFileInfo(path: string): Promise<{ version: number; metadata: Record<string, Record<string, unknown>>; tensorInfo?: { name: string; dimensions: number[]; ggmlType: number }[] }>;
    };
    const info = await readGgufFileInfo(out);
    expect(info.version).toBe(3);
    expect(info.metadata.general).toMatchObject({ architecture: 'llama', file_type: 32, alignment: 32 });
    expect(info.metadata.llama).toMatchObject({ embedding_length: 64, block_count: 2, feed_forward_length: 96, attention: { head_count: 4, head_count_kv: 2 }, rope: { dimension_count: 16 } });
    expect(info.tensorInfo?.length).toBe(21);
    expect(info.tensorInfo?.find((t) => t.name === 'blk.1.attn_k.weight')).toMatchObject({ dimensions: [64, 32], ggmlType: 30 });
  });

  // The tolerances bench:models holds the engines to: f32 differs by summation order and llama.cpp's f16
  // KV cache; bf16 also by where each engine rounds activations to bf16.
  for (const [dtype, tolerance] of [['f32', 1e-2], ['bf16', 5e-2]] as const) {
    it(`${dtype}: the same next-token distribution as gemmkit on the same ids (top-1 equal, max diff / max logit < ${tolerance})`, async () => {
      const config = { ...hf, hidden_size: 128, num_hidden_layers: 3, intermediate_size: 256, vocab_size: 512 };
      const dir = join(tmp, `run-${dtype}`), out = join(tmp, `run-${dtype}.gguf`);
      writeRandomLlamaCheckpoint(dir, config, { dtype, seed: 5 });
      llamaCheckpointToGguf(dir, out);
      const peer = await LlamaCppPeer.open({ threads: 2 });
      if (!(peer instanceof LlamaCppPeer)) throw new Error(peer.error);
      const model = (await loadModel(dir)) as LlamaModel;
      const theirs = await peer.load(out, { contextSize: 64, batchSize: 64 });
      try {
        for (const ids of [[7], Array.from({ length: 45 }, (_, i) => (i * 37 + 11) % 512)]) {
          const ours = (await forward(model, ids, { cache: createKVCache(model, 1, ids.length), logits: 'last' })).data as Float32Array;
          const c = compareLogits(ours, await theirs.logits(ids, 512));
          expect(c.topTheirs, `top-1 after ${ids.length} ids (gap ${c.topGap})`).toBe(c.topOurs);
          expect(c.relativeMaxDiff).toBeLessThan(tolerance);
        }
        // Greedy steps agree too: prefill then decode.
        const prompt = [1, 2, 3, 4, 5];
        await theirs.newSequence();
        let next = await theirs.prefill(prompt);
        const cache = createKVCache(model, 1, 16);
        let ours = (await forward(model, prompt, { cache, logits: 'last' })).data as Float32Array;
        for (let s = 0; s < 3; s++) {
          expect(next).toBe(compareLogits(ours, ours).topOurs);
          ours = (await forward(model, [next], { cache, logits: 'last' })).data as Float32Array;
          next = await theirs.decode(next);
        }
      } finally {
        await theirs.dispose();
        await peer.dispose();
      }
    });
  }
});
