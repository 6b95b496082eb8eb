// A whole Llama on the emulated GPUs (emu-cuda:0, emu-hip:0; npm run build:emu): the real CUDA and HIP
// GEMM and op kernels, run by the CPU emulator with its bounds, race and barrier checks, against the
// float64 reference (GEMM inputs rounded as the device rounds them) and against the same model on the
// CPU: a batch of two prompts, a prefill across the attention tiles, cache slots at different lengths,
// greedy generation. Small models keep the emulation to seconds.
// Skipped where the emulator is not built, unless GEMMKIT_REQUIRE_EMU=1 (CI) makes that a failure.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint, type DType, type Device, type LlamaModel, type Tensor, createKVCache, forward, generate, loadModel, writeRandomLlamaCheckpoint } from '../src/index.js';
import { linearInputDtype } from '../src/models/layers.js';
import { gpuAddonPath } from '../src/native.js';
import { values } from './helpers.js';
import { type RefRounding, type RefWeights, refLlama } from './model-reference.js';

const REQUIRE = process.env.GEMMKIT_REQUIRE_EMU === '1';
const built = existsSync(gpuAddonPath('emu-cuda')) && existsSync(gpuAddonPath('emu-hip'));
const DEVICES: Device[] = ['emu-cuda:0', 'emu-hip:0'];

const dir = mkdtempSync(join(tmpdir(), 'gemmkit-models-emu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = { intermediate_size: 96, num_hidden_layers: 2, rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: 83, hidden_size: 64 };
// GQA 4 (8 query heads over 2 KV heads, head_dim 8) in f32 (the simt kernels) and bf16 (mma / MFMA).
const VARIANTS: { name: string; dtype: DType; heads: number; kvHeads: number }[] = [
  { name: 'gqa4-f32', dtype: 'f32', heads: 8, kvHeads: 2 },
  { name: 'gqa4-bf16', dtype: 'bf16', heads: 8, kvHeads: 2 },
];
const paths = new Map<string, string>();
const weights = new Map<string, RefWeights>();
beforeAll(() => {
  VARIANTS.forEach((v, i) => {
    const p = join(dir, v.name);
    writeRandomLlamaCheckpoint(p, { ...base, num_attention_heads: v.heads, num_key_value_heads: v.kvHeads }, { dtype: v.dtype, seed: 40 + i });
    paths.set(v.name, p);
    const ck = Checkpoint.open(p);
    try {
      weights.set(v.name, new Map(ck.names().map((n) => [n, values(ck.tensor(n))])));
    } finally {
      ck.close();
    }
  });
});

function refConfig(v: (typeof VARIANTS)[number], round: RefRounding) {
  return {
    hidden: base.hidden_size, intermediate: base.intermediate_size, heads: v.heads, kvHeads: v.kvHeads, layers: base.num_hidden_layers,
    vocab: base.vocab_size, eps: base.rms_norm_eps, theta: base.rope_theta, tied: false, roundInputs: round,
  };
}

// f32 inputs: f32 rounding along the way; 16-bit inputs: one step of the format on the odd input that the
// model's f32 activations and the reference's f64 ones round to different sides.
function tolerance(dtype: DType, device: Device): { round: RefRounding; tol: number } {
  const input = linearInputDtype(dtype, device);
  return input === 'f32' ? { round: false, tol: 4e-6 } : { round: input, tol: 2 ** -10 };
}

function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let err = 0, mag = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    mag = Math.max(mag, Math.abs(want[i]));
  }
  return err / mag;
}

function expectRel(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, label: string): void {
  expect(got.length, `${label}: length`).toBe(want.length);
  const e = relError(got, want);
  if (!(e <= tol)) throw new Error(`${label}: normwise relative error ${e.toExponential(2)} > ${tol.toExponential(2)}`);
}

function host(t: Tensor): Float32Array {
  const out = t.to('cpu').toFloat32();
  if (t.device !== 'cpu') t.dispose();
  return out;
}

const PROMPTS = [[5, 17, 82, 0, 42, 42, 7], [1, 2, 3, 4, 5, 6, 81]];
const V = base.vocab_size;

it.runIf(REQUIRE)('the emulated GPUs are built (GEMMKIT_REQUIRE_EMU=1)', () => {
  expect(built, `no ${gpuAddonPath('emu-cuda')} or ${gpuAddonPath('emu-hip')}: run npm run build:emu`).toBe(true);
});

describe.runIf(built || REQUIRE)('a Llama on the emulated GPUs', () => {
  for (const device of DEVICES) {
    for (const v of VARIANTS) {
      it(`${device}, ${v.name}: a batch of two, every position's logits, against the float64 reference`, async () => {
        const model = (await loadModel(paths.get(v.name)!, { device })) as LlamaModel;
        try {
          expect(model.device).toBe(device);
          const logits = await forward(model, PROMPTS);
          expect(logits.device).toBe(device);
          const all = host(logits);
          const { round, tol } = tolerance(v.dtype, device);
          PROMPTS.forEach((ids, b) => {
            expectRel(all.subarray(b * 7 * V, (b + 1) * 7 * V), refLlama(refConfig(v, round), weights.get(v.name)!, ids), tol, `${device} ${v.name} sequence ${b}`);
          });
        } finally {
          model.dispose();
        }
      });
    }

    it(`${device}: a prefill of 65 tokens (across the attention tiles), then decode steps, against the reference`, async () => {
      const v = VARIANTS[0];
      const long = Array.from({ length: 68 }, (_, i) => (i * 37 + 11) % V);
      const ref = refLlama(refConfig(v, false), weights.get(v.name)!, long);
      const row = (t: number) => ref.subarray(t * V, (t + 1) * V);
      const model = await loadModel(paths.get(v.name)!, { device });
      try {
        const cache = createKVCache(model, 1, 68);
        expectRel(host(await forward(model, long.slice(0, 65), { cache, logits: 'last' })), row(64), 4e-6, `${device}: prefill of 65`);
        for (let t = 65; t < 68; t++) {
          expectRel(host(await forward(model, [long[t]], { cache, logits: 'last' })), row(t), 4e-6, `${device}: decode at position ${t}`);
        }
      } finally {
        model.dispose();
      }
    });

    it(`${device}: cache slots at different lengths share a decode step; greedy ids equal the CPU's`, async () => {
      const v = VARIANTS[0];
      const cpu = await loadModel(paths.get(v.name)!, { device: 'cpu' });
      const gpu = await loadModel(paths.get(v.name)!, { device });
      try {
        const prompts = [[3, 14, 15, 9, 26], [8, 9], [76, 0, 1, 2, 3, 4, 5, 6, 7]];
        const perDevice: Float32Array[] = [];
        for (const model of [cpu, gpu]) {
          const cache = createKVCache(model, 3, 16);
          for (let i = 0; i < 3; i++) await forward(model, [prompts[i]], { cache, slots: [2 - i], logits: 'last' });
          expect(Array.from(cache.lengths)).toEqual([9, 2, 5]);
          perDevice.push(host(await forward(model, [[1], [2], [3]], { cache, slots: [2, 1, 0], logits: 'last' })));
        }
        expectRel(perDevice[1], perDevice[0], 1e-5, `${device} vs cpu: a step over slots at lengths 5, 2, 9`);
        const ids = await Promise.all([cpu, gpu].map((m) => generate(m, PROMPTS, { maxNewTokens: 6 })));
        expect(ids[1]).toEqual(ids[0]);
      } finally {
        cpu.dispose();
        gpu.dispose();
      }
    });
  }
});
