#!/usr/bin/env python3
"""The model section of the device check scripts, PyTorch's side: the same Llama-style checkpoint that
bench/gpu/model_bench.mjs runs through gemmkit, run by an eager Hugging Face-style implementation (RMSNorm
in f32, rotate_half rotary embeddings, grouped-query attention with repeat_kv and
torch.nn.functional.scaled_dot_product_attention, SwiGLU, bf16 activations as transformers runs a bf16
model), on weights read from the same safetensors files (a small reader here: no safetensors package
needed). It measures what model_bench.mjs measures: prefill tokens/s at 512 and 2048 tokens (logits of the
last token) and decode tokens/s at batch 1, 8 and 32 (greedy steps on a preallocated KV cache), medians of
device-synchronised wall times; and compares its next-token logits on a fixed prompt with gemmkit's.

  torch_llama.py DIR --out OUT.json [--gemmkit-logits FILE] [--device cuda|cpu] [--tiny]

--tiny uses the short lengths of model_bench.mjs --tiny (a dry run on a CPU with a small checkpoint).
"""
import argparse
import json
import math
import os
import statistics
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {'BF16': torch.bfloat16, 'F16': torch.float16, 'F32': torch.float32}


def read_safetensors(path):
    """{name: tensor} of one safetensors file (BF16, F16, F32), on the CPU."""
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        start, end = info['data_offsets']
        dtype = DTYPES[info['dtype']]
        t = torch.frombuffer(bytearray(data[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info['shape'])
    return out


def read_checkpoint(d):
    index = os.path.join(d, 'model.safetensors.index.json')
    files = sorted(set(json.load(open(index))['weight_map'].values())) if os.path.exists(index) else ['model.safetensors']
    weights = {}
    for f in files:
        weights.update(read_safetensors(os.path.join(d, f)))
    return weights


class Llama:
    """transformers' LlamaForCausalLM forward, eager, with SDPA attention and a static KV cache."""

    def __init__(self, d, device, dtype):
        self.cfg = c = json.load(open(os.path.join(d, 'config.json')))
        self.hidden = c['hidden_size']
        self.heads = c['num_attention_heads']
        self.kv_heads = c.get('num_key_value_heads', self.heads)
        self.head_dim = c.get('head_dim') or self.hidden // self.heads
        self.eps = c.get('rms_norm_eps', 1e-6)
        self.vocab = c['vocab_size']
        self.dtype, self.device = dtype, device
        w = {k: v.to(device=device, dtype=dtype) for k, v in read_checkpoint(d).items()}
        self.w = w
        self.layers = c['num_hidden_layers']
        self.head = w['model.embed_tokens.weight'] if c.get('tie_word_embeddings') else w['lm_head.weight']
        half = self.head_dim // 2
        inv = 1.0 / (c.get('rope_theta', 10000.0) ** (torch.arange(0, half, dtype=torch.float64) * 2 / self.head_dim))
        pos = torch.arange(c.get('max_position_embeddings', 4096), dtype=torch.float64)
        freqs = torch.outer(pos, inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos = emb.cos().to(device=device, dtype=torch.float32)
        self.sin = emb.sin().to(device=device, dtype=torch.float32)

    def rms_norm(self, x, weight):
        v = x.float()
        v = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * v.to(x.dtype)

    def rope(self, x, positions):
        # x [B, heads, T, d]; rotate_half, cos/sin cast to x's dtype as transformers does
        cos = self.cos[positions].to(x.dtype)[None, None]
        sin = self.sin[positions].to(x.dtype)[None, None]
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def new_cache(self, batch, capacity):
        shape = (batch, self.kv_heads, capacity, self.head_dim)
        return [(torch.empty(shape, device=self.device, dtype=self.dtype), torch.empty(shape, device=self.device, dtype=self.dtype))
                for _ in range(self.layers)]

    def forward(self, ids, cache, past):
        """ids [B, T] at positions past.. past + T - 1 (the same for every row); logits of the last token [B, vocab]."""
        b, t = ids.shape
        w = self.w
        x = w['model.embed_tokens.weight'][ids]
        positions = torch.arange(past, past + t, device=self.device)
        groups = self.heads // self.kv_heads
        for i in range(self.layers):
            p = f'model.layers.{i}.'
            h = self.rms_norm(x, w[p + 'input_layernorm.weight'])
            q = F.linear(h, w[p + 'self_attn.q_proj.weight']).view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = F.linear(h, w[p + 'self_attn.k_proj.weight']).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = F.linear(h, w[p + 'self_attn.v_proj.weight']).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self.rope(q, positions), self.rope(k, positions)
            kc, vc = cache[i]
            kc[:, :, past:past + t] = k
            vc[:, :, past:past + t] = v
            keys = kc[:, :, :past + t].repeat_interleave(groups, dim=1)
            values = vc[:, :, :past + t].repeat_interleave(groups, dim=1)
            if hasattr(F, 'scaled_dot_product_attention'):
                # Causal over the new tokens: a prefill from position 0, or one new token that sees everything.
                a = F.scaled_dot_product_attention(q, keys, values, is_causal=(t > 1 and past == 0))
            else:  # PyTorch before 2.0 (a dry run on an old CPU build): the same product by hand
                s = (q @ keys.transpose(-1, -2)) / math.sqrt(self.head_dim)
                if t > 1:
                    s = s.masked_fill(torch.ones(t, past + t, dtype=torch.bool, device=self.device).triu(past + 1), float('-inf'))
                a = torch.softmax(s.float(), dim=-1).to(q.dtype) @ values
            a = a.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
            x = x + F.linear(a, w[p + 'self_attn.o_proj.weight'])
            h = self.rms_norm(x, w[p + 'post_attention_layernorm.weight'])
            x = x + F.linear(F.silu(F.linear(h, w[p + 'mlp.gate_proj.weight'])) * F.linear(h, w[p + 'mlp.up_proj.weight']), w[p + 'mlp.down_proj.weight'])
        last = self.rms_norm(x[:, -1], w['model.norm.weight'])
        return F.linear(last, self.head).float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('dir')
    ap.add_argument('--out', required=True)
    ap.add_argument('--gemmkit-logits')
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--tiny', action='store_true')
    ap.add_argument('--runs', type=int, default=3)
    a = ap.parse_args()
    prefills = [32, 64] if a.tiny else [512, 2048]
    batches = [1, 2, 4] if a.tiny else [1, 8, 32]
    decode_prompt, decode_steps = (16, 4) if a.tiny else (128, 32)
    device = torch.device(a.device)
    dtype = torch.bfloat16
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    t0 = time.perf_counter()
    model = Llama(a.dir, device, dtype)
    sync()
    load_s = time.perf_counter() - t0
    vocab = model.vocab
    ids = lambda n, seed: torch.tensor([[(i * 7919 + seed * 104729 + 13) % vocab for i in range(n)]], device=device)  # as model_bench.mjs
    result = {'engine': 'pytorch', 'torch': torch.__version__, 'device': str(device),
              'gpu': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu', 'loadS': load_s}
    print(f'torch_llama: {a.dir} on {result["gpu"]} (PyTorch {torch.__version__}), loaded in {load_s:.1f} s', flush=True)

    with torch.inference_mode():
        check = torch.tensor([[(i * 97 + 1) % vocab for i in range(16)]], device=device)  # model_bench.mjs CHECK_PROMPT
        logits = model.forward(check, model.new_cache(1, 16), 0)[0].cpu()
        if a.gemmkit_logits and os.path.exists(a.gemmkit_logits):
            theirs = torch.frombuffer(bytearray(open(a.gemmkit_logits, 'rb').read()), dtype=torch.float32)
            err = (theirs - logits).abs().max().item() / logits.abs().max().item()
            top_ours, top_theirs = int(logits.argmax()), int(theirs.argmax())
            result['logitsCheck'] = {'normwiseError': err, 'argmaxTorch': top_ours, 'argmaxGemmkit': top_theirs}
            print(f'torch_llama: next-token logits vs gemmkit: normwise error {err:.2e} (bf16 activations here, f32 there); '
                  f'argmax {top_ours} vs {top_theirs}', flush=True)

        prefill = {}
        for n in prefills:
            cache = model.new_cache(1, n)
            prompt = ids(n, 1)
            times = []
            for r in range(a.runs + 1):
                sync()
                t = time.perf_counter()
                model.forward(prompt, cache, 0)
                sync()
                if r > 0:
                    times.append((time.perf_counter() - t) * 1000)
            ms = statistics.median(times)
            prefill[n] = {'ms': ms, 'tokensPerS': n / (ms / 1000)}
            print(f'torch_llama: prefill {n}: {ms:.1f} ms = {prefill[n]["tokensPerS"]:.0f} tokens/s', flush=True)
            del cache

        decode = {}
        for b in batches:
            cache = model.new_cache(b, decode_prompt + decode_steps + 2)
            prompts = torch.cat([ids(decode_prompt, i + 2) for i in range(b)])
            nxt = model.forward(prompts, cache, 0).argmax(-1, keepdim=True)
            past, times = decode_prompt, []
            for s in range(decode_steps + 1):
                sync()
                t = time.perf_counter()
                nxt = model.forward(nxt, cache, past).argmax(-1, keepdim=True)
                nxt.cpu()  # the ids reach the host, as gemmkit's steps bring them back
                if s > 0:
                    times.append((time.perf_counter() - t) * 1000)
                past += 1
            ms = statistics.median(times)
            decode[b] = {'msPerStep': ms, 'tokensPerS': b / (ms / 1000)}
            print(f'torch_llama: decode batch {b}: {ms:.2f} ms/step = {decode[b]["tokensPerS"]:.1f} tokens/s', flush=True)
            del cache

    result.update({'prefill': prefill, 'decode': decode})
    with open(a.out, 'w') as f:
        json.dump(result, f, indent=2)


if __name__ == '__main__':
    sys.exit(main())
