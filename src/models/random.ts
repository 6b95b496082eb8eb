// Random Llama-style checkpoints in the Hugging Face layout, for tests, benchmarks and tuning a shape
// without downloading a model. Values are deterministic for a seed and independent of the dtype (a bf16
// checkpoint holds the f32 checkpoint's values rounded), so checkpoints of two dtypes can be compared.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DType } from '../dtype.js';
import { INDEX_FILE, SINGLE_FILE, saveSafetensors } from '../safetensors.js';
import { type Tensor, tensor } from '../tensor.js';
import { llamaTensorShapes, parseLlamaConfig } from './llama.js';

export interface RandomLlamaOptions {
  dtype?: DType;
  seed?: number;
  /** Split the weights over this many shard files with a model.safetensors.index.json. Default 1. */
  shards?: number;
}

// One stream per tensor name, so values do not depend on which other tensors exist or their order.
function hashName(name: string, seed: number): number {
  let h = (2166136261 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** mulberry32: a small, fast 32-bit PRNG; uniform numbers in [0, 1), the same sequence for the same seed. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uniform(n: number, seed: number, center: number, halfWidth: number): Float32Array {
  const v = new Float32Array(n);
  const random = mulberry32(seed);
  for (let i = 0; i < n; i++) v[i] = center + halfWidth * (2 * random() - 1);
  return v;
}

/**
 * Writes config.json and random weights for a Hugging Face Llama config (fields as in config.json) to
 * `dir`. Linear weights are uniform with variance 1/(3 in), norm weights 1 +- 0.1, embeddings +-1.
 */
export function writeRandomLlamaCheckpoint(dir: string, hfConfig: Record<string, unknown>, opts: RandomLlamaOptions = {}): void {
  const dtype = opts.dtype ?? 'bf16';
  const seed = opts.seed ?? 1;
  const shards = opts.shards ?? 1;
  const config = parseLlamaConfig(`writeRandomLlamaCheckpoint(${dir})`, hfConfig);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_act: 'silu', ...hfConfig }, null, 2));
  const names = llamaTensorShapes(config);
  const perShard = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = shards === 1 ? SINGLE_FILE : `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const tensors = new Map<string, Tensor>();
    for (const [name, shape] of names.slice(s * perShard, (s + 1) * perShard)) {
      const n = shape.reduce((p, d) => p * d, 1);
      const values = name.endsWith('norm.weight') ? uniform(n, hashName(name, seed), 1, 0.1)
        : name === 'model.embed_tokens.weight' ? uniform(n, hashName(name, seed), 0, 1)
        : uniform(n, hashName(name, seed), 0, 1 / Math.sqrt(shape[1]));
      tensors.set(name, tensor(values, shape, dtype));
      weightMap[name] = file;
    }
    saveSafetensors(join(dir, file), tensors, { format: 'pt' });
  }
  if (shards > 1) writeFileSync(join(dir, INDEX_FILE), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
}
