// The digits example end to end: train on 70% with gemmkit GEMMs, save, load with loadModel, and classify
// the unseen 30%. Timing (measureSpeed) runs too, asserting only that it produced numbers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { accuracy, loadDigits, measureSpeed, runDigits, saveDigitsModel, splitDigits, trainMlp } from '../examples/digits/digits.js';
import { type MlpModel, loadModel } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'gemmkit-digits-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('examples/digits', () => {
  it('the data set and its fixed 70/30 split', () => {
    const d = loadDigits();
    expect(d.count).toBe(1797);
    expect(new Set(d.labels).size).toBe(10);
    const { train, test } = splitDigits(d);
    expect([train.count, test.count]).toEqual([1258, 539]);
    // train + test is a partition of the data set: the same multiset of (image, label) rows.
    const key = (x: { images: Float32Array; labels: Uint8Array }, i: number) => `${x.images.subarray(i * 64, (i + 1) * 64).join()}:${x.labels[i]}`;
    const remaining = new Map<string, number>();
    for (let i = 0; i < d.count; i++) remaining.set(key(d, i), (remaining.get(key(d, i)) ?? 0) + 1);
    for (const part of [train, test]) {
      for (let i = 0; i < part.count; i++) {
        const k = key(part, i);
        expect(remaining.get(k) ?? 0).toBeGreaterThan(0);
        remaining.set(k, remaining.get(k)! - 1);
      }
    }
    expect([...remaining.values()].every((n) => n === 0)).toBe(true);
    expect(splitDigits(d).test.labels).toEqual(test.labels); // same seed, same split
  });

  it('an untrained model is near chance, so the accuracy below comes from training', async () => {
    const { test } = splitDigits(loadDigits());
    const path = join(dir, 'untrained.safetensors');
    saveDigitsModel(path, trainMlp(splitDigits(loadDigits()).train, { epochs: 0 }));
    expect(await accuracy((await loadModel(path)) as MlpModel, test)).toBeLessThan(0.4);
  });

  it('trains in seconds and classifies at least 95% of the held-out 30% correctly', async () => {
    const r = await runDigits(join(dir, 'digits.safetensors'));
    expect(r.accuracy).toBeGreaterThanOrEqual(0.95);
    const s = await measureSpeed(r.model, r.test, 1, 256, 3);
    expect(s.p50Ms).toBeGreaterThan(0);
    expect(s.p99Ms).toBeGreaterThanOrEqual(s.p50Ms);
    expect(s.predictionsPerSecond).toBeGreaterThan(0);
  });
});
