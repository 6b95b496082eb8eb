// Property-based fuzz of the public GEMM API (tensor, zeros, matmul, matmulSync, explain, prepack):
// 10,000 generated cases a run (GEMMKIT_FUZZ_RUNS changes it), each of which must return the float64
// reference's result or throw a TypeError/RangeError naming the argument it broke (test/api_fuzz_child.ts
// says what is generated and checked). The calls run in a child process, so a crash or a hang (no progress
// for HANG_MS) fails this test with the case that caused it instead of ending the run. The seed changes
// every run and is in every failure message; GEMMKIT_FUZZ_SEED=<n> repeats one.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { fuzzSettings } from './fuzz_helpers.js';
import { ROOT } from './script.js';

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

function fuzz(seed: number, runs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; summary?: Summary; lastCase: string; errors: string; hungAfter?: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--no-warnings', '--import', 'tsx', 'test/api_fuzz_child.ts', String(seed), String(runs)], {
      cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderrTail = '', done = 0, hungAfter: number | undefined;
    let watchdog: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        hungAfter = done;
        child.kill('SIGKILL');
      }, HANG_MS);
    };
    arm();
    child.stdout.on('data', (d) => {
      stdout += d; // a progress line per 500 cases and the summary
      for (const m of stdout.matchAll(/^\{"done":(\d+)\}$/gm)) done = Number(m[1]);
      arm();
    });
    // A line per case: keep the tail, which names the case that crashed or hung.
    child.stderr.on('data', (d) => (stderrTail = (stderrTail + d).slice(-20_000)));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      const lines = stderrTail.split('\n');
      const lastCase = lines.filter((l) => l.startsWith('case ')).at(-1) ?? '(no case started)';
      const errors = lines.filter((l) => !l.startsWith('case ')).join('\n').slice(-3000);
      const last = stdout.trim().split('\n').filter((l) => l.startsWith('{"summary"')).at(-1);
      resolve({ code, signal, lastCase, errors, hungAfter, ...(last ? { summary: (JSON.parse(last) as { summary: Summary }).summary } : {}) });
    });
  });
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
