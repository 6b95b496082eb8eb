#!/usr/bin/python3
# OpenBLAS peer: times f32 numpy matmul (Debian's python3-numpy, whose BLAS is the libblas.so.3
# alternative; setup.sh points it at OpenBLAS) with out= so no allocation is timed. x @ W.T hands
# OpenBLAS the [N, K] weights with a transpose flag, no copy. Run it with /usr/bin/python3: a pyenv or
# pip numpy bundles its own OpenBLAS and is not the peer. --coretype=NAME sets OPENBLAS_CORETYPE before
# numpy loads OpenBLAS (Debian's 0.3.21 picks kernels by cpuid and may misjudge newer CPUs).
# Threads: OPENBLAS_NUM_THREADS from the environment.
#
# Same command line and JSON-lines output as the C++ runners: see runner_common.h.
import json
import os
import re
import sys
import time


def emit(obj):
    print(json.dumps(obj), flush=True)


def parse_shape(token):
    m = re.fullmatch(r'(\d+)x(\d+)x(\d+):([tn]):(f32|bf16)(?::(f32|bf16))?', token)
    if not m or min(int(m.group(i)) for i in (1, 2, 3)) < 1:
        return None
    return {
        'token': token, 'm': int(m.group(1)), 'n': int(m.group(2)), 'k': int(m.group(3)),
        'transB': m.group(4) == 't', 'dtype': m.group(5), 'outDtype': m.group(6) or m.group(5),
    }


def parse_args(argv):
    args = {'info': False, 'time_ms': 300.0, 'footprint': 128 << 20, 'coretype': None, 'shapes': []}
    it = iter(argv)
    for a in it:
        if a == '--info':
            args['info'] = True
        elif a == '--time-ms':
            args['time_ms'] = float(next(it))
        elif a == '--footprint-bytes':
            args['footprint'] = int(next(it))
        elif a.startswith('--coretype='):
            args['coretype'] = a.split('=', 1)[1]
        else:
            shape = parse_shape(a)
            if shape is None:
                sys.exit(f"openblas_runner: bad argument '{a}' (expected MxNxK:t|n:f32|bf16[:f32|bf16])")
            args['shapes'].append(shape)
    return args


def rotating_sets(bytes_per_set, footprint):
    if bytes_per_set >= footprint:
        return 1
    return min(16, -(-footprint // bytes_per_set))


def blas_in_use():
    """The BLAS libraries this process mapped, and OpenBLAS's own description of itself if one is OpenBLAS."""
    import ctypes
    with open('/proc/self/maps') as f:
        libs = sorted({line.split()[-1] for line in f if re.search(r'(blas|blis|mkl|lapack)[^/]*\.so', line)})
    for path in libs:
        if 'openblas' not in path:
            continue
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return libs, lib.openblas_get_config().decode(), lib.openblas_get_corename().decode(), lib.openblas_get_num_threads()
        except (OSError, AttributeError):
            continue
    return libs, None, None, None


def fill(np, shape, seed):
    n = 1
    for d in shape:
        n *= d
    s = (np.arange(n, dtype=np.uint32) * np.uint32(2654435761) + np.uint32((seed * 1013904223 + 1) % 2**32)) >> np.uint32(8)
    return (s.astype(np.float32) * np.float32(2.0 / 16777216.0) - np.float32(1.0)).reshape(shape)


def sampled_error(np, a, b, c):
    """Worst error of 64 sampled entries of c = a @ b against float64, relative to sum |a*b| (see runner_common.h)."""
    rng = np.random.default_rng(12345)
    m, n = c.shape
    rows = np.concatenate(([0, m - 1], rng.integers(0, m, 62)))
    cols = np.concatenate(([0, n - 1], rng.integers(0, n, 62)))
    products = a[rows, :].astype(np.float64) * b[:, cols].T.astype(np.float64)
    err = np.abs(c[rows, cols].astype(np.float64) - products.sum(axis=1)) / np.maximum(np.abs(products).sum(axis=1), 1e-300)
    return float(np.max(err))


def time_calls(sets, time_ms, call):
    for s in range(min(sets, 3)):
        call(s)
    ms = []
    start = time.perf_counter()
    i = 0
    while True:
        t0 = time.perf_counter()
        call(i % sets)
        t1 = time.perf_counter()
        ms.append((t1 - t0) * 1e3)
        i += 1
        if (len(ms) >= 5 and (t1 - start) * 1e3 >= time_ms) or len(ms) >= 2000:
            break
    ms.sort()
    n = len(ms)
    median = ms[n // 2] if n % 2 else 0.5 * (ms[n // 2 - 1] + ms[n // 2])
    return median, n


def main():
    args = parse_args(sys.argv[1:])
    peer = 'openblas'
    if args['coretype']:
        os.environ['OPENBLAS_CORETYPE'] = args['coretype']
        peer = 'openblas-' + args['coretype'].lower()
    import numpy as np  # loads OpenBLAS, which reads OPENBLAS_CORETYPE now

    libs, config, core, threads = blas_in_use()
    if config is None:
        emit({'kind': 'info', 'peer': peer, 'detail': f'numpy {np.__version__} is not using OpenBLAS (mapped: {", ".join(libs) or "no BLAS"})',
              'ok': False})
        for s in args['shapes']:
            emit({'kind': 'error', 'shape': s['token'], 'reason': 'numpy does not use OpenBLAS: run bench/peers/setup.sh'})
        return
    how = f'forced with OPENBLAS_CORETYPE={args["coretype"]}' if args['coretype'] else 'detected'
    version = config.split()[1] if config.startswith('OpenBLAS ') else config
    emit({'kind': 'info', 'peer': peer,
          'detail': f'OpenBLAS {version} core {core} ({how}), {threads} threads, numpy {np.__version__}',
          'config': config, 'ok': True})
    if args['info']:
        return

    for s in args['shapes']:
        if s['dtype'] != 'f32' or s['outDtype'] != 'f32':
            emit({'kind': 'skip', 'shape': s['token'], 'reason': 'numpy has no bf16 matmul'})
            continue
        m, n, k = s['m'], s['n'], s['k']
        sets = rotating_sets(4 * (m * k + k * n + m * n), args['footprint'])
        a = [fill(np, (m, k), 2 * i + 1) for i in range(sets)]                    # A: [M, K]
        b = [fill(np, (n, k) if s['transB'] else (k, n), 2 * i + 2) for i in range(sets)]  # W [N, K] or B [K, N]
        c = [np.zeros((m, n), dtype=np.float32) for _ in range(sets)]             # C: [M, N]
        ops = [bi.T if s['transB'] else bi for bi in b]
        np.matmul(a[0], ops[0], out=c[0])
        err = sampled_error(np, a[0], ops[0], c[0])
        if not err <= 2e-3:
            emit({'kind': 'error', 'shape': s['token'], 'reason': f'wrong result: sampled error {err:.3g} relative to sum |a*b|'})
            continue
        median, runs = time_calls(sets, args['time_ms'], lambda i: np.matmul(a[i], ops[i], out=c[i]))
        emit({'kind': 'result', 'shape': s['token'], 'medianMs': median, 'runs': runs, 'sets': sets,
              'impl': f'numpy.matmul, OpenBLAS core {core}'})


if __name__ == '__main__':
    main()
