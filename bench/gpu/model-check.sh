#!/usr/bin/env bash
# The model section of the device check scripts (nvidia-check.sh and amd-check.sh run it last): a random
# Llama-style checkpoint near 1 B parameters (hidden 2048, 22 layers, 32 heads / 4 KV heads, intermediate
# 5632, vocab 32000, bf16), run by gemmkit on the GPU (loadModel({ device }), forward, the greedy steps of
# generate) and by an eager Hugging Face-style PyTorch model with scaled_dot_product_attention on the same
# safetensors files, side by side: prefill tokens/s at 512 and 2048 tokens, decode tokens/s at batch 1, 8
# and 32, and decoding's HBM bound (GEMM weight bytes per step / the copy bandwidth gemmkit-gpu-bench
# measured); the two engines' next-token logits on one prompt are compared first.
#   1. node: `node` when the machine has it, else the carried one (bench/gpu/carry-node.sh made the archive:
#      node, its headers, node-addon-api, dist/ and the runtime npm packages), extracted at the repository root;
#   2. the GPU addon, built by plain cmake in the drivers' build folder with CMAKE_JS_INC set by hand (no
#      cmake-js needed), loaded through GEMMKIT_CUDA_ADDON / GEMMKIT_HIP_ADDON;
#   3. the checkpoint (model_bench.mjs write; kept in the build folder for the next run), gemmkit's figures
#      (model_bench.mjs run), PyTorch's (torch_llama.py), and the table (model_compare.py).
# Everything goes to OUTDIR: model-*.txt, model-gemmkit.json, model-torch.json and the summary.
#   usage: bench/gpu/model-check.sh cuda|hip OUTDIR BUILDDIR [CARRY.tar.xz]
#   MODEL_CHECK_TINY=1: a small checkpoint and short runs (a smoke test of the section);
#   MODEL_CHECK_TORCH_DEVICE: PyTorch's device (default cuda; cpu for a dry run on a machine without a GPU)
set -uo pipefail
vendor=${1:?usage: model-check.sh cuda|hip OUTDIR BUILDDIR [CARRY.tar.xz]}
out=${2:?OUTDIR}
build=${3:?BUILDDIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
carry=${4:-$root/build/carry/gemmkit-node.tar.xz}
tiny=${MODEL_CHECK_TINY:+--tiny}
mkdir -p "$out"
out=$(cd "$out" && pwd)
build=$(cd "$build" && pwd) || { echo "model-check: no build folder $build (the drivers' build configures it)"; exit 1; }
SECONDS=${SECONDS:-0}
step() { printf '\n=== %s (%ds)\n' "$*" "$SECONDS" | tee -a "$out/summary.txt"; }
say() { echo "$*" | tee -a "$out/summary.txt"; }

step "model: node"
node_bin=$(command -v node || true)
if [ -z "$node_bin" ] || [ ! -f "$root/dist/index.js" ] || [ ! -f "$root/node_modules/node-addon-api/napi.h" ]; then
  if [ ! -f "$carry" ]; then
    say "model: no node (or no dist/ and node_modules) and no carried archive at $carry; make one with bench/gpu/carry-node.sh on a machine with Node. Skipping the model section."
    exit 0
  fi
  tar -xJf "$carry" -C "$root" || { say "model: could not extract $carry"; exit 1; }
  say "model: extracted $(basename "$carry"): $(head -1 "$root/build/node-carry/README")"
  [ -n "$node_bin" ] || node_bin="$root/build/node-carry/bin/node"
fi
say "model: node $("$node_bin" --version) ($node_bin)"
node_inc=""
for d in "$(dirname "$(readlink -f "$node_bin")")/../include/node" "$root/build/node-carry/include/node" /usr/include/node; do
  if [ -f "$d/node_api.h" ]; then node_inc=$(cd "$d" && pwd); break; fi
done
addon_inc=""
for d in "$root/node_modules/node-addon-api" "$root/build/node-carry/include/node-addon-api"; do
  if [ -f "$d/napi.h" ]; then addon_inc=$d; break; fi
done
if [ -z "$node_inc" ] || [ -z "$addon_inc" ]; then say "model: no Node headers (node_api.h) or node-addon-api (napi.h)"; exit 1; fi

step "model: the $vendor addon (plain cmake, CMAKE_JS_INC set by hand)"
# The drivers' build folder is configured already (GEMMKIT_GPU, the architectures): add the addon to it.
cmake "$build" -DCMAKE_JS_INC="$node_inc;$addon_inc" > "$out/model-configure.log" 2>&1 \
  || { tail -20 "$out/model-configure.log" | tee -a "$out/summary.txt"; exit 1; }
timeout 600 cmake --build "$build" --target "gemmkit_$vendor" -j "$(nproc)" > "$out/model-build.log" 2>&1 \
  || { tail -30 "$out/model-build.log" | tee -a "$out/summary.txt"; exit 1; }
addon="$build/gemmkit_$vendor.node"
if [ "$vendor" = cuda ]; then export GEMMKIT_CUDA_ADDON="$addon"; else export GEMMKIT_HIP_ADDON="$addon"; fi
(cd "$root" && "$node_bin" --input-type=module -e "
  const { info } = await import('./dist/index.js');
  const g = info().gpus.find((x) => x.name === '$vendor');
  console.log('model: ' + JSON.stringify({ loaded: g?.loaded, devices: g?.devices?.map((d) => d.name), reason: g?.reason }));
") 2>&1 | tee -a "$out/summary.txt"

step "model: the checkpoint (random bf16 weights, written by writeRandomLlamaCheckpoint)"
ckpt="$build/model-llama${tiny:+-tiny}"
if [ ! -f "$ckpt/config.json" ]; then
  (cd "$root" && timeout 600 "$node_bin" bench/gpu/model_bench.mjs write "$ckpt" $tiny) 2>&1 | tee -a "$out/summary.txt"
else
  say "model: reusing $ckpt"
fi

step "model: gemmkit on $vendor:0"
(cd "$root" && timeout 420 "$node_bin" bench/gpu/model_bench.mjs run "$ckpt" --device "$vendor:0" $tiny \
  --out "$out/model-gemmkit.json" --logits "$out/model-logits.f32") > "$out/model-gemmkit.txt" 2>&1
say "model_bench exit status $?"
grep -E "^model_bench|Error" "$out/model-gemmkit.txt" | head -20 | tee -a "$out/summary.txt"

step "model: PyTorch (eager, SDPA) on the same weights"
timeout 420 python3 "$root/bench/gpu/torch_llama.py" "$ckpt" --out "$out/model-torch.json" --gemmkit-logits "$out/model-logits.f32" $tiny \
  --device "${MODEL_CHECK_TORCH_DEVICE:-cuda}" \
  > "$out/model-torch.txt" 2>&1
say "torch_llama exit status $?"
grep -E "^torch_llama|Error" "$out/model-torch.txt" | head -20 | tee -a "$out/summary.txt"

step "model: side by side"
python3 "$root/bench/gpu/model_compare.py" "$out/model-gemmkit.json" "$out/model-torch.json" "$out/bench.csv" | tee -a "$out/summary.txt"
