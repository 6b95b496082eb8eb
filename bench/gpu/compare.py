#!/usr/bin/env python3
"""Side-by-side summary of gemmkit-gpu-bench and torch_baseline.py output (same shapes, one run), with
the GPU kernels' device targets:
  - bf16 8192^3: gemmkit's own best kernel at least 0.6x the vendor library through PyTorch;
  - decode shapes (M <= 16): gemmkit's own best at least 70% of the measured device copy bandwidth;
  - tuned dispatch (own kernels + vendor BLAS candidates): at least 1.0x PyTorch on every shape.
  compare.py BENCH_CSV TORCH_CSV
"""
import csv
import sys


def rows(path):
    out, copy_bw = [], None
    with open(path) as f:
        for line in f:
            if line.startswith('copy_bandwidth_GBps,'):
                copy_bw = float(line.split(',')[1])
        f.seek(0)
        body = [l for l in f if l and not l.startswith('#') and not l.startswith('copy_bandwidth')]
    for r in csv.DictReader(body):
        if r.get('median_us'):
            out.append(r)
    return out, copy_bw


def main():
    bench, copy_bw = rows(sys.argv[1])
    torch_rows, _ = rows(sys.argv[2])
    torch_us = {(r['shape'], r['layout']): float(r['median_us']) for r in torch_rows}
    by_shape = {}
    for r in bench:
        by_shape.setdefault((r['shape'], r['layout']), {})[r['class']] = r
    print(f'copy bandwidth: {copy_bw:.0f} GB/s' if copy_bw else 'copy bandwidth: not measured')
    print(f'{"shape":>18} {"lay":>3} {"torch us":>9} {"heur us":>9} {"own us":>9} {"vendor us":>9} {"tuned us":>9}'
          f' {"own/torch":>9} {"tuned/torch":>11} {"own GB/s":>9}  own best config')
    verdicts = []
    for key, classes in by_shape.items():
        shape, layout = key
        t = torch_us.get(key)
        us = lambda c: float(classes[c]['median_us']) if c in classes else float('nan')
        own, tuned = us('best_own'), us('tuned')
        m = int(shape.split('x')[0])
        ratio_own = t / own if t else float('nan')
        ratio_tuned = t / tuned if t else float('nan')
        gbps = float(classes['best_own']['GBps']) if 'best_own' in classes else float('nan')
        print(f'{shape:>18} {layout:>3} {t or float("nan"):9.1f} {us("heuristic"):9.1f} {own:9.1f} {us("best_vendor"):9.1f} {tuned:9.1f}'
              f' {ratio_own:9.2f} {ratio_tuned:11.2f} {gbps:9.0f}  {classes.get("best_own", {}).get("config", "-")}')
        if shape == '8192x8192x8192':
            verdicts.append((f'{shape} own kernel >= 0.6x torch', ratio_own >= 0.6, f'{ratio_own:.2f}x'))
        if m <= 16 and copy_bw:
            verdicts.append((f'{shape} {layout} own >= 70% of copy bandwidth', gbps >= 0.7 * copy_bw, f'{gbps / copy_bw:.0%}'))
        verdicts.append((f'{shape} {layout} tuned >= 1.0x torch', ratio_tuned >= 1.0, f'{ratio_tuned:.2f}x'))
    print()
    for name, ok, value in verdicts:
        print(f'{"PASS" if ok else "MISS"}  {name}: {value}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
