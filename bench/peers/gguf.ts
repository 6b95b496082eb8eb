// GGUF (version 3) files for llama.cpp, written from gemmkit's Llama checkpoints so that the llama.cpp peer
// (node-llama-cpp, bench/peers/llama_cpp.ts) runs on exactly the weights gemmkit runs. Written from the
// format's specification (ggml's docs/gguf.md) and the metadata keys llama.cpp's Llama loader reads.
//
// Layout: header (magic "GGUF", version 3, tensor count, metadata count, metadata key/values), tensor infos
// (name, dims innermost first, ggml type, offset into the data section), zero padding to the alignment,
// then every tensor's bytes, each starting at a multiple of the alignment. Everything little-endian.
//
// llamaCheckpointToGguf maps the Hugging Face layout onto llama.cpp's:
//   - tensor names: model.layers.{i}.self_attn.q_proj.weight -> blk.{i}.attn_q.weight, and so on;
//   - a weight [out, in] row-major is the ggml tensor with ne = [in, out]: the same bytes;
//   - the rows of q_proj and k_proj are permuted within each head: Hugging Face's rotary embedding pairs
//     element i with i + d/2 of a head (rotate_half), llama.cpp's pairs 2i with 2i + 1, so row i of a head
//     moves to 2i and row d/2 + i to 2i + 1. Attention scores are unchanged (q and k move alike);
//   - norm weights are stored f32 (llama.cpp keeps 1-D tensors f32; bf16 values convert exactly), the
//     2-D weights in the checkpoint's dtype (f32 or bf16);
//   - a minimal SentencePiece-style vocabulary, as llama.cpp requires one of the model's size: <unk>, <s>,
//     </s>, the 256 byte tokens <0x00>..<0xFF>, the word separator and printable ASCII, then placeholders. Benchmarks feed token ids, so the
//     vocabulary is never used to tokenize text.
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint, type LlamaConfig, type Tensor } from '../../src/index.js';
import { parseLlamaConfig } from '../../src/models/index.js';

// ---- the format ----------------------------------------------------------------------------------------

/** A metadata value with its GGUF type (gguf_metadata_value_type). */
export type GgufValue =
  | { type: 'uint32'; value: number }
  | { type: 'int32'; value: number }
  | { type: 'uint64'; value: number }
  | { type: 'float32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: 'string'; value: readonly string[] }
  | { type: 'array'; itemType: 'float32' | 'int32' | 'uint32'; value: ArrayLike<number> };

/** GGUF value type ids (the specification's gguf_metadata_value_type). */
export const GGUF_VALUE_TYPE = { uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, array: 9, uint64: 10 } as const;

/** ggml tensor type ids (the specification's ggml_type) for the dtypes gemmkit writes. */
export const GGML_TYPE = { f32: 0, f16: 1, bf16: 30 } as const;
export type GgufTensorType = keyof typeof GGML_TYPE;
const TYPE_BYTES: Record<GgufTensorType, number> = { f32: 4, f16: 2, bf16: 2 };

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
/** The data alignment written (general.alignment); the specification's default is 32. */
export const GGUF_ALIGNMENT = 32;

export interface GgufTensor {
  name: string;
  /** Row-major shape, outermost first (as safetensors and gemmkit write it); GGUF stores it reversed. */
  shape: readonly number[];
  type: GgufTensorType;
  /** The tensor's bytes, row-major; called once, when the writer reaches this tensor. */
  data: () => Uint8Array;
}

/** Writes little-endian values into a growing buffer. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  u32(v: number): void {
    this.reserve(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }

  i32(v: number): void {
    this.reserve(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }

  u64(v: number): void {
    this.reserve(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }

  f32(v: number): void {
    this.reserve(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }

  /** gguf_string_t: uint64 byte length, then UTF-8 bytes without a terminator. */
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.reserve(bytes.length);
    bytes.copy(this.buf, this.length);
    this.length += bytes.length;
  }

  zeros(n: number): void {
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

function writeValue(w: ByteWriter, key: string, v: GgufValue): void {
  const item = (type: 'uint32' | 'int32' | 'float32', x: number) => (type === 'uint32' ? w.u32(x) : type === 'int32' ? w.i32(x) : w.f32(x));
  switch (v.type) {
    case 'uint32':
    case 'int32':
    case 'float32':
      item(v.type, v.value);
      break;
    case 'uint64':
      w.u64(v.value);
      break;
    case 'bool':
      w.u8(v.value ? 1 : 0);
      break;
    case 'string':
      w.string(v.value);
      break;
    case 'array':
      w.u32(GGUF_VALUE_TYPE[v.itemType]);
      w.u64(v.value.length);
      if (v.itemType === 'string') for (const s of v.value as readonly string[]) w.string(s);
      else for (let i = 0; i < v.value.length; i++) item(v.itemType, (v.value as ArrayLike<number>)[i]);
      break;
    default:
      throw new TypeError(`writeGguf: metadata ${key} has an unknown value type`);
  }
}

/**
 * Writes a GGUF v3 file: the metadata in the given order (general.alignment added), then the tensors in the
 * given order, each read through its data() only when written (so a large model is never held twice).
 */
export function writeGguf(path: string, metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: readonly GgufTensor[]): void {
  const kv: (readonly [string, GgufValue])[] = [...metadata.filter(([k]) => k !== 'general.alignment'), ['general.alignment', { type: 'uint32', value: GGUF_ALIGNMENT }]];
  const w = new ByteWriter();
  w.u32(0x46554747); // "GGUF" read as a little-endian uint32
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [key, value] of kv) {
    w.string(key);
    w.u32(GGUF_VALUE_TYPE[value.type]);
    writeValue(w, key, value);
  }
  const sizes = tensors.map((t) => t.shape.reduce((p, d) => p * d, 1) * TYPE_BYTES[t.type]);
  let offset = 0;
  tensors.forEach((t, i) => {
    if (t.shape.length < 1 || t.shape.length > 4 || t.shape.some((d) => !Number.isSafeInteger(d) || d < 1)) {
      throw new RangeError(`writeGguf: tensor ${t.name} has shape [${t.shape.join(', ')}]; GGUF takes 1 to 4 positive dims`);
    }
    w.string(t.name);
    w.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) w.u64(t.shape[d]); // ne[0] is the innermost dimension
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    offset = alignUp(offset + sizes[i], GGUF_ALIGNMENT);
  });
  w.zeros(alignUp(w.length, GGUF_ALIGNMENT) - w.length);
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, w.bytes());
    const pad = Buffer.alloc(GGUF_ALIGNMENT);
    tensors.forEach((t, i) => {
      const data = t.data();
      if (data.byteLength !== sizes[i]) {
        throw new RangeError(`writeGguf: tensor ${t.name} has ${data.byteLength} bytes, its shape and type need ${sizes[i]}`);
      }
      writeSync(fd, data);
      const tail = alignUp(sizes[i], GGUF_ALIGNMENT) - sizes[i];
      if (tail > 0 && i < tensors.length - 1) writeSync(fd, pad, 0, tail);
    });
  } finally {
    closeSync(fd);
  }
}

