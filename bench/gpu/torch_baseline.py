#!/usr/bin/env python3
"""The vendor baseline for bench/gpu/*-check.sh: the same bf16 GEMMs through the installed PyTorch
(cuBLAS/cuBLASLt on NVIDIA, hipBLASLt/rocBLAS on ROCm), timed like gemmkit-gpu-bench: CUDA events
around each call, inputs rotating through copies of at least 512 MiB so no run finds them in L2,
medians in microseconds. Prints CSV: shape,layout,class,config,median_us,TFLOPs,GBps.

  torch_baseline.py [--shapes MxNxK:nn,MxNxK:nt,...] [--dtype bf16|f16]
nn: A [M, K] @ B [K, N] (torch.matmul); nt: x [M, K] @ W^T with W [N, K] (torch.nn.functional.linear).
"""
import argparse
import statistics
import sys

import torch

DEFAULT_SHAPES = ['8192x8192x8192:nn'] + [f'{m}x{n}x4096:nt' for n in (4096, 14336) for m in (1, 16, 128, 2048)]
ROTATE_BYTES = 512 << 20


def parse(shape):
    dims, layout = shape.split(':')
    m, n, k = (int(x) for x in dims.split('x'))
    if layout not in ('nn', 'nt'):
        raise SystemExit(f'bad layout in {shape}')
    return m, n, k, layout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--shapes', default=','.join(DEFAULT_SHAPES))
    ap.add_argument('--dtype', default='bf16', choices=['bf16', 'f16'])
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print('torch_baseline: PyTorch sees no GPU', file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if args.dtype == 'bf16' else torch.float16
    lib = 'hipblaslt/rocblas' if torch.version.hip else 'cublas'
    print(f'# torch {torch.__version__} ({"ROCm " + torch.version.hip if torch.version.hip else "CUDA " + str(torch.version.cuda)}) '
          f'on {torch.cuda.get_device_name(0)}')
    print('shape,layout,class,config,median_us,TFLOPs,GBps')
    for shape in args.shapes.split(','):
        m, n, k, layout = parse(shape)
        per_copy = 2 * (m * k + k * n)
        copies = max(1, min(64, ROTATE_BYTES // per_copy + 1))
        a = [torch.rand(m, k, device='cuda', dtype=dtype) - 0.5 for _ in range(copies)]
        b = [(torch.rand(n, k, device='cuda', dtype=dtype) if layout == 'nt' else torch.rand(k, n, device='cuda', dtype=dtype)) - 0.5
             for _ in range(copies)]
        op = (lambda x, w: torch.nn.functional.linear(x, w)) if layout == 'nt' else torch.matmul
        for i in range(3):
            op(a[i % copies], b[i % copies])
        torch.cuda.synchronize()
        times = []
        iterations = 30 if m * n * k < 2 ** 36 else 10
        for i in range(iterations):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            op(a[i % copies], b[i % copies])
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) * 1000.0)
        us = statistics.median(times)
        flops = 2.0 * m * n * k
        moved = 2.0 * (m * k + k * n + m * n)
        print(f'{m}x{n}x{k},{layout},torch,{lib},{us:.2f},{flops / us * 1e-6:.2f},{moved / us * 1e-3:.1f}', flush=True)
        del a, b
        torch.cuda.empty_cache()
    return 0


if __name__ == '__main__':
    sys.exit(main())
