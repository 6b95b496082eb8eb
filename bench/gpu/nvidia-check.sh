#!/usr/bin/env bash
# The device check for an NVIDIA GPU machine (made for an H200; nvcc, cmake, ninja and PyTorch installed,
# Node not needed), in one run of about 10 minutes:
#   1. builds the CUDA engine's Node-free drivers for this GPU's architecture;
#   2. gemmkit-gpu-check: every compiled kernel configuration against the float64 CPU reference at
#      awkward sizes, all transposes, output dtypes and epilogues; gemmkit-gpu-ops-check: every op
#      kernel (norms, rope, KV store, attention, ...) against the float64 reference of the ops;
#   3. gemmkit-gpu-bench: bf16 8192^3 and M in 1, 16, 128, 2048 against 4096x4096 and 14336x4096 weights
#      (the heuristic's config, the best own kernel, the best cuBLASLt algorithm, the tuned pick) and the
#      device copy bandwidth; torch_baseline.py: the same shapes through PyTorch (cuBLAS);
#   4. compare.py: the figures side by side against the targets;
#   5. model-check.sh: a random 1.1 B-parameter Llama-style model through gemmkit (the CUDA addon built with
#      plain cmake, run by `node`, or by the node that bench/gpu/carry-node.sh packed when the machine has
#      none) and through PyTorch on the same weights: prefill and decode tokens/s against the HBM bound.
# Everything it prints is also under OUTDIR (default build/gpu-check-nvidia): summary.txt, check.txt,
# ops-check.txt, bench.csv, torch.csv, model-*; the build itself goes to build/gpu-check-nvidia-build. Each
# step has a time limit: about 10 minutes without the model section, about 15 with it (MODEL_CHECK=0 leaves
# it out).
#   usage: bench/gpu/nvidia-check.sh [OUTDIR]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/gpu-check-nvidia}
build="$root/build/gpu-check-nvidia-build"
mkdir -p "$out"
SECONDS=0
step() { printf '\n=== %s (%ds)\n' "$*" "$SECONDS" | tee -a "$out/summary.txt"; }
export PATH="$PATH:/usr/local/cuda/bin"

step "machine"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv | tee -a "$out/summary.txt"
nvcc --version | tail -1 | tee -a "$out/summary.txt"
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
# Only this GPU's code: Hopper gets sm_90a (the sm80 table is compiled for it too), others their own.
archs=$([ "$cc" = 90 ] && echo "90a" || echo "$cc")
echo "building for CUDA architecture $archs" | tee -a "$out/summary.txt"

step "build (cmake + ninja)"
# cuBLASLt: the toolkit's, else the nvidia-cublas wheel PyTorch brings.
cublas_root=$(python3 -c 'import nvidia.cublas as m; print(list(m.__path__)[0])' 2>/dev/null || true)
echo "cuBLASLt wheel folder: ${cublas_root:-none}" | tee -a "$out/summary.txt"
build_drivers() {  # $1: ON/OFF for cuBLASLt
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEMMKIT_GPU=cuda -DGEMMKIT_CUDA_ARCHS="$archs" \
    -DGEMMKIT_USE_CUBLASLT="$1" -DGEMMKIT_CUBLASLT_ROOT="$cublas_root" > "$out/configure.log" 2>&1 \
    || { tail -30 "$out/configure.log"; return 1; }
  grep -E "gemmkit:" "$out/configure.log" | tee -a "$out/summary.txt"
  cmake --build "$build" --target gemmkit-gpu-check gemmkit-gpu-ops-check gemmkit-gpu-bench -j "$(nproc)" > "$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log" | tee -a "$out/summary.txt"; return 1; }
}
# A cuBLASLt that does not compile must not cost the run: build without it then.
build_drivers ON || { echo "build with cuBLASLt failed; building without it" | tee -a "$out/summary.txt"; build_drivers OFF; } || exit 1

step "correctness: every config against the CPU reference"
timeout 170 "$build/gemmkit-gpu-check" > "$out/check.txt" 2>&1
check=$?
grep -E "^FAIL|configs,|heuristic" "$out/check.txt" | head -60 | tee -a "$out/summary.txt"
echo "gemmkit-gpu-check exit status $check" | tee -a "$out/summary.txt"

step "correctness: every op kernel against the CPU reference"
timeout 90 "$build/gemmkit-gpu-ops-check" > "$out/ops-check.txt" 2>&1
opsCheck=$?
grep -E "^FAIL|^ok|checks," "$out/ops-check.txt" | head -40 | tee -a "$out/summary.txt"
echo "gemmkit-gpu-ops-check exit status $opsCheck" | tee -a "$out/summary.txt"

step "timing: gemmkit (own kernels and cuBLASLt candidates)"
timeout 170 "$build/gemmkit-gpu-bench" --copy-bandwidth > "$out/bench.csv" 2> "$out/bench.err"
echo "gemmkit-gpu-bench exit status $?" | tee -a "$out/summary.txt"

step "timing: PyTorch (cuBLAS) on the same shapes"
timeout 90 python3 "$root/bench/gpu/torch_baseline.py" > "$out/torch.csv" 2> "$out/torch.err"
echo "torch_baseline exit status $?" | tee -a "$out/summary.txt"

step "side by side"
python3 "$root/bench/gpu/compare.py" "$out/bench.csv" "$out/torch.csv" | tee -a "$out/summary.txt"

# The model section (MODEL_CHECK=0 skips it): it has its own step limits and never fails the run above.
if [ "${MODEL_CHECK:-1}" != 0 ]; then
  bash "$root/bench/gpu/model-check.sh" cuda "$out" "$build"
  echo "model-check exit status $?" | tee -a "$out/summary.txt"
fi
step "done; files in $out"