// ---- Llama checkpoints ---------------------------------------------------------------------------------

/**
 * Moves the rows of a q or k projection [heads * d, in] from Hugging Face's rotary layout to llama.cpp's:
 * within each head, row i goes to 2i and row d/2 + i to 2i + 1. Works on any typed array (f32 values or
 * bf16 bit patterns).
 */
export function permuteRotaryRows<T extends Float32Array | Uint16Array>(w: T, heads: number, inFeatures: number): T {
  const rows = w.length / inFeatures;
  const d = rows / heads;
  if (!Number.isInteger(rows) || !Number.isInteger(d) || d % 2 !== 0) {
    throw new RangeError(`permuteRotaryRows: ${w.length} values are not ${heads} heads of an even number of rows of ${inFeatures}`);
  }
  const out = new (w.constructor as { new (n: number): T })(w.length);
  const half = d / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (const [from, to] of [[i, 2 * i], [half + i, 2 * i + 1]]) {
        const src = (h * d + from) * inFeatures, dst = (h * d + to) * inFeatures;
        out.set(w.subarray(src, src + inFeatures), dst);
      }
    }
  }
  return out;
}

/** The minimal SentencePiece vocabulary described at the top of this file, of `size` tokens. */
export function minimalVocabulary(size: number): { tokens: string[]; scores: Float32Array; types: Int32Array } {
  const specials = ['<unk>', '<s>', '</s>'];
  if (size < specials.length + 256) throw new RangeError(`minimalVocabulary: a vocabulary of ${size} has no room for ${specials.length} special and 256 byte tokens`);
  const tokens: string[] = [...specials];
  const types = new Int32Array(size);
  types.set([2, 3, 3]); // unknown, control, control
  for (let b = 0; b < 256; b++) {
    types[tokens.length] = 6; // byte
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  }
  // The word separator and printable ASCII as pieces, so text round-trips through tokenize and detokenize
  // (node-llama-cpp checks that when it loads a model), then placeholders.
  const pieces = ['\u2581', ...Array.from({ length: 94 }, (_, i) => String.fromCharCode(0x21 + i))];
  while (tokens.length < size) {
    types[tokens.length] = 1; // normal
    tokens.push(pieces.shift() ?? `\u2581t${tokens.length}`);
  }
  const scores = Float32Array.from({ length: size }, (_, i) => (types[i] === 1 ? -i : 0));
  return { tokens, scores, types };
}

export interface LlamaGgufOptions {
  /** llama.context_length (default: config.json's max_position_embeddings, else 4096). */
  contextLength?: number;
  /** general.name (default 'gemmkit random llama'). */
  name?: string;
}

