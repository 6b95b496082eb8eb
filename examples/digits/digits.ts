// The digits example, as functions: read the data set, split it 70/30 with a fixed seed, train a small MLP
// whose forward and backward passes are gemmkit GEMMs, save it as a one-file safetensors model, and measure
// the loaded model on the unseen 30%: accuracy, single-image latency, throughput at batch 256.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { MLP_METADATA_KEY, type MlpModel, type MlpSpec, type Tensor, forward, loadModel, matmulSync, saveSafetensors, tensor, zeros } from '../../src/index.js';

export const PIXELS = 64; // 8 x 8 images, values 0..16
export const CLASSES = 10;

export interface Digits {
  /** [count, 64], pixel values scaled to [0, 1] */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

/** The 1797 images of digits.csv.gz (64 pixel values then the label, per line). */
export function loadDigits(path = new URL('./digits.csv.gz', import.meta.url)): Digits {
  const lines = gunzipSync(readFileSync(path)).toString('utf8').trim().split('\n');
  const images = new Float32Array(lines.length * PIXELS);
  const labels = new Uint8Array(lines.length);
  lines.forEach((line, i) => {
    const cells = line.split(',').map(Number);
    if (cells.length !== PIXELS + 1 || cells.some((v) => !Number.isInteger(v))) throw new Error(`digits: line ${i + 1} is not 64 pixels and a label`);
    for (let p = 0; p < PIXELS; p++) images[i * PIXELS + p] = cells[p] / 16;
    labels[i] = cells[PIXELS];
  });
  return { images, labels, count: lines.length };
}

/** mulberry32: a small seeded PRNG, so the split and the initial weights are the same on every run. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function subset(d: Digits, rows: number[]): Digits {
  const images = new Float32Array(rows.length * PIXELS);
  const labels = new Uint8Array(rows.length);
  rows.forEach((r, i) => {
    images.set(d.images.subarray(r * PIXELS, (r + 1) * PIXELS), i * PIXELS);
    labels[i] = d.labels[r];
  });
  return { images, labels, count: rows.length };
}

/** A shuffled split (Fisher-Yates with a fixed seed): `trainFraction` for training, the rest held out. */
export function splitDigits(d: Digits, seed = 2024, trainFraction = 0.7): { train: Digits; test: Digits } {
  const order = Array.from({ length: d.count }, (_, i) => i);
  const rand = seededRandom(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const cut = Math.round(d.count * trainFraction);
  return { train: subset(d, order.slice(0, cut)), test: subset(d, order.slice(cut)) };
}

export interface TrainOptions {
  hidden?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  seed?: number;
}

/** MLP weights: W1 [hidden, 64], b1 [hidden], W2 [10, hidden], b2 [10], f32. */
export interface MlpWeights {
  w1: Tensor;
  b1: Tensor;
  w2: Tensor;
  b2: Tensor;
}

/**
 * Trains 64 -> hidden (relu) -> 10 (softmax cross-entropy) with Adam on mini-batches. Every product of the
 * forward and backward passes is a gemmkit GEMM: the forward ones as Linear layers run them (x W^T, bias and
 * relu fused), the gradients with transposed operands (dW = dY^T X via transA, dX = dY W).
 */
export function trainMlp(train: Digits, opts: TrainOptions = {}): MlpWeights {
  const hidden = opts.hidden ?? 64, epochs = opts.epochs ?? 30, batchSize = opts.batchSize ?? 32, lr = opts.learningRate ?? 3e-3;
  const rand = seededRandom(opts.seed ?? 7);
  const init = (n: number, fanIn: number) => Float32Array.from({ length: n }, () => (2 * rand() - 1) * Math.sqrt(6 / fanIn)); // He-uniform
  const params = {
    w1: tensor(init(hidden * PIXELS, PIXELS), [hidden, PIXELS]), b1: zeros([hidden]),
    w2: tensor(init(CLASSES * hidden, hidden), [CLASSES, hidden]), b2: zeros([CLASSES]),
  };
  const adam = Object.fromEntries(Object.entries(params).map(([k, t]) => [k, { m: new Float32Array(t.size), v: new Float32Array(t.size) }])) as Record<keyof MlpWeights, { m: Float32Array; v: Float32Array }>;
  const beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  let step = 0;
  const order = Array.from({ length: train.count }, (_, i) => i);
  for (let epoch = 0; epoch < epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (let start = 0; start < order.length; start += batchSize) {
      const rows = order.slice(start, start + batchSize);
      const n = rows.length;
      const x = zeros([n, PIXELS]); // X: [n, 64]
      rows.forEach((r, i) => (x.data as Float32Array).set(train.images.subarray(r * PIXELS, (r + 1) * PIXELS), i * PIXELS));
      // Forward: H = relu(X W1^T + b1) [n, hidden]; Z = H W2^T + b2 [n, 10]
      const h = matmulSync(x, params.w1, { transB: true, bias: params.b1, activation: 'relu' });
      const z = matmulSync(h, params.w2, { transB: true, bias: params.b2 });
      // dZ = (softmax(Z) - onehot) / n
      const dz = z.data as Float32Array;
      rows.forEach((r, i) => {
        const row = dz.subarray(i * CLASSES, (i + 1) * CLASSES);
        const max = Math.max(...row);
        let sum = 0;
        for (let c = 0; c < CLASSES; c++) sum += (row[c] = Math.exp(row[c] - max));
        for (let c = 0; c < CLASSES; c++) row[c] = (row[c] / sum - (c === train.labels[r] ? 1 : 0)) / n;
      });
      // Backward: dW2 = dZ^T H [10, hidden]; dH = dZ W2 [n, hidden], masked by relu; dW1 = dH^T X [hidden, 64]
      const dw2 = matmulSync(z, h, { transA: true });
      const dh = matmulSync(z, params.w2);
      const hv = h.data as Float32Array, dhv = dh.data as Float32Array;
      for (let k = 0; k < dhv.length; k++) if (hv[k] <= 0) dhv[k] = 0;
      const dw1 = matmulSync(dh, x, { transA: true });
      const grads: Record<keyof MlpWeights, Float32Array> = {
        w1: dw1.data as Float32Array, b1: columnSums(dhv, hidden),
        w2: dw2.data as Float32Array, b2: columnSums(dz, CLASSES),
      };
      step++;
      const correction1 = 1 - beta1 ** step, correction2 = 1 - beta2 ** step;
      for (const key of Object.keys(params) as (keyof MlpWeights)[]) {
        const p = params[key].data as Float32Array, g = grads[key], { m, v } = adam[key];
        for (let k = 0; k < p.length; k++) {
          m[k] = beta1 * m[k] + (1 - beta1) * g[k];
          v[k] = beta2 * v[k] + (1 - beta2) * g[k] * g[k];
          p[k] -= (lr * (m[k] / correction1)) / (Math.sqrt(v[k] / correction2) + epsilon);
        }
      }
    }
  }
  return params;
}

function columnSums(x: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(cols);
  for (let i = 0; i < x.length; i++) out[i % cols] += x[i];
  return out;
}

/** Saves the MLP with its spec in __metadata__, so the one file is the whole model for loadModel. */
export function saveDigitsModel(path: string, w: MlpWeights): void {
  const spec: MlpSpec = {
    type: 'mlp',
    layers: [
      { op: 'linear', weight: 'fc1.weight', bias: 'fc1.bias', activation: 'relu' },
      { op: 'linear', weight: 'fc2.weight', bias: 'fc2.bias' },
      { op: 'softmax' },
    ],
  };
  saveSafetensors(path, { 'fc1.weight': w.w1, 'fc1.bias': w.b1, 'fc2.weight': w.w2, 'fc2.bias': w.b2 }, { [MLP_METADATA_KEY]: JSON.stringify(spec) });
}

/** Predicted classes for images [n, 64] (the argmax of each row of probabilities). */
export async function predict(model: MlpModel, images: Float32Array): Promise<number[]> {
  const probs = (await forward(model, tensor(images, [images.length / PIXELS, PIXELS]))).data as Float32Array;
  const out: number[] = [];
  for (let r = 0; r < probs.length; r += CLASSES) {
    let best = 0;
    for (let c = 1; c < CLASSES; c++) if (probs[r + c] > probs[r + best]) best = c;
    out.push(best);
  }
  return out;
}

export async function accuracy(model: MlpModel, data: Digits): Promise<number> {
  const predicted = await predict(model, data.images);
  return predicted.filter((p, i) => p === data.labels[i]).length / data.count;
}

export interface Speed {
  /** ms per single-image forward, median and 99th percentile */
  p50Ms: number;
  p99Ms: number;
  /** predictions per second with batches of `batch` */
  predictionsPerSecond: number;
  batch: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Times single-image requests over every held-out image (`rounds` times) and batches of `batch`. */
export async function measureSpeed(model: MlpModel, data: Digits, rounds = 5, batch = 256, batchRuns = 200): Promise<Speed> {
  const one = (i: number) => data.images.subarray(i * PIXELS, (i + 1) * PIXELS);
  for (let i = 0; i < 50; i++) await predict(model, one(i % data.count)); // warm-up
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < data.count; i++) {
      const t0 = process.hrtime.bigint();
      await predict(model, one(i));
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  times.sort((a, b) => a - b);
  const batchImages = new Float32Array(batch * PIXELS);
  for (let i = 0; i < batch; i++) batchImages.set(one(i % data.count), i * PIXELS);
  for (let i = 0; i < 5; i++) await predict(model, batchImages);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < batchRuns; i++) await predict(model, batchImages);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { p50Ms: quantile(times, 0.5), p99Ms: quantile(times, 0.99), predictionsPerSecond: (batch * batchRuns) / seconds, batch };
}

/** The whole example: split, train, save, load, evaluate on the held-out 30%. */
export async function runDigits(modelPath: string, opts: TrainOptions = {}): Promise<{ model: MlpModel; train: Digits; test: Digits; accuracy: number; trainAccuracy: number; trainMs: number }> {
  const { train, test } = splitDigits(loadDigits());
  const t0 = process.hrtime.bigint();
  const weights = trainMlp(train, opts);
  const trainMs = Number(process.hrtime.bigint() - t0) / 1e6;
  saveDigitsModel(modelPath, weights);
  const model = (await loadModel(modelPath)) as MlpModel;
  return { model, train, test, accuracy: await accuracy(model, test), trainAccuracy: await accuracy(model, train), trainMs };
}
