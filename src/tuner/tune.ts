// The tuning loop, Gradlib-style. For one shape:
//   1. time the backend's default (heuristic) config: the yardstick for dropping and for the speedup;
//   2. fast pass: every candidate briefly; one already past dropFactor x the best so far stops early;
//   3. check: in fast-pass order, each candidate is compared with the reference (check.ts) until topK
//      have passed; a failing one is recorded `incorrect` and never chosen. Only candidates that can
//      still win are checked: on a large shape a check costs as much as a timed run;
//   4. final: the default and the topK, one run each in turn for `iters` rounds (drift on a shared
//      machine hits all alike, and no config is timed right after itself); the lowest median wins,
//      unless it beats the default by less than noisePct, in which case the default stays (a win
//      inside the noise is no win, and risks a loss).
// maxMsPerShape bounds a shape: the fast pass stops trying candidates at half of it and the final
// rounds shrink to fit (at least three). Timing runs natively (timeConfig): the clock brackets the
// GEMM alone, never JavaScript.
//
// A backend is any native surface (src/native.ts) plus its name: cpu here, cuda/hip from their addons.
import type { NativeAddon, NativeSurface, ProblemDesc } from '../native.js';
import { type CheckData, checkConfig, defaultTolerance, prepareCheck } from './check.js';
import { packedLayoutOf, preparedWeightRef, untunedWeightRun } from './dispatch.js';
import { type GemmSpec, kernelOfConfig, keyString, specDesc, weightKey } from './key.js';
import { type TunedRow, type Validators, currentValidators, readTunedFile, updateTunedFile, validatorMismatch } from './tuned_file.js';
import { existsSync } from 'node:fs';

export { specDesc };

export interface TunerBackend {
  name: string;
  native: NativeSurface;
}

export interface TuneOptions {
  /** Untimed runs before each final round's timed runs. */
  warmup: number;
  /** Timed runs per finalist in the final rounds (fewer, but at least 3, when the shape's budget is short). */
  iters: number;
  /** Timed runs per candidate in the fast pass. */
  fastIters: number;
  /** Candidates (besides the default) that go on from the fast pass to the check and final rounds. */
  topK: number;
  /** A candidate slower than this multiple of the best so far is dropped in the fast pass. */
  dropFactor: number;
  maxMsPerShape: number;
  /** Inputs rotate through copies of at least this many MiB (0: one copy, cache-hot timing). */
  rotatingMb: number;
  check: boolean;
  /** Allowed error per unit of scale (see check.ts); undefined: 16 sqrt(K) eps_f32. */
  checkTol?: number;
  /** A winner must beat the default by more than this many percent to replace it. */
  noisePct: number;
}

export const DEFAULT_TUNE_OPTIONS: TuneOptions = {
  warmup: 1, iters: 10, fastIters: 3, topK: 3, dropFactor: 1.5, maxMsPerShape: 30_000, rotatingMb: 64,
  check: true, noisePct: 5,
};

export type CandidateStatus =
  | 'winner' // chosen
  | 'finalist' // checked, timed in the final rounds, not chosen
  | 'fast' // timed in the fast pass, not checked (enough candidates passed before it)
  | 'dropped' // slower than dropFactor x the best in the fast pass
  | 'incorrect' // failed the numerical check; never chosen
  | 'skipped' // not timed: the shape's time budget ran out
  | 'unsupported' // the backend says the config cannot run this problem
  | 'failed'; // the backend returned an error while timing or running it

export interface CandidateResult {
  config: string;
  kernel: string;
  status: CandidateStatus;
  fastUs?: number;
  finalUs?: number;
  maxError?: number;
  message?: string;
}

export interface ShapeResult {
  spec: GemmSpec;
  key: string;
  device: number;
  defaultConfig: string;
  defaultUs: number;
  tunedUs: number;
  speedup: number;
  winner?: string;
  row?: TunedRow;
  reference?: string;
  candidates: CandidateResult[];
  elapsedMs: number;
  /** Set when the shape could not be tuned (no correct candidate, reference disagreement, ...). */
  error?: string;
}

export type TuneEvent =
  | { type: 'shape-start'; index: number; total: number; spec: GemmSpec }
  | { type: 'candidate'; index: number; done: number; total: number; bestUs: number }
  | { type: 'shape-done'; index: number; total: number; result: ShapeResult };

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}


/**
 * Tunes one shape on one device. `cpu` is the CPU addon (it computes the float64 reference for every
 * backend). Never throws for a problem with one candidate; the result says what happened to each.
 */
