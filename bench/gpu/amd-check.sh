#!/usr/bin/env bash
# The device check for an AMD GPU machine (made for an MI300X, gfx942; ROCm with hipcc's clang, cmake,
# ninja and PyTorch for ROCm installed, Node not needed): the same shape as nvidia-check.sh.
#   1. builds the HIP engine's Node-free drivers for this GPU's architecture;
#   2. gemmkit-gpu-check: every compiled kernel configuration against the float64 CPU reference;
#      gemmkit-gpu-ops-check: every op kernel against the float64 reference of the ops;
#   3. gemmkit-gpu-bench: bf16 8192^3 and M in 1, 16, 128, 2048 against 4096x4096 and 14336x4096 weights
#      (heuristic, best own kernel, best hipBLASLt / rocBLAS solution, tuned pick) and the copy
#      bandwidth; torch_baseline.py: the same shapes through PyTorch (hipBLASLt);
#   4. compare.py: side by side against the targets;
#   5. model-check.sh: the random 1.1 B-parameter Llama-style model through gemmkit (the HIP addon, plain
#      cmake) and PyTorch for ROCm, side by side against the HBM bound (MODEL_CHECK=0 leaves it out).
# No AMD machine was available while this was written: it has not been run.
#   usage: bench/gpu/amd-check.sh [OUTDIR]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/gpu-check-amd}
build="$root/build/gpu-check-amd-build"
mkdir -p "$out"
SECONDS=0
step() { printf '\n=== %s (%ds)\n' "$*" "$SECONDS" | tee -a "$out/summary.txt"; }
export PATH="$PATH:/opt/rocm/bin"

step "machine"
rocminfo 2>/dev/null | grep -m1 -E "^\s+Name:\s+gfx" | tee -a "$out/summary.txt"
arch=$(rocminfo 2>/dev/null | grep -m1 -oE "gfx[0-9a-f]+" || echo gfx942)
echo "building for $arch" | tee -a "$out/summary.txt"

step "build (cmake + ninja, ROCm's clang)"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGEMMKIT_GPU=hip -DGEMMKIT_HIP_ARCHS="$arch" \
  > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
grep -E "gemmkit:" "$out/configure.log" | tee -a "$out/summary.txt"
cmake --build "$build" --target gemmkit-gpu-check gemmkit-gpu-ops-check gemmkit-gpu-bench -j "$(nproc)" > "$out/build.log" 2>&1 \
  || { tail -40 "$out/build.log"; exit 1; }

step "correctness: every config against the CPU reference"
timeout 200 "$build/gemmkit-gpu-check" > "$out/check.txt" 2>&1
check=$?
grep -E "^FAIL|configs,|heuristic" "$out/check.txt" | head -60 | tee -a "$out/summary.txt"
echo "gemmkit-gpu-check exit status $check" | tee -a "$out/summary.txt"

step "correctness: every op kernel against the CPU reference"
timeout 90 "$build/gemmkit-gpu-ops-check" > "$out/ops-check.txt" 2>&1
opsCheck=$?
grep -E "^FAIL|^ok|checks," "$out/ops-check.txt" | head -40 | tee -a "$out/summary.txt"
echo "gemmkit-gpu-ops-check exit status $opsCheck" | tee -a "$out/summary.txt"

step "timing: gemmkit (own kernels and hipBLASLt / rocBLAS candidates)"
timeout 200 "$build/gemmkit-gpu-bench" --copy-bandwidth > "$out/bench.csv" 2> "$out/bench.err"
echo "gemmkit-gpu-bench exit status $?" | tee -a "$out/summary.txt"

step "timing: PyTorch for ROCm on the same shapes"
timeout 90 python3 "$root/bench/gpu/torch_baseline.py" > "$out/torch.csv" 2> "$out/torch.err"
echo "torch_baseline exit status $?" | tee -a "$out/summary.txt"

step "side by side"
python3 "$root/bench/gpu/compare.py" "$out/bench.csv" "$out/torch.csv" | tee -a "$out/summary.txt"

# The model section (MODEL_CHECK=0 skips it): it has its own step limits and never fails the run above.
if [ "${MODEL_CHECK:-1}" != 0 ]; then
  bash "$root/bench/gpu/model-check.sh" hip "$out" "$build"
  echo "model-check exit status $?" | tee -a "$out/summary.txt"
fi
step "done; files in $out"
