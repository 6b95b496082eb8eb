// The libraries a user would otherwise reach for, timed side by side with gemmkit, and the hardware's
// ceilings. `npm run bench` and `npm run bench:peers` call this module; bench/peers/setup.sh installs
// and builds the peers (Debian x86-64). A peer that is not set up is reported, never thrown.
//
// Peers (each a separate process, started once per runPeers call with every shape it supports):
//   openblas           Debian's numpy on OpenBLAS as it detects the CPU      (f32)
//   openblas-skylakex  the same with OPENBLAS_CORETYPE=SkylakeX              (f32)
//   blis               BLIS with BLIS_ARCH_TYPE forcing its skx (AVX-512) kernels (f32)
//   blis-detected      BLIS as it detects the CPU                           (f32)
//   onednn             oneDNN matmul primitive, weights reordered once      (f32; bf16 in, bf16 or f32 out)
// Every runner checks sampled entries of its result against float64 before timing, cycles through
// enough input sets to keep operands out of the last-level cache, warms up, and reports the median call.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { info } from '../../src/index.js';

export type PeerDtype = 'f32' | 'bf16';

export interface PeerShape {
  m: number;
  n: number;
  k: number;
  /** true: x [M, K] @ W^T with W stored [N, K]; false: A [M, K] @ B [K, N]. */
  transB: boolean;
  /** dtype of both inputs. */
  dtype: PeerDtype;
  /** dtype of the output; defaults to dtype. */
  outDtype?: PeerDtype;
}

export interface PeerResult {
  peer: string;
  shape: PeerShape;
  /** Median milliseconds per call; NaN when the peer could not time this shape (note says why). */
  medianMs: number;
  gflops: number;
  note?: string;
  /** What the peer ran, e.g. 'brg:avx512_core_bf16, weights BA16a64b2a, out bf16'. */
  impl?: string;
  /** Timed calls behind the median, and how many input sets they rotated through. */
  runs?: number;
  sets?: number;
}

export interface PeerStatus {
  peer: string;
  available: boolean;
  /** e.g. 'OpenBLAS 0.3.21 core Cooperlake (detected), 2 threads', or how to set the peer up. */
  detail: string;
}

/** The hardware's limits, each the best of several runs (interference only slows a run down). */
export interface Ceilings {
  threads: number;
  /** f32 FMA peak: the higher of the AVX-512 and AVX2 figures (equal on Zen 4, AVX-512 ahead on Intel). */
  fmaF32Gflops: number;
  avx512FmaF32Gflops?: number;
  avx2FmaF32Gflops?: number;
  avx512Bf16Gflops?: number;
  amxBf16Gflops?: number;
  /** Streaming read of a buffer far larger than the last-level cache, all threads, 1e9 bytes/s. */
  readGBps: number;
  /** The read runs' median (readGBps is their best, like every ceiling here). */
  readMedianGBps?: number;
  cpu?: string;
  features?: string;
  /** Why AMX shows no figure (absent, or the kernel refused tile-data permission). */
  amxNote?: string;
  /** Set when the ceilings could not be measured (then the figures are NaN). */
  note?: string;
}

/** Where the set-up peers live; tests point these at places where nothing is set up. */
export interface PeerLocations {
  /** Folder with blis_runner, onednn_runner, ceilings (default: build/peers of this checkout). */
  buildDir?: string;
  /** The Debian python whose numpy is the OpenBLAS peer (default /usr/bin/python3). */
  python?: string;
}

export interface RunPeersOptions extends PeerLocations {
  threads: number;
  /** Time budget per shape and peer after warm-up (default 300). Every shape gets at least 5 calls. */
  timeMs?: number;
  /** Which peers to run (default: all of PEER_NAMES). */
  peers?: readonly string[];
  /** Bytes of rotating input sets per shape (default: rotationFootprintBytes()). */
  footprintBytes?: number;
}

export const PEER_NAMES = ['openblas', 'openblas-skylakex', 'blis', 'blis-detected', 'onednn'] as const;

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const defaultBuildDir = path.join(repoRoot, 'build', 'peers');
const setupHint = 'run bench/peers/setup.sh (Debian x86-64, as root or with sudo)';