export async function tuneShape(
  backend: TunerBackend, cpu: NativeAddon, spec: GemmSpec, opts: TuneOptions, validators: Validators,
  device = 0, onCandidate?: (done: number, total: number, bestUs: number) => void, packedLayout?: string,
): Promise<ShapeResult> {
  const started = performance.now();
  const elapsed = () => performance.now() - started;
  const native = backend.native;
  const desc = specDesc(backend.name, spec, device);
  // A prepacked spec times each blocked config on B packed once in its own layout (as prepack() would
  // hold it); configs that read B as stored (GEMV, system BLAS) time on plain B. Results are identical.
  const layoutOf = (config: string) => (spec.prepacked ? packedLayoutOf(native, backend.name, config) : null);
  const descFor = (config: string): ProblemDesc => {
    const layout = layoutOf(config);
    return layout === null ? desc : { ...desc, packedLayout: layout };
  };
  // A prepared weight holds one packed layout (see tune()): once it is fixed, only configs that read it,
  // or that read B as stored, can run on the weight, and the default is what dispatch would run then.
  const fits = (config: string) => packedLayout === undefined || [null, packedLayout].includes(layoutOf(config));
  // The default is what dispatch runs for this call without a tuned row (untunedWeightRun): for a
  // prepacked weight, held in the fixed layout or the one prepack() picks by default (prepacked: CPU
  // only), either the plain heuristic's config or the heuristic for that layout.
  let defaultConfig = native.heuristic(desc);
  const weightLayout = spec.prepacked ? packedLayout ?? layoutOf(cpu.defaultPackedConfig(desc)) : null;
  if (weightLayout !== null) {
    const weight = preparedWeightRef(weightLayout, spec.dtypeB, true);
    const run = untunedWeightRun(native, backend.name, spec.m, spec.dtypeA, defaultConfig, weight);
    if (run === 'mismatch' || run === 'panel') defaultConfig = native.heuristic({ ...desc, packedLayout: weightLayout });
  }
  const names = [defaultConfig, ...native.candidates(desc).filter((c) => c !== defaultConfig && fits(c))];
  const results = new Map<string, CandidateResult>();
  for (const config of names) results.set(config, { config, kernel: kernelOfConfig(config), status: 'fast' });
  const result: ShapeResult = {
    spec, key: keyString(spec), device, defaultConfig, defaultUs: NaN, tunedUs: NaN, speedup: NaN,
    candidates: [...results.values()], elapsedMs: 0,
  };
  const finish = (error?: string) => {
    result.elapsedMs = elapsed();
    if (error) result.error = error;
    return result;
  };
  const rotatingBytes = Math.round(opts.rotatingMb * 1024 * 1024);
  const time = (config: string, warmup: number, iterations: number, maxMs = 0) =>
    native.timeConfig(descFor(config), config, { warmup, iterations, rotatingBytes, maxMs });

  for (const config of names) {
    const why = native.supports(descFor(config), config);
    if (why !== null) Object.assign(results.get(config)!, { status: 'unsupported', message: why });
  }
  const def = results.get(defaultConfig)!;
  if (def.status === 'unsupported') return finish(`the default config ${defaultConfig} cannot run this shape: ${def.message}`);

  // 1. The default, timed as the yardstick.
  try {
    def.fastUs = median(await time(defaultConfig, 1, opts.fastIters));
  } catch (e) {
    Object.assign(def, { status: 'failed', message: (e as Error).message });
    return finish(`the default config ${defaultConfig} failed: ${(e as Error).message}`);
  }
  let best = def.fastUs;
  const live = names.filter((c) => results.get(c)!.status === 'fast');
  onCandidate?.(1, live.length, best);

  // 2. Fast pass.
  const fastBudget = opts.maxMsPerShape / 2;
  const perCandidateMs = fastBudget / Math.max(live.length, 1);
  let done = 1;
  for (const config of live.slice(1)) {
    const r = results.get(config)!;
    if (elapsed() > fastBudget) {
      Object.assign(r, { status: 'skipped', message: `the shape's time budget (--max-ms-per-shape ${opts.maxMsPerShape}) ran out` });
      continue;
    }
    const warmup = best < 20_000 ? 1 : 0; // a long run needs no warm-up; its first run is timed as it is
    const iterations = Math.max(1, Math.min(opts.fastIters, Math.floor((perCandidateMs * 1000) / best)));
    try {
      const us = await time(config, warmup, iterations, (opts.dropFactor * best * (warmup + iterations)) / 1000);
      r.fastUs = median(us);
      if (r.fastUs > opts.dropFactor * best) r.status = 'dropped';
      else best = Math.min(best, r.fastUs);
    } catch (e) {
      Object.assign(r, { status: 'failed', message: (e as Error).message });
    }
    onCandidate?.(++done, live.length, best);
  }

  // 3. Check, in fast-pass order, until topK candidates besides the default have passed.
  let check: CheckData | undefined;
  if (opts.check) {
    try {
      check = await prepareCheck(native, cpu, spec, desc, defaultConfig, opts.checkTol ?? defaultTolerance(spec.k));
      result.reference = check.reference;
    } catch (e) {
      return finish(`cannot check candidates: ${(e as Error).message}`);
    }
  }
  const verify = async (r: CandidateResult): Promise<boolean> => {
    if (!check) return true;
    try {
      const c = await checkConfig(native, check, r.config);
      r.maxError = c.maxError;
      if (!c.passed) Object.assign(r, { status: 'incorrect', message: c.message });
      return c.passed;
    } catch (e) {
      Object.assign(r, { status: 'failed', message: (e as Error).message });
      return false;
    }
  };
  const contenders: CandidateResult[] = [];
  if (await verify(def)) contenders.push(def);
  const ranked = live.slice(1).map((c) => results.get(c)!).filter((r) => r.status === 'fast').sort((x, y) => x.fastUs! - y.fastUs!);
  for (const r of ranked) {
    if (contenders.length - (contenders.includes(def) ? 1 : 0) >= opts.topK) break;
    if (await verify(r)) contenders.push(r);
  }
  if (contenders.length === 0) return finish('no candidate passed the numerical check');

  // 4. Final rounds: one run of each contender in turn, `iters` times, so every run follows a run of
  // another config, as in a model, and drift hits all alike. (Timed back to back, a config can look
  // several percent faster than it is when it follows other GEMMs.)
  const samples = new Map<string, number[]>(contenders.map((r) => [r.config, []]));
  const finalMs = Math.max(0, opts.maxMsPerShape - elapsed());
  const slowest = Math.max(...contenders.map((r) => r.fastUs!));
  const rounds = Math.max(3, Math.min(opts.iters, Math.floor((finalMs * 1000) / (slowest * contenders.length))));
  for (let round = 0; round < rounds; round++) {
    for (const r of contenders) {
      if (r.status === 'failed') continue;
      try {
        samples.get(r.config)!.push(...(await time(r.config, round === 0 ? opts.warmup : 0, 1)));
      } catch (e) {
        Object.assign(r, { status: 'failed', message: (e as Error).message });
      }
    }
  }
  const timed = contenders.filter((r) => r.status !== 'failed');
  for (const r of timed) {
    r.finalUs = median(samples.get(r.config)!);
    r.status = 'finalist';
  }
  if (timed.length === 0) return finish('every finalist failed while timing');
  let winner = timed.reduce((x, y) => (y.finalUs! < x.finalUs! ? y : x));
  const defFinal = timed.includes(def) ? def.finalUs! : NaN;
  if (winner !== def && timed.includes(def) && winner.finalUs! > defFinal * (1 - opts.noisePct / 100)) winner = def;
  winner.status = 'winner';
  result.winner = winner.config;
  result.tunedUs = winner.finalUs!;
  result.defaultUs = Number.isNaN(defFinal) ? def.fastUs! : defFinal;
  result.speedup = result.defaultUs / result.tunedUs;
  result.row = {
    ...spec, backend: backend.name, arch: validators.arch, kernel: winner.kernel, config: winner.config,
    medianUs: winner.finalUs!, tflops: (2 * spec.m * spec.n * spec.k) / (winner.finalUs! * 1e6),
    defaultUs: result.defaultUs, speedup: result.speedup, maxError: check ? winner.maxError ?? NaN : NaN,
    status: check ? 'ok' : 'unchecked',
  };
  delete result.row.label;
  return finish();
}

