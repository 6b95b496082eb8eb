// What every bench in bench/ measures with: the median, the timed-call loops, how many operand copies a
// loop rotates through, the plain-text table the results print as, and the machine's load around a run. Times are milliseconds from
// performance.now().
import { availableParallelism, loadavg } from 'node:os';

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const v = [...values].sort((a, b) => a - b);
  const h = v.length >> 1;
  return v.length % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
}

export interface TimingOptions {
  /** Untimed calls first (default 1). */
  warmup?: number;
  /** Timed calls at least, whatever the budget (default 3). */
  minRuns?: number;
  /** Timed calls at most (default minRuns: a fixed count when budgetMs is 0). */
  maxRuns?: number;
  /** Keep timing while the timed calls have taken less than this (default 0). */
  budgetMs?: number;
}

function keepGoing(runs: number, started: number, o: TimingOptions): boolean {
  const minRuns = o.minRuns ?? 3;
  return runs < minRuns || (runs < (o.maxRuns ?? minRuns) && performance.now() - started < (o.budgetMs ?? 0));
}

/** Median ms of call(i), a synchronous call (nothing awaited between the clock reads); i counts from 0. */
export function timeSync(call: (i: number) => unknown, o: TimingOptions = {}): number {
  for (let i = 0; i < (o.warmup ?? 1); i++) call(i);
  const times: number[] = [];
  const started = performance.now();
  for (let i = 0; keepGoing(times.length, started, o); i++) {
    const t0 = performance.now();
    call(i);
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** Median ms of await call(i). */
export async function timeAsync(call: (i: number) => unknown, o: TimingOptions = {}): Promise<number> {
  for (let i = 0; i < (o.warmup ?? 1); i++) await call(i);
  const times: number[] = [];
  const started = performance.now();
  for (let i = 0; keepGoing(times.length, started, o); i++) {
    const t0 = performance.now();
    await call(i);
    times.push(performance.now() - t0);
  }
  return median(times);
}

/**
 * How many copies of a set of operands of `setBytes` a timing loop rotates through so that together they
 * are at least `footprintBytes` (and the operands of one call are not in cache from the call before): at
 * least 1, at most 64.
 */
export function rotationCopies(setBytes: number, footprintBytes: number): number {
  return Math.max(1, Math.min(64, Math.ceil(footprintBytes / Math.max(1, setBytes))));
}

/** Prints rows as columns (the first row the header); a column is right-aligned where rightAligned says. */
export function printTable(rows: readonly (readonly string[])[], rightAligned: (column: number) => boolean = () => false): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) {
    console.log(r.map((x, i) => (rightAligned(i) ? (x ?? '').padStart(widths[i]) : (x ?? '').padEnd(widths[i]))).join('  ').trimEnd());
  }
}

/**
 * The machine's 1-minute load average, flagged busy when it is above `threads` (other work then competes
 * for the cores and figures move a lot; engines whose threads spin at barriers suffer most). Printed at the
 * start and end of a bench so a reader can tell a quiet run from a busy one.
 */
export function machineLoad(threads: number): { load: number; busy: boolean; note: string } {
  const load = loadavg()[0];
  const busy = load > threads + 0.5;
  const note = `load average ${load.toFixed(2)} (1 min) on ${availableParallelism()} CPUs${busy ? `: BUSY, other work competes with the ${threads} bench threads, figures are unreliable` : ''}`;
  return { load, busy, note };
}