interface PeerCommand {
  peer: string;
  file: string;
  args: string[];
  /** Files that must exist for the peer to be set up. */
  needs: string[];
  /** Which shapes the peer can run at all (others are left out of its results). */
  supports: (s: PeerShape) => boolean;
}

const f32Only = (s: PeerShape) => s.dtype === 'f32' && (s.outDtype ?? s.dtype) === 'f32';
// The peers forced onto AVX-512 kernels die of SIGILL on a CPU without AVX-512, and oneDNN 2.6 has no bf16
// GEMM there (it needs at least AVX-512 core): on such a CPU they have no such GEMM, as numpy has no bf16.
const cpuHasAvx512 = () => info().cpu.features.includes('avx512');

function peerCommands(loc: PeerLocations): PeerCommand[] {
  const buildDir = loc.buildDir ?? defaultBuildDir;
  const python = loc.python ?? '/usr/bin/python3';
  const openblasRunner = path.join(here, 'openblas_runner.py');
  const blisRunner = path.join(buildDir, 'blis_runner');
  const onednnRunner = path.join(buildDir, 'onednn_runner');
  return [
    { peer: 'openblas', file: python, args: [openblasRunner], needs: [python, openblasRunner], supports: f32Only },
    {
      peer: 'openblas-skylakex',
      file: python,
      args: [openblasRunner, '--coretype=SkylakeX'],
      needs: [python, openblasRunner],
      supports: (s) => f32Only(s) && cpuHasAvx512(),
    },
    { peer: 'blis', file: blisRunner, args: ['--arch=skx'], needs: [blisRunner], supports: (s) => f32Only(s) && cpuHasAvx512() },
    { peer: 'blis-detected', file: blisRunner, args: ['--arch=detected'], needs: [blisRunner], supports: f32Only },
    { peer: 'onednn', file: onednnRunner, args: [], needs: [onednnRunner], supports: (s) => s.dtype === 'f32' || cpuHasAvx512() },
  ];
}

/** Environment for a peer process: `threads` threads for every threading runtime, no inherited forcing. */
export function peerEnv(threads: number, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  // The detected peers must really run as detected; the forced ones set these themselves.
  delete env.OPENBLAS_CORETYPE;
  delete env.BLIS_ARCH_TYPE;
  delete env.ONEDNN_MAX_CPU_ISA;
  delete env.DNNL_MAX_CPU_ISA;
  const t = String(threads);
  return { ...env, OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, BLIS_NUM_THREADS: t, MKL_NUM_THREADS: t };
}

/** The runners' shape argument: MxNxK:t|n:dtype[:outDtype]. */
export function shapeToken(s: PeerShape): string {
  const out = s.outDtype && s.outDtype !== s.dtype ? `:${s.outDtype}` : '';
  return `${s.m}x${s.n}x${s.k}:${s.transB ? 't' : 'n'}:${s.dtype}${out}`;
}

export function gflopsOf(s: PeerShape, ms: number): number {
  return (2 * s.m * s.n * s.k) / (ms * 1e6);
}

export type RunnerLine =
  | { kind: 'info'; peer: string; detail: string; ok: boolean }
  | { kind: 'result'; shape: string; medianMs: number; runs: number; sets: number; impl: string }
  | { kind: 'skip' | 'error'; shape: string; reason: string };

export interface ParsedRunnerOutput {
  info?: { peer: string; detail: string; ok: boolean };
  lines: RunnerLine[];
  /** Lines that are not the protocol (a library printing to stdout): kept for error messages. */
  other: string[];
}

