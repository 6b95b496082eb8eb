// Mutation fuzz of a Llama config.json: 10,000 mutated files a run (GEMMKIT_FUZZ_RUNS changes it):
// fields deleted, negative, zero, huge, fractional, of the wrong type, JSON junk, truncated, bytes
// changed; each loaded with loadModel (and run when it loads). Each must be a valid load or a clear error
// naming the file or field (SafetensorsError, TypeError, RangeError) within a time bound, and the process
// must survive (test/fuzz_driver.ts, in a child process).
import { describe, expect, it } from 'vitest';
import { fuzzSettings, runFuzz } from './fuzz_helpers.js';

describe('config.json mutation fuzz', () => {
  it(`${fuzzSettings().runs} mutated config.json files: each a valid load or a clear error, none hangs or exhausts memory`, () => {
    const summary = runFuzz('config', 240_000);
    console.log(`config fuzz: ${summary.cases} files in ${summary.ms} ms (slowest ${summary.maxCaseMs} ms, seed ${summary.seed}): ${JSON.stringify(summary.outcomes)}`);
    expect(summary.cases).toBeGreaterThanOrEqual(fuzzSettings().runs);
    for (const outcome of ['loadModel loaded', 'loadModel TypeError', 'loadModel RangeError']) expect(summary.outcomes[outcome]).toBeGreaterThan(0);
  });
});
