// npm run example:digits: train a digits classifier with gemmkit's GEMMs, save it as safetensors, load it
// with loadModel and report accuracy, latency and throughput on the 30% of images it never saw.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { info } from '../../src/index.js';
import { measureSpeed, runDigits } from './digits.js';

const { values: args } = parseArgs({ options: { out: { type: 'string' } } });
const dir = mkdtempSync(join(tmpdir(), 'gemmkit-digits-'));
const modelPath = args.out ?? join(dir, 'digits-mlp.safetensors');
try {
  const r = await runDigits(modelPath);
  console.log(`digits: ${r.train.count} training images, ${r.test.count} held out (70/30, fixed seed)`);
  console.log(`trained 64-64-10 MLP in ${(r.trainMs / 1000).toFixed(2)} s; saved to ${modelPath}`);
  console.log(`accuracy on the held-out 30%: ${(100 * r.accuracy).toFixed(2)}% (training set: ${(100 * r.trainAccuracy).toFixed(2)}%)`);
  const s = await measureSpeed(r.model, r.test);
  console.log(`single-image latency: p50 ${(s.p50Ms * 1000).toFixed(1)} us, p99 ${(s.p99Ms * 1000).toFixed(1)} us`);
  console.log(`throughput at batch ${s.batch}: ${Math.round(s.predictionsPerSecond).toLocaleString('en-US')} predictions/s`);
  console.log(`(${info().cpu.model}, ${info().threads} threads)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
