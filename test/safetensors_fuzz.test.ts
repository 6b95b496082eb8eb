// Mutation fuzz of the safetensors reader and the loaders behind it: 10,000 mutated files a run
// (GEMMKIT_FUZZ_RUNS changes it): header bytes flipped, length field changed, truncation, offsets, shapes
// and dtypes changed, huge numbers, JSON junk, the MLP spec in __metadata__ broken; each read with
// loadSafetensors and, for model files, loaded with loadModel and run. Each must be a valid load or a
// clear error within a time bound, and the process must survive (test/fuzz_driver.ts, in a child process).
import { describe, expect, it } from 'vitest';
import { fuzzSettings, runFuzz } from './fuzz_helpers.js';

describe('safetensors mutation fuzz', () => {
  it(`${fuzzSettings().runs} mutated files: each a valid load or a SafetensorsError (TypeError/RangeError from loadModel), none hangs`, () => {
    const summary = runFuzz('safetensors', 240_000);
    console.log(`safetensors fuzz: ${summary.cases} files in ${summary.ms} ms (slowest ${summary.maxCaseMs} ms, seed ${summary.seed}): ${JSON.stringify(summary.outcomes)}`);
    expect(summary.cases).toBeGreaterThanOrEqual(fuzzSettings().runs);
    // Both kinds of outcome are reached: the mutations are neither all fatal nor all harmless.
    expect(summary.outcomes['reader loaded']).toBeGreaterThan(0);
    expect(summary.outcomes['reader SafetensorsError']).toBeGreaterThan(0);
    expect(summary.outcomes['loadModel loaded']).toBeGreaterThan(0);
  });
});
