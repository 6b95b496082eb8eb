// Helpers for the tuner tests: a scratch directory, tuned rows made by hand, the CLI as a subprocess.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuNative } from '../src/native.js';
import { type GemmSpec, kernelOfConfig } from '../src/tuner/key.js';
import { type TunedRow, type Validators, currentValidators, formatTunedFile } from '../src/tuner/tuned_file.js';
import { DEFAULT_TUNE_OPTIONS, type TuneOptions } from '../src/tuner/tune.js';

export const ROOT = new URL('..', import.meta.url).pathname;

export function scratchDir(): string {
  return mkdtempSync(join(tmpdir(), 'gemmkit-tuner-'));
}

/** Tuning options small enough for tests: they check behaviour, never speed. */
export const QUICK: TuneOptions = {
  ...DEFAULT_TUNE_OPTIONS, warmup: 0, iters: 2, fastIters: 1, topK: 2, maxMsPerShape: 1500, rotatingMb: 0,
};

export function spec(m: number, n: number, k: number, extra: Partial<GemmSpec> = {}): GemmSpec {
  return { m, n, k, dtypeA: 'f32', dtypeB: 'f32', outDtype: 'f32', transA: false, transB: true, bias: false, activation: 'none', ...extra };
}

export function validators(): Validators {
  return currentValidators(cpuNative(), 'cpu');
}

export function row(s: GemmSpec, config: string, medianUs = 10): TunedRow {
  const v = validators();
  return {
    ...s, backend: 'cpu', arch: v.arch, kernel: kernelOfConfig(config), config, medianUs,
    tflops: 0.001, defaultUs: medianUs * 1.5, speedup: 1.5, maxError: 1e-7, status: 'ok',
  };
}

export function tunedFileText(rows: TunedRow[], v: Validators = validators()): string {
  return formatTunedFile(v, rows);
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `gemmkit <args>` (src/cli.ts through tsx) with extra environment variables. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runNode(['src/cli.ts', ...args], env);
}

/** Runs node with the TypeScript loader in the package root. */
export function runNode(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
      cwd: ROOT,
      env: { ...process.env, NODE_OPTIONS: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
