// Runs test/fuzz_driver.ts in a child process with a time limit and reads its summary (see there).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FuzzSummary {
  kind: string;
  seed: number;
  runs: number;
  cases: number;
  failed: boolean;
  ms: number;
  maxCaseMs: number;
  outcomes: Record<string, number>;
  report?: string;
}

/** Files per run (GEMMKIT_FUZZ_RUNS) and the seed (GEMMKIT_FUZZ_SEED; by default a new one each run, in every failure message). */
export function fuzzSettings(): { runs: number; seed: number } {
  const runs = Number(process.env.GEMMKIT_FUZZ_RUNS ?? 10_000);
  const seed = process.env.GEMMKIT_FUZZ_SEED !== undefined ? Number(process.env.GEMMKIT_FUZZ_SEED) : Date.now() % 2 ** 31;
  return { runs, seed };
}

/** The driver's summary; an Error naming the case when it hung (past timeoutMs), died, or found a failure. */
export function runFuzz(kind: 'safetensors' | 'config', timeoutMs: number): FuzzSummary {
  const { runs, seed } = fuzzSettings();
  // Thousands of small files: in memory where the system has a tmpfs for it.
  const work = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), `gemmkit-fuzz-${kind}-`));
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fuzz_driver.ts', kind, String(seed), String(runs), work], {
      cwd: new URL('..', import.meta.url), encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 2 ** 20,
    });
    const last = r.stderr.split('\n').filter((l) => l.startsWith('case ')).at(-1) ?? '(no case started)';
    const again = `(reproduce with GEMMKIT_FUZZ_SEED=${seed} GEMMKIT_FUZZ_RUNS=${runs})`;
    if (r.signal) throw new Error(`${kind} fuzz: the driver was killed (${r.signal}) after ${timeoutMs} ms, in ${last} ${again}`);
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    let summary: FuzzSummary;
    try {
      summary = JSON.parse(line) as FuzzSummary;
    } catch {
      const errors = r.stderr.split('\n').filter((l) => !l.startsWith('case ')).join('\n');
      throw new Error(`${kind} fuzz: the driver exited with status ${r.status} without a summary, in ${last} ${again}\n${errors.slice(-3000)}`);
    }
    if (summary.failed) throw new Error(`${kind} fuzz failed ${again}:\n${summary.report}`);
    return summary;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