const bytesOf = (a: Float32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** llama.cpp's general.file_type for the dtype of most tensors (llama_ftype). */
const FILE_TYPE: Record<GgufTensorType, number> = { f32: 0, f16: 1, bf16: 32 };

/**
 * Converts a gemmkit / Hugging Face Llama checkpoint directory (config.json and safetensors, as
 * writeRandomLlamaCheckpoint writes it) to one GGUF file llama.cpp loads. Weights keep their dtype (f32,
 * f16 or bf16); norms are written f32. Returns the parsed config.
 */
export function llamaCheckpointToGguf(dir: string, out: string, opts: LlamaGgufOptions = {}): LlamaConfig {
  const ck = Checkpoint.open(dir);
  try {
    if (ck.config === undefined) throw new Error(`llamaCheckpointToGguf: ${join(dir, 'config.json')} is missing`);
    const c = parseLlamaConfig(`llamaCheckpointToGguf(${dir})`, ck.config);
    const ctx = opts.contextLength ?? (typeof ck.config.max_position_embeddings === 'number' ? ck.config.max_position_embeddings : 4096);
    const weightDtype = ck.loadedDtype('model.layers.0.self_attn.q_proj.weight') as GgufTensorType;
    const vocab = minimalVocabulary(c.vocabSize);
    const u32 = (value: number): GgufValue => ({ type: 'uint32', value });
    const f32 = (value: number): GgufValue => ({ type: 'float32', value });
    const metadata: [string, GgufValue][] = [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['general.name', { type: 'string', value: opts.name ?? 'gemmkit random llama' }],
      ['general.file_type', u32(FILE_TYPE[weightDtype])],
      ['llama.context_length', u32(ctx)],
      ['llama.embedding_length', u32(c.hiddenSize)],
      ['llama.block_count', u32(c.numHiddenLayers)],
      ['llama.feed_forward_length', u32(c.intermediateSize)],
      ['llama.attention.head_count', u32(c.numAttentionHeads)],
      ['llama.attention.head_count_kv', u32(c.numKeyValueHeads)],
      ['llama.attention.key_length', u32(c.headDim)],
      ['llama.attention.value_length', u32(c.headDim)],
      ['llama.attention.layer_norm_rms_epsilon', f32(c.rmsNormEps)],
      ['llama.rope.dimension_count', u32(c.headDim)],
      ['llama.rope.freq_base', f32(c.ropeTheta)],
      ['llama.vocab_size', u32(c.vocabSize)],
      ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
      ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: vocab.tokens }],
      ['tokenizer.ggml.scores', { type: 'array', itemType: 'float32', value: vocab.scores }],
      ['tokenizer.ggml.token_type', { type: 'array', itemType: 'int32', value: vocab.types }],
      ['tokenizer.ggml.unknown_token_id', u32(0)],
      ['tokenizer.ggml.bos_token_id', u32(1)],
      ['tokenizer.ggml.eos_token_id', u32(2)],
      ['tokenizer.ggml.add_bos_token', { type: 'bool', value: false }],
    ];

    const raw = (t: Tensor) => t.data as Float32Array | Uint16Array;
    const weight = (hf: string, name: string, heads?: number): GgufTensor => {
      const info = ck.info(hf);
      const type = ck.loadedDtype(hf) as GgufTensorType;
      return {
        name,
        shape: info.shape,
        type,
        data: () => {
          const values = raw(ck.tensor(hf));
          return bytesOf(heads === undefined ? values : permuteRotaryRows(values, heads, info.shape[1]));
        },
      };
    };
    const norm = (hf: string, name: string): GgufTensor => ({ name, shape: ck.info(hf).shape, type: 'f32', data: () => bytesOf(ck.tensor(hf).toFloat32()) });

    const tensors: GgufTensor[] = [weight('model.embed_tokens.weight', 'token_embd.weight')];
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const p = `model.layers.${i}`, b = `blk.${i}`;
      tensors.push(
        norm(`${p}.input_layernorm.weight`, `${b}.attn_norm.weight`),
        weight(`${p}.self_attn.q_proj.weight`, `${b}.attn_q.weight`, c.numAttentionHeads),
        weight(`${p}.self_attn.k_proj.weight`, `${b}.attn_k.weight`, c.numKeyValueHeads),
        weight(`${p}.self_attn.v_proj.weight`, `${b}.attn_v.weight`),
        weight(`${p}.self_attn.o_proj.weight`, `${b}.attn_output.weight`),
        norm(`${p}.post_attention_layernorm.weight`, `${b}.ffn_norm.weight`),
        weight(`${p}.mlp.gate_proj.weight`, `${b}.ffn_gate.weight`),
        weight(`${p}.mlp.up_proj.weight`, `${b}.ffn_up.weight`),
        weight(`${p}.mlp.down_proj.weight`, `${b}.ffn_down.weight`),
      );
      for (const proj of ['q', 'k', 'v', 'o']) {
        if (ck.has(`${p}.self_attn.${proj}_proj.bias`)) throw new Error(`llamaCheckpointToGguf: ${p}.self_attn.${proj}_proj.bias: projection biases are not converted`);
      }
    }
    tensors.push(norm('model.norm.weight', 'output_norm.weight'));
    if (!c.tieWordEmbeddings) tensors.push(weight('lm_head.weight', 'output.weight'));
    writeGguf(out, metadata, tensors);
    return c;
  } finally {
    ck.close();
  }
}
