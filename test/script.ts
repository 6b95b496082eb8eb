// Runs a test scenario in a child Node process, where a crash (SIGSEGV) or a hang is an observable
// outcome instead of the end of the test run. The script gets `g` (the public API), `native` (the CPU
// addon), `gc`, and a few helpers; it prints one JSON line (its last line of output) with what it saw.
// GEMMKIT_TEST_ROOT runs the scenarios against another build: a folder with index.js and native.js
// (e.g. an older dist/), to check that a scenario fails there.
import { spawn } from 'node:child_process';

export const ROOT = new URL('..', import.meta.url).pathname;

export interface ScriptResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** The parsed last line of stdout, when it is JSON. */
  result?: Record<string, unknown>;
}

const PRELUDE = `
const root = process.env.GEMMKIT_TEST_ROOT || './src';
const ext = root.endsWith('src') ? '.ts' : '.js';
const g = await import(root + '/index' + ext);
const native = (await import(root + '/native' + ext)).cpuNative();
const gc = globalThis.gc;
// Collections and fresh allocations, so memory freed under a running GEMM is unmapped or reused.
const churn = (rounds = 4) => { for (let i = 0; i < rounds; i++) { gc(); new Float32Array(1 << 22).fill(i + 1); } };
// Small integers: every GEMM of them is exact in f32, so results compare with ===.
const ints = (n, mod, off) => Float32Array.from({ length: n }, (_, i) => (i % mod) - off);
const same = (x, y) => x.length === y.length && x.every((v, i) => v === y[i]);
const outcome = async (p) => { try { await p; return 'resolved'; } catch (e) { return e.constructor.name + ': ' + e.message; } };
const report = (o) => console.log(JSON.stringify(o));
`;

/** Runs `body` (an async module body, after PRELUDE) with --expose-gc; kills it after timeoutMs. */
export function runScript(body: string, opts: { timeoutMs?: number; env?: Record<string, string>; execArgv?: string[] } = {}): Promise<ScriptResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--expose-gc', ...(opts.execArgv ?? []), '--import', 'tsx', '--input-type=module', '-e', PRELUDE + body],
      { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '', stderr = '', timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = stdout.trim().split('\n').pop() ?? '';
      let result: Record<string, unknown> | undefined;
      try {
        result = JSON.parse(last);
      } catch {
        result = undefined;
      }
      resolve({ code, signal, timedOut, stdout, stderr, result });
    });
  });
}

/** A one-line account of how a script ended, for failure messages. */
export function describeRun(r: ScriptResult): string {
  const how = r.timedOut ? 'timed out' : r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  return `${how}; stdout: ${r.stdout.slice(-400)}; stderr: ${r.stderr.slice(-600)}`;
}
