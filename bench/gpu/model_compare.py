#!/usr/bin/env python3
"""The model section's table: gemmkit (model_bench.mjs) and PyTorch (torch_llama.py) on the same checkpoint
and GPU, side by side, with the HBM bound of decoding: a decode step reads every GEMM weight once, so at
batch B it makes at most B x copy bandwidth / weight bytes per step tokens per second (the KV cache's reads,
small at these lengths, are left out, so the bound is a little high).

  model_compare.py GEMMKIT_JSON TORCH_JSON [BENCH_CSV]   (BENCH_CSV: gemmkit-gpu-bench --copy-bandwidth output)
"""
import json
import sys


def copy_bandwidth(path):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith('copy_bandwidth_GBps,'):
                    return float(line.split(',')[1])
    except OSError:
        pass
    return None


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    ours, torch = load(sys.argv[1]), load(sys.argv[2])
    bw = copy_bandwidth(sys.argv[3]) if len(sys.argv) > 3 else None
    if ours is None and torch is None:
        print('model: neither engine produced figures (see model-gemmkit.txt and model-torch.txt)')
        return 1
    gb = None
    if ours is None:
        print('model: gemmkit produced no figures (see model-gemmkit.txt); PyTorch alone:')
        ours = {'prefill': {n: None for n in torch['prefill']}, 'decode': {b: None for b in torch['decode']}}
    else:
        c = ours['config']
        gb = ours['weightBytesPerStep'] / 1e9
        print(f"model: hidden {c['hidden_size']}, {c['num_hidden_layers']} layers, {c['num_attention_heads']} heads / "
              f"{c['num_key_value_heads']} KV heads, intermediate {c['intermediate_size']}, vocab {c['vocab_size']}, bf16; "
              f"{gb:.2f} GB of GEMM weights per decode step")
    print(f'copy bandwidth: {bw:.0f} GB/s' if bw else 'copy bandwidth: not measured (no bound)')
    if torch is None:
        print('PyTorch produced no figures (see model-torch.txt)')
    elif 'logitsCheck' in torch:
        lc = torch['logitsCheck']
        print(f"next-token logits, gemmkit vs PyTorch: normwise difference {lc['normwiseError']:.2e}, "
              f"argmax {lc['argmaxGemmkit']} vs {lc['argmaxTorch']}")
    print(f'{"phase":>16} {"gemmkit tok/s":>14} {"torch tok/s":>12} {"gemmkit/torch":>14} {"HBM bound tok/s":>16} {"gemmkit/bound":>14}')
    rows = [(f'prefill {n}', ours['prefill'].get(n), (torch or {}).get('prefill', {}).get(n), None) for n in ours['prefill']]
    for b in ours['decode']:
        bound = int(b) * bw / gb if bw and gb else None
        rows.append((f'decode batch {b}', ours['decode'].get(b), (torch or {}).get('decode', {}).get(b), bound))
    for name, g, t, bound in rows:
        gt = g['tokensPerS'] if g else None
        tt = t['tokensPerS'] if t else None
        fmt = lambda x, w, p=1: f'{x:>{w}.{p}f}' if x is not None else f'{"-":>{w}}'
        print(f'{name:>16} {fmt(gt, 14)} {fmt(tt, 12)} {fmt(gt / tt if gt and tt else None, 14, 2)} {fmt(bound, 16)} '
              f'{fmt(gt / bound if gt and bound else None, 14, 2)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
