// Runs fuzz drivers in child processes, so a crash or a hang is an observed failure: test/fuzz_driver.ts
// with a time limit (runFuzz), and the drivers that report progress with a watchdog (runFuzzChild).
import { spawn, spawnSync } from 'node:child_process';
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

/** What a fuzz driver run by runFuzzChild did. */
export interface FuzzChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Its last stdout line starting with {"summary", parsed; absent when it ended without one. */
  summary?: unknown;
  /** The last stderrKeep characters of its stderr. */
  stderrTail: string;
  /** Set when it made no progress for hangMs and was killed: the last {"done":n} count it printed. */
  hungAfter?: number;
}

/**
 * Runs `script` (a TypeScript fuzz driver, under tsx, from the package root) with `args`. The driver prints
 * {"done":n} progress lines and a final {"summary"...} line on stdout; a driver that prints nothing for
 * hangMs is killed as hung.
 */
export function runFuzzChild(script: string, args: string[], hangMs: number, stderrKeep = 20_000): Promise<FuzzChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--no-warnings', '--import', 'tsx', script, ...args], {
      cwd: new URL('..', import.meta.url).pathname, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderrTail = '', done = 0, hungAfter: number | undefined;
    let watchdog: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        hungAfter = done;
        child.kill('SIGKILL');
      }, hangMs);
    };
    arm();
    child.stdout.on('data', (d) => {
      stdout += d; // progress lines and the summary: small
      for (const m of stdout.matchAll(/^\{"done":(\d+)\}$/gm)) done = Number(m[1]);
      arm();
    });
    child.stderr.on('data', (d) => (stderrTail = (stderrTail + d).slice(-stderrKeep)));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      const last = stdout.trim().split('\n').filter((l) => l.startsWith('{"summary"')).at(-1);
      resolve({ code, signal, stderrTail, hungAfter, ...(last ? { summary: JSON.parse(last) as unknown } : {}) });
    });
  });
}
