// Property-based fuzz of the public GEMM API (tensor, zeros, matmul, matmulSync, explain, prepack):
// 10,000 generated cases a run (GEMMKIT_FUZZ_RUNS changes it), each of which must return the float64
// reference's result or throw a TypeError/RangeError naming the argument it broke (test/api_fuzz_child.ts
// says what is generated and checked). The calls run in a child process, so a crash or a hang (no progress
// for HANG_MS) fails this test with the case that caused it instead of ending the run. The seed changes
// every run and is in every failure message; GEMMKIT_FUZZ_SEED=<n> repeats one.
import { describe, expect, it } from 'vitest';
import { fuzzSettings, runFuzzChild } from './fuzz_helpers.js';

const HANG_MS = 30_000;

interface Summary {
  seed: number;
  runs: number;
  cases: number;
  calls: number;
  failed: boolean;
  totalMs: number;
  slowestMs: number;
  outcomes: Record<string, number>;
  samples: Record<string, string[]>;
  report?: string;
  counterexample?: string;
}

async function fuzz(seed: number, runs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; summary?: Summary; lastCase: string; errors: string; hungAfter?: number }> {
  const r = await runFuzzChild('test/api_fuzz_child.ts', [String(seed), String(runs)], HANG_MS);
  // stderr has a line per case: its tail names the case that crashed or hung.
  const lines = r.stderrTail.split('\n');
  const lastCase = lines.filter((l) => l.startsWith('case ')).at(-1) ?? '(no case started)';
  const errors = lines.filter((l) => !l.startsWith('case ')).join('\n').slice(-3000);
  const summary = (r.summary as { summary: Summary } | undefined)?.summary;
  return { code: r.code, signal: r.signal, lastCase, errors, hungAfter: r.hungAfter, ...(summary ? { summary } : {}) };
}

describe('public API under property-based fuzzing', () => {
  const { runs, seed } = fuzzSettings();
  it(`${runs} generated cases (one public call or more each): each the reference's result or a TypeError/RangeError naming the argument; no crash, no hang`, async () => {
    const r = await fuzz(seed, runs);
    const again = `(repeat with GEMMKIT_FUZZ_SEED=${seed} GEMMKIT_FUZZ_RUNS=${runs})`;
    expect(r.hungAfter, `no progress for ${HANG_MS} ms after ${r.hungAfter} cases: a hang in ${r.lastCase} ${again}`).toBeUndefined();
    expect(r.summary, `the fuzz process ended (exit ${r.code}, signal ${r.signal}) without a summary, in ${r.lastCase} ${again}\n${r.errors}`).toBeDefined();
    const s = r.summary!;
    expect(s.failed, `${s.report}\ncounterexample: ${s.counterexample} ${again}`).toBe(false);
    expect(r.code).toBe(0);
    expect(s.cases).toBeGreaterThanOrEqual(runs);
    console.log(`api fuzz: ${s.cases} cases, ${s.calls} calls in ${s.totalMs} ms (slowest case ${s.slowestMs} ms, seed ${seed}): ${JSON.stringify(s.outcomes)}`);
    // Every entry point both succeeds and refuses (the generators reach both sides).
    if (runs >= 2000) {
      for (const fn of ['tensor', 'zeros', 'matmul', 'matmulSync', 'explain', 'prepack']) {
        expect(s.outcomes[`${fn} ok`], `${fn} never succeeded`).toBeGreaterThan(0);
        expect((s.outcomes[`${fn} TypeError`] ?? 0) + (s.outcomes[`${fn} RangeError`] ?? 0), `${fn} never refused`).toBeGreaterThan(0);
      }
      for (const action of ['transferA', 'transferOut', 'shrinkOut', 'disposePacked']) {
        expect(s.outcomes[`mid-call ${action}`], `no async call saw ${action} while it ran`).toBeGreaterThan(0);
      }
    }
  }, 180_000);
});
