// What the tune command shows: a progress bar on a terminal, a line per shape otherwise, and at the end
// a summary table with the geometric-mean speedup (or JSON with --json).
import cliProgress from 'cli-progress';
import { describeSpec } from './key.js';
import { type ShapeResult, type TuneEvent, type TuneSummary, geomeanSpeedup } from './tune.js';

export function formatUs(us: number): string {
  if (!Number.isFinite(us)) return '-';
  return us >= 10_000 ? `${(us / 1000).toFixed(1)} ms` : `${us.toFixed(us < 100 ? 1 : 0)} us`;
}

function shapeLine(r: ShapeResult, index: number, total: number): string {
  const head = `[${index + 1}/${total}] ${describeSpec(r.spec)}`;
  const counts = `${r.candidates.length} candidates${count(r, 'incorrect')}${count(r, 'skipped')}`;
  if (!r.row) return `${head}: FAILED: ${r.error} (${counts})`;
  return `${head}: default ${formatUs(r.defaultUs)}, tuned ${formatUs(r.tunedUs)} (${r.speedup.toFixed(2)}x) ${r.winner} (${counts}, ${(r.elapsedMs / 1000).toFixed(1)} s)`;
}

function count(r: ShapeResult, status: string): string {
  const n = r.candidates.filter((c) => c.status === status).length;
  return n > 0 ? `, ${n} ${status}` : '';
}

/** Progress on stderr: a bar on a terminal, one line per finished shape otherwise (none when quiet). */
export function progressReporter(quiet: boolean): { onEvent: (e: TuneEvent) => void; stop: () => void } {
  if (quiet) return { onEvent: () => {}, stop: () => {} };
  if (!process.stderr.isTTY) {
    return {
      onEvent: (e) => {
        if (e.type === 'shape-done') process.stderr.write(`${shapeLine(e.result, e.index, e.total)}\n`);
      },
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: '{bar} {value}/{total} shapes | {shape} | candidate {cand} | best {best} | ETA {eta_formatted}',
      hideCursor: true,
      etaBuffer: 4,
    },
    cliProgress.Presets.shades_classic,
  );
  let begun = false;
  let finished = 0;
  return {
    onEvent: (e) => {
      if (!begun && e.type === 'shape-start') {
        bar.start(e.total, 0, { shape: describeSpec(e.spec), cand: '-', best: '-' });
        begun = true;
      } else if (e.type === 'shape-start') bar.update({ shape: describeSpec(e.spec), cand: '-', best: '-' });
      else if (e.type === 'candidate') bar.update({ cand: `${e.done}/${e.total}`, best: formatUs(e.bestUs) });
      else if (e.type === 'shape-done') bar.update(++finished);
    },
    stop: () => {
      if (begun) bar.stop();
    },
  };
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((x, i) => (i >= 1 && i <= 3 ? x.padStart(widths[i]) : x.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

export function summaryText(s: TuneSummary, out: string | undefined, wallMs: number): string {
  const rows = [['shape', 'default', 'tuned', 'speedup', 'winner']];
  for (const r of s.results) {
    rows.push([describeSpec(r.spec), formatUs(r.defaultUs), formatUs(r.tunedUs), r.row ? `${r.speedup.toFixed(2)}x` : 'FAILED', r.winner ?? r.error ?? '']);
  }
  const tuned = s.results.filter((r) => r.row).length;
  const lines = [table(rows), ''];
  const g = geomeanSpeedup(s.results);
  lines.push(`geometric-mean speedup over the default: ${Number.isNaN(g) ? '-' : `${g.toFixed(3)}x`} (${tuned} shape(s))`);
  const incorrect = s.results.reduce((n, r) => n + r.candidates.filter((c) => c.status === 'incorrect').length, 0);
  if (incorrect > 0) lines.push(`${incorrect} candidate(s) failed the numerical check and were never chosen (see --json)`);
  if (out) lines.push(`${tuned} row(s) merged into ${out}`);
  lines.push(`wall time ${(wallMs / 1000).toFixed(1)} s`);
  return lines.join('\n');
}

export function summaryJson(s: TuneSummary, out: string | undefined, wallMs: number): string {
  return JSON.stringify(
    {
      out: out ?? null, validators: s.validators, devices: s.devices, wallMs, geomeanSpeedup: geomeanSpeedup(s.results),
      resumed: s.resumed.length, shapes: s.results,
    },
    (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v),
    2,
  );
}