/** Parses a runner's stdout (JSON lines, see runner_common.h). */
export function parseRunnerOutput(stdout: string): ParsedRunnerOutput {
  const parsed: ParsedRunnerOutput = { lines: [], other: [] };
  for (const raw of stdout.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line) as Record<string, unknown>;
    } catch {
      parsed.other.push(line);
      continue;
    }
    const str = (key: string) => (typeof obj[key] === 'string' ? (obj[key] as string) : undefined);
    const num = (key: string) => (typeof obj[key] === 'number' ? (obj[key] as number) : NaN);
    const shape = str('shape');
    if (obj.kind === 'info' && str('peer') !== undefined) {
      const info = { kind: 'info' as const, peer: str('peer')!, detail: str('detail') ?? '', ok: obj.ok !== false };
      parsed.info ??= { peer: info.peer, detail: info.detail, ok: info.ok };
      parsed.lines.push(info);
    } else if (obj.kind === 'result' && shape !== undefined && Number.isFinite(num('medianMs'))) {
      parsed.lines.push({ kind: 'result', shape, medianMs: num('medianMs'), runs: num('runs'), sets: num('sets'), impl: str('impl') ?? '' });
    } else if ((obj.kind === 'skip' || obj.kind === 'error') && shape !== undefined) {
      parsed.lines.push({ kind: obj.kind, shape, reason: str('reason') ?? '' });
    } else {
      parsed.other.push(line);
    }
  }
  return parsed;
}

export interface RunnerExit {
  code: number | null;
  signal?: string | null;
  stderr: string;
}

function failureText(exit: RunnerExit, parsed: ParsedRunnerOutput): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const tail = [...exit.stderr.trim().split('\n'), ...parsed.other].filter((l) => l.trim()).slice(-3).join(' | ');
  return `runner ${how}${tail ? `: ${tail.slice(0, 400)}` : ''}`;
}

function unavailable(peer: string, shape: PeerShape, note: string): PeerResult {
  return { peer, shape, medianMs: NaN, gflops: NaN, note };
}

/**
 * Turns one runner's output into a result per shape: timed shapes with their median, failed or missing
 * ones as NaN with a note; shapes the runner skipped (a dtype it lacks) are left out.
 */
export function collectResults(peer: string, shapes: readonly PeerShape[], parsed: ParsedRunnerOutput, exit: RunnerExit): PeerResult[] {
  const byToken = new Map<string, RunnerLine>();
  for (const line of parsed.lines) if (line.kind !== 'info' && !byToken.has(line.shape)) byToken.set(line.shape, line);
  const detail = parsed.info?.detail;
  const out: PeerResult[] = [];
  for (const shape of shapes) {
    const line = byToken.get(shapeToken(shape));
    if (line === undefined) {
      out.push(unavailable(peer, shape, `no result: ${failureText(exit, parsed)}`));
    } else if (line.kind === 'result') {
      out.push({
        peer,
        shape,
        medianMs: line.medianMs,
        gflops: gflopsOf(shape, line.medianMs),
        impl: line.impl,
        runs: line.runs,
        sets: line.sets,
        ...(detail ? { note: detail } : {}),
      });
    } else if (line.kind === 'error') {
      out.push(unavailable(peer, shape, line.reason));
    }
  }
  return out;
}

function missingFiles(cmd: PeerCommand): string[] {
  return cmd.needs.filter((f) => !existsSync(f));
}

/** What is installed and built, and what each peer detects (each runner's --info: quick, times nothing). */
export function peerStatus(loc: PeerLocations = {}): PeerStatus[] {
  return peerCommands(loc).map((cmd) => {
    const missing = missingFiles(cmd);
    if (missing.length > 0) {
      return { peer: cmd.peer, available: false, detail: `not set up (${missing.join(', ')} missing): ${setupHint}` };
    }
    const env = peerEnv(availableParallelism());
    const r = spawnSync(cmd.file, [...cmd.args, '--info'], { env, encoding: 'utf8', timeout: 60_000 });
    const parsed = parseRunnerOutput(r.stdout ?? '');
    if (parsed.info === undefined || r.status !== 0) {
      const why = r.error ? r.error.message : failureText({ code: r.status, signal: r.signal, stderr: r.stderr ?? '' }, parsed);
      return { peer: cmd.peer, available: false, detail: `${why}; ${setupHint}` };
    }
    return { peer: cmd.peer, available: parsed.info.ok, detail: parsed.info.detail };
  });
}