export interface TuneRun {
  backend: TunerBackend;
  /** The CPU addon, for the float64 reference. */
  cpu: NativeAddon;
  shapes: GemmSpec[];
  opts: TuneOptions;
  /** The tuned file rows are merged into as each shape finishes (none: results only). */
  out?: string;
  /** Skip shapes whose key `out` already holds. */
  resume?: boolean;
  /** Device indices to spread the shapes over (round-robin); default [0]. */
  devices?: number[];
  onEvent?: (e: TuneEvent) => void;
  /** Notes for the user (devices collapsed, shapes skipped by --resume). */
  onNote?: (message: string) => void;
}

export interface TuneSummary {
  validators: Validators;
  results: ShapeResult[];
  /** Shapes --resume skipped because the file already had them. */
  resumed: GemmSpec[];
  devices: number[];
}

/** Tunes every shape, writing each finished row to `out`; throws for an unusable out file or device. */
export async function tune(run: TuneRun): Promise<TuneSummary> {
  const { backend, opts } = run;
  const info = backend.native.info();
  const deviceCount = info.backends.find((b) => b.name === backend.name)?.devices.length ?? 0;
  if (deviceCount === 0) throw new Error(`backend '${backend.name}' reports no devices`);
  let devices = [...new Set(run.devices ?? [0])];
  for (const d of devices) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`device ${d} is not a device index`);
  }
  if (deviceCount === 1 && devices.some((d) => d !== 0)) {
    // One device (the CPU): tuning "several" would time them against each other on the same cores.
    run.onNote?.(`backend '${backend.name}' has one device; --devices ${devices.join(',')} tunes every shape on device 0`);
    devices = [0];
  }
  for (const d of devices) {
    if (d >= deviceCount) throw new RangeError(`device ${d} does not exist: backend '${backend.name}' has ${deviceCount} device(s)`);
  }
  const validators = currentValidators(backend.native, backend.name, devices[0]);
  for (const d of devices.slice(1)) {
    const other = currentValidators(backend.native, backend.name, d);
    const why = validatorMismatch(`(device ${d})`, other, validators);
    if (why) throw new Error(`devices ${devices[0]} and ${d} differ, so their results cannot share one file: ${why}`);
  }
  let present = new Set<string>();
  // weightKey -> [M, layout] of the largest-M prepacked row whose winner reads a packed layout.
  const fileLayouts = new Map<string, [number, string]>();
  if (run.out && existsSync(run.out)) {
    const file = readTunedFile(run.out); // a malformed file is an error, never overwritten
    const why = validatorMismatch(run.out, file.validators, validators);
    if (why) throw new Error(`${why}. Write to another --out file, or delete this one.`);
    present = new Set(file.rows.map(keyString));
    for (const r of file.rows) {
      const layout = r.prepacked ? packedLayoutOf(backend.native, backend.name, r.config) : null;
      const have = fileLayouts.get(weightKey(r));
      if (layout !== null && (!have || r.m > have[0])) fileLayouts.set(weightKey(r), [r.m, layout]);
    }
  }
  const seen = new Set<string>();
  const shapes: GemmSpec[] = [];
  const resumed: GemmSpec[] = [];
  for (const s of run.shapes) {
    const key = keyString(s);
    if (seen.has(key)) continue;
    seen.add(key);
    if (run.resume && present.has(key)) resumed.push(s);
    else shapes.push(s);
  }
  if (resumed.length > 0) run.onNote?.(`--resume: ${resumed.length} shape(s) already in ${run.out}, skipped`);
  // A prepared weight is packed once, in one layout (prepack() takes it from the row with the largest tuned
  // M whose winner reads a packed layout). So its shapes are tuned largest M first, on one device, and once
  // a winner fixes the layout, smaller Ms choose among configs that read it or read B as stored.
  const order = shapes.map((_, i) => i).sort((x, y) => {
    const a = shapes[x], b = shapes[y];
    if (!a.prepacked || !b.prepacked) return Number(!!a.prepacked) - Number(!!b.prepacked) || x - y;
    const ka = weightKey(a), kb = weightKey(b);
    return ka < kb ? -1 : ka > kb ? 1 : b.m - a.m;
  });
  // weightKey -> packed layout fixed by a winner (or by the rows already in the out file, which prepack()
  // will see too)
  const layouts = new Map<string, string>([...fileLayouts].map(([k, [, layout]]) => [k, layout]));
  const results: ShapeResult[] = new Array(shapes.length);
  let started = 0;
  const worker = async (device: number, indices: number[]) => {
    for (const index of indices) {
      const spec = shapes[index];
      run.onEvent?.({ type: 'shape-start', index: started++, total: shapes.length, spec });
      const wk = spec.prepacked ? weightKey(spec) : undefined;
      const r = await tuneShape(backend, run.cpu, spec, opts, validators, device, (done, total, bestUs) =>
        run.onEvent?.({ type: 'candidate', index, done, total, bestUs }), wk === undefined ? undefined : layouts.get(wk));
      if (wk !== undefined && r.winner && !layouts.has(wk)) {
        const layout = packedLayoutOf(backend.native, backend.name, r.winner);
        if (layout !== null) layouts.set(wk, layout);
      }
      if (r.row && run.out) await updateTunedFile(run.out, validators, [r.row]);
      results[index] = r;
      run.onEvent?.({ type: 'shape-done', index, total: shapes.length, result: r });
    }
  };
  // Round-robin over devices by weight group (plain shapes each form their own group).
  const groups: number[][] = [];
  for (const i of order) {
    const last = groups.at(-1);
    const prev = last ? shapes[last[0]] : undefined;
    if (prev && prev.prepacked && shapes[i].prepacked && weightKey(prev) === weightKey(shapes[i])) last!.push(i);
    else groups.push([i]);
  }
  await Promise.all(devices.map((d, i) => worker(d, groups.filter((_, g) => g % devices.length === i).flat())));
  return { validators, results, resumed, devices };
}

/** Geometric mean of the speedups of the tuned shapes (NaN when none). */
export function geomeanSpeedup(results: ShapeResult[]): number {
  const s = results.filter((r) => r.row).map((r) => Math.log(r.speedup));
  return s.length === 0 ? NaN : Math.exp(s.reduce((x, y) => x + y, 0) / s.length);
}
