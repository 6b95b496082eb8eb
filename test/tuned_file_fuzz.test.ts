// Mutation fuzz of the tuned-file parser: at least 5,000 mutated tuned files per run, generated from a
// valid one by test/tuned_file_fuzz_child.ts (fast-check), each of which must load or fail with a
// TunedFileError naming the file and line, within a time bound, while matmul keeps working. The fuzz runs
// in a child process so that a hang (no progress for HANG_MS) or a crash fails the test instead of
// stalling it. The seed changes every run; GEMMKIT_FUZZ_SEED=<n> repeats one.
import { describe, expect, it } from 'vitest';
import { runFuzzChild } from './fuzz_helpers.js';
import { scratchDir } from './tuner_helpers.js';

const RUNS = 5000;
const HANG_MS = 30_000;

interface Summary {
  runs: number;
  failed: boolean;
  seed: number;
  loaded: number;
  refused: number;
  warnings: number;
  slowestMs: number;
  totalMs: number;
  counterexample?: string;
  error?: string;
}

async function fuzz(runs: number, seed: number): Promise<{ code: number | null; summary?: Summary; stderr: string; hung?: number }> {
  const r = await runFuzzChild('test/tuned_file_fuzz_child.ts', [scratchDir(), String(runs), String(seed)], HANG_MS);
  return { code: r.code, stderr: r.stderrTail, hung: r.hungAfter, ...(r.summary ? { summary: r.summary as Summary } : {}) };
}

describe('tuned-file parser under mutation', () => {
  it(`${RUNS} mutated files: each loads or fails with an error naming file and line, in bounded time, and matmul keeps working`, async () => {
    const seed = process.env.GEMMKIT_FUZZ_SEED ? Number(process.env.GEMMKIT_FUZZ_SEED) : Date.now() % 2 ** 31;
    const r = await fuzz(RUNS, seed);
    const repeat = `(repeat with GEMMKIT_FUZZ_SEED=${seed})`;
    expect(r.hung, `no progress for ${HANG_MS} ms after ${r.hung} files: a hang ${repeat}`).toBeUndefined();
    expect(r.summary, `the fuzz process ended without a summary (exit ${r.code}) ${repeat}: ${r.stderr.slice(-2000)}`).toBeDefined();
    const s = r.summary!;
    expect(s.failed, `${s.error}\ncounterexample: ${s.counterexample} ${repeat}`).toBe(false);
    expect(r.code).toBe(0);
    expect(s.runs).toBeGreaterThanOrEqual(RUNS);
    // Both outcomes occur, so the mutations neither always break the file nor never do.
    expect(s.loaded).toBeGreaterThan(RUNS / 50);
    expect(s.refused).toBeGreaterThan(RUNS / 20);
    console.log(`tuned-file fuzz: ${s.runs} files (seed ${seed}): ${s.loaded} loaded, ${s.refused} refused with a file:line error, ` +
      `${s.warnings} warnings; slowest ${s.slowestMs} ms, all ${s.totalMs} ms`);
  });
});