function runProcess(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ stdout: string } & RunnerExit> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => resolve({ stdout, stderr: `${stderr}${e.message}`, code: null }));
    child.on('close', (code, signal) => resolve({ stdout, stderr, code, signal }));
  });
}

/** Last-level cache size from sysfs (bytes), or undefined where the kernel does not say. */
export function lastLevelCacheBytes(): number | undefined {
  let best: number | undefined;
  for (let i = 0; i < 8; i++) {
    try {
      const text = readFileSync(`/sys/devices/system/cpu/cpu0/cache/index${i}/size`, 'utf8').trim();
      const m = /^(\d+)([KMG]?)$/.exec(text);
      if (!m) continue;
      const bytes = Number(m[1]) * ({ '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as Record<string, number>)[m[2]];
      best = Math.max(best ?? 0, bytes);
    } catch {
      break;
    }
  }
  return best;
}

/**
 * How many bytes of operands a timing loop should cycle through so no call finds its inputs in the
 * last-level cache (serving applies a different weight in every layer): four times the LLC, at least
 * 128 MiB. Twice was not enough: a 64 MiB weight cycled through a 32 MiB victim L3 (Zen 4) still read
 * faster than DRAM.
 */
export function rotationFootprintBytes(): number {
  return Math.max(128 * 1024 ** 2, 4 * (lastLevelCacheBytes() ?? 32 * 1024 ** 2));
}

/**
 * Times `shapes` on every set-up peer, one peer after another (never two at once: they share the cores),
 * each peer's process started once with all the shapes it supports. Never throws for a missing or
 * failing peer: its shapes come back with medianMs NaN and a note.
 */
export async function runPeers(shapes: PeerShape[], opts: RunPeersOptions): Promise<PeerResult[]> {
  const timeMs = opts.timeMs ?? 300;
  const footprint = opts.footprintBytes ?? rotationFootprintBytes();
  const wanted = new Set(opts.peers ?? PEER_NAMES);
  const results: PeerResult[] = [];
  for (const cmd of peerCommands(opts)) {
    if (!wanted.has(cmd.peer)) continue;
    const mine = shapes.filter(cmd.supports);
    if (mine.length === 0) continue;
    const missing = missingFiles(cmd);
    if (missing.length > 0) {
      const note = `${cmd.peer} not set up (${missing.join(', ')} missing): ${setupHint}`;
      for (const s of mine) results.push(unavailable(cmd.peer, s, note));
      continue;
    }
    const tokens = [...new Set(mine.map(shapeToken))];
    const args = [...cmd.args, '--time-ms', String(timeMs), '--footprint-bytes', String(footprint), ...tokens];
    const run = await runProcess(cmd.file, args, peerEnv(opts.threads));
    const parsed = parseRunnerOutput(run.stdout);
    if (parsed.info && !parsed.info.ok) {
      for (const s of mine) results.push(unavailable(cmd.peer, s, `${parsed.info.detail}; ${setupHint}`));
      continue;
    }
    results.push(...collectResults(cmd.peer, mine, parsed, run));
  }
  return results;
}

/** Reads the ceilings program's JSON (null figures: the CPU lacks that unit). */
export function parseCeilings(stdout: string, threads: number): Ceilings {
  const obj = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Record<string, unknown>;
  const num = (key: string) => (typeof obj[key] === 'number' ? (obj[key] as number) : undefined);
  const str = (key: string) => (typeof obj[key] === 'string' && obj[key] !== '' ? (obj[key] as string) : undefined);
  const c: Ceilings = { threads: num('threads') ?? threads, fmaF32Gflops: num('fmaF32Gflops') ?? NaN, readGBps: num('readGBps') ?? NaN };
  for (const key of ['avx512FmaF32Gflops', 'avx2FmaF32Gflops', 'avx512Bf16Gflops', 'amxBf16Gflops', 'readMedianGBps'] as const) {
    const v = num(key);
    if (v !== undefined) c[key] = v;
  }
  for (const key of ['cpu', 'features', 'amxNote'] as const) {
    const v = str(key);
    if (v !== undefined) c[key] = v;
  }
  return c;
}

export interface CeilingsOptions {
  buildDir?: string;
  /** MiB read per bandwidth run (default 1024: far larger than any last-level cache). */
  readMiB?: number;
}

/**
 * Measures the ceilings on `threads` threads (a few seconds). Builds the ceilings program first when it
 * is missing or stale (g++ only, no set-up needed). On failure the figures are NaN and note says why.
 */
export async function measureCeilings(threads: number, opts: CeilingsOptions = {}): Promise<Ceilings> {
  const buildDir = opts.buildDir ?? defaultBuildDir;
  const failed = (note: string): Ceilings => ({ threads, fmaF32Gflops: NaN, readGBps: NaN, note });
  const build = await runProcess('bash', [path.join(repoRoot, 'bench', 'ceilings', 'build.sh'), buildDir], process.env);
  if (build.code !== 0) return failed(`building the ceilings program failed: ${build.stderr.trim().slice(-400)}`);
  const args = ['--threads', String(threads), '--read-mib', String(opts.readMiB ?? 1024)];
  const run = await runProcess(path.join(buildDir, 'ceilings'), args, process.env);
  if (run.code !== 0) return failed(`ceilings ${run.signal ? `killed by ${run.signal}` : `exited with ${run.code}`}: ${run.stderr.trim().slice(-400)}`);
  try {
    return parseCeilings(run.stdout, threads);
  } catch (e) {
    return failed(`unreadable ceilings output (${(e as Error).message}): ${run.stdout.slice(0, 200)}`);
  }
}

/**
 * The best of two measurements of the ceilings (each figure the higher; interference only ever slows a
 * run down), e.g. one taken before a long bench and one after it. A failed measurement (NaN) gives way to
 * the other.
 */
export function bestCeilings(a: Ceilings, b: Ceilings): Ceilings {
  const best = (x: number | undefined, y: number | undefined) =>
    x === undefined || Number.isNaN(x) ? y : y === undefined || Number.isNaN(y) ? x : Math.max(x, y);
  const out: Ceilings = { ...a, fmaF32Gflops: best(a.fmaF32Gflops, b.fmaF32Gflops) ?? NaN, readGBps: best(a.readGBps, b.readGBps) ?? NaN };
  for (const key of ['avx512FmaF32Gflops', 'avx2FmaF32Gflops', 'avx512Bf16Gflops', 'amxBf16Gflops', 'readMedianGBps'] as const) {
    const v = best(a[key], b[key]);
    if (v !== undefined) out[key] = v;
  }
  if (a.note && !b.note) {
    delete out.note;
    for (const key of ['cpu', 'features', 'amxNote'] as const) if (b[key] !== undefined) out[key] = b[key];
  }
  return out;
}

/**
 * The sizes of the GEMM targets: square GEMMs of these sizes, and x @ W^T with W [N, K] at these M (decode
 * at M = 1 to prefill-sized M = 512).
 */
export function targetSizes(opts: { quick?: boolean } = {}): { squares: number[]; weights: [number, number][]; ms: number[] } {
  return opts.quick
    ? { squares: [256], weights: [[1024, 1024]], ms: [1, 8] }
    : { squares: [1024, 2048], weights: [[4096, 4096], [14336, 4096], [4096, 14336]], ms: [1, 8, 32, 128, 512] };
}

/** The target shapes: square f32/bf16 1024 and 2048, and x @ W^T at M = 1..512. */
export function targetShapes(opts: { quick?: boolean } = {}): PeerShape[] {
  const { squares, weights, ms } = targetSizes(opts);
  const out: PeerShape[] = [];
  for (const dtype of ['f32', 'bf16'] as const) {
    for (const n of squares) out.push({ m: n, n, k: n, transB: false, dtype });
    for (const [n, k] of weights) for (const m of ms) out.push({ m, n, k, transB: true, dtype });
  }
  return out;
}
