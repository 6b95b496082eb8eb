#!/usr/bin/env bash
# Compiles every GPU kernel of the config tables for its real targets, on a machine without a GPU, and
# fails on any register spill, local/scratch memory or LDS over 64 KiB:
#   CUDA: each kernel of the sm80 table for sm_80 and sm_90a, of the sm90a table for sm_90a, with
#         nvcc -Xptxas -v: registers, static shared memory, stack and spills per kernel and layout.
#   HIP:  each kernel of the gfx942 and gfx90a tables, device-only with clang's HIP driver: VGPR,
#         AGPR, SGPR, LDS, scratch and spills per kernel and layout, from the code object metadata.
# Then the op kernels (op_launchers.cu: one file, every op kernel) the same way for sm_80, sm_90a,
# gfx942 and gfx90a; attentionKernel<D, L, T> is head-dim block D, L lanes a query row, tiles of T
# positions.
# Before that, the tables' host-side logic runs its self-test (gemmkit-gpu-tables selftest).
#
#   usage: native/gpu/check-compile.sh [all|cuda|hip]      (default all)
#   env:   NVCC (default nvcc on PATH, else /usr/local/cuda/bin/nvcc), HIP_CLANG (default clang++-19),
#          HIP_DEVICE_LIBS (a ROCm bitcode folder; default: made from Debian's by
#          native/hip/debian-device-libs.sh, or clang's own search on a ROCm install),
#          GEMMKIT_JOBS (parallel compiles, default 2), GEMMKIT_CHECK_DIR (default build/gpu-check)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
what=${1:-all}
out=${GEMMKIT_CHECK_DIR:-$root/build/gpu-check}
jobs=${GEMMKIT_JOBS:-2}
mkdir -p "$out"

echo "== host-side logic of the GPU tables"
${CXX:-g++} -std=c++17 -O1 -Wall -Wextra -o "$out/gemmkit-gpu-tables" native/tools/gemmkit_gpu_tables.cpp \
  native/gpu/gpu_config.cpp native/core/problem.cpp
"$out/gemmkit-gpu-tables" selftest
"$out/gemmkit-gpu-tables" list > "$out/rows.tsv"

# The layout flags of a kernel from its mangled name: the template's bools are transA, transB
# (mma, mfma) or transB (skinny); simt has none.
layout_of() {
  local flags
  flags=$(grep -o 'ELb[01]' <<<"$1" | tr -d 'ELb' | tr -d '\n')
  case "$flags" in
    00) echo nn ;; 01) echo nt ;; 10) echo tn ;; 11) echo tt ;;
    0) echo "B[k,n]" ;; 1) echo "B[n,k]" ;; *) echo any ;;
  esac
}

failed=0
start=$SECONDS

# "void gemmkit::rowKernel<(gemmkit::OpKind)1>(gemmkit::OpArgs)" -> "rowKernel<rmsNorm>"
op_kernel_name() {
  local kinds=(embedding rmsNorm layerNorm rope kvStore attention softmax swiglu add activate argmax cast) name
  name=$(c++filt "$1" | sed -e 's/^void //' -e 's/^gemmkit:://' -e 's/(gemmkit::OpArgs)$//' -e 's/, /,/g')
  if [[ "$name" =~ \(gemmkit::OpKind\)([0-9]+) ]]; then
    name=${name/(gemmkit::OpKind)${BASH_REMATCH[1]}/${kinds[${BASH_REMATCH[1]}]}}
  fi
  echo "$name"
}

if [ "$what" = all ] || [ "$what" = cuda ]; then
  NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  [ -x "$NVCC" ] || { echo "check-compile: no nvcc (set NVCC or install the CUDA toolkit)" >&2; exit 1; }
  echo "== CUDA kernels with $("$NVCC" --version | tail -1)"
  mkdir -p "$out/cuda"
  : > "$out/cuda/jobs"
  while IFS=$'\t' read -r arch row name key threads shared first; do
    [ "$first" = first ] || continue
    case "$arch" in
      sm80) targets="sm_80 sm_90a" ;;
      sm90a) targets="sm_90a" ;;
      *) continue ;;
    esac
    archEnum=$( [ "$arch" = sm80 ] && echo Sm80 || echo Sm90a )
    for t in $targets; do
      echo "$NVCC -std=c++17 -O3 -cubin -arch=$t -Xptxas -v -diag-suppress 177 -DGEMMKIT_ONLY_ARCH=$archEnum" \
           "-DGEMMKIT_ONLY_ROW=$row native/gpu/kernel_tables.cu -o $out/cuda/$key.$t.cubin > $out/cuda/$key.$t.log 2>&1" \
           "|| echo FAILED >> $out/cuda/$key.$t.log" >> "$out/cuda/jobs"
    done
  done < "$out/rows.tsv"
  rm -f "$out"/cuda/*.log
  xargs -P "$jobs" -I{} sh -c '{}' < "$out/cuda/jobs"
  printf '%-8s %-44s %-6s %5s %9s %9s %s\n' target kernel layout regs smem-stat smem-dyn spill/stack
  while IFS=$'\t' read -r arch row name key threads shared first; do
    [ "$first" = first ] || continue
    for log in "$out"/cuda/"$key".sm_*.log; do
      [ -f "$log" ] || continue
      if grep -q FAILED "$log"; then
        echo "FAIL: $key did not compile:"; grep -v '^ptxas info' "$log" | head -30; failed=1; continue
      fi
      # ptxas prints per entry: "Compiling entry function 'X' for 'sm_80'", the stack/spill line and
      # "Used N registers, ... N bytes smem ...".
      while IFS='|' read -r fn target stack spillSt spillLd regs smem lmem; do
        [[ "$fn" == *splitKReduceKernel* ]] && continue
        status=ok
        if [ "$stack" != 0 ] || [ "$spillSt" != 0 ] || [ "$spillLd" != 0 ] || [ "$lmem" != 0 ]; then status=FAIL; failed=1; fi
        printf '%-8s %-44s %-6s %5s %9s %9s %s\n' "$target" "$key" "$(layout_of "$fn")" "$regs" "$smem" "$shared" \
          "$spillSt+$spillLd/$stack/lmem$lmem $status"
      done < <(awk '
        /Compiling entry function/ { if (fn != "") print fn "|" tg "|" st "|" ss "|" sl "|" rg "|" sm "|" lm;
                                     match($0, /function .[^ ]+. for/); fn = substr($0, RSTART + 10, RLENGTH - 15);
                                     match($0, /for .sm_[0-9a-z]+/); tg = substr($0, RSTART + 5, RLENGTH - 5);
                                     st = ss = sl = rg = sm = lm = 0 }
        /bytes stack frame/ { st = $1; ss = $5; sl = $9 }
        /Used [0-9]+ registers/ { match($0, /Used [0-9]+/); rg = substr($0, RSTART + 5, RLENGTH - 5);
                                  if (match($0, /[0-9]+ bytes smem/)) sm = substr($0, RSTART, RLENGTH - 11);
                                  if (match($0, /[0-9]+ bytes lmem/)) lm = substr($0, RSTART, RLENGTH - 11) }
        END { if (fn != "") print fn "|" tg "|" st "|" ss "|" sl "|" rg "|" sm "|" lm }' "$log")
    done
  done < "$out/rows.tsv"
  echo "== CUDA op kernels"
  for t in sm_80 sm_90a; do
    "$NVCC" -std=c++17 -O3 -cubin -arch=$t -Xptxas -v -diag-suppress 177 native/gpu/op_launchers.cu \
      -o "$out/cuda/ops.$t.cubin" > "$out/cuda/ops.$t.log" 2>&1 || echo FAILED >> "$out/cuda/ops.$t.log" &
  done
  wait
  printf '%-8s %-34s %5s %9s %s\n' target kernel regs smem spill/stack
  for t in sm_80 sm_90a; do
    log="$out/cuda/ops.$t.log"
    if grep -q FAILED "$log"; then
      echo "FAIL: the op kernels did not compile for $t:"; grep -v '^ptxas info' "$log" | head -30; failed=1; continue
    fi
    while IFS='|' read -r fn target stack spillSt spillLd regs smem lmem; do
      [[ "$fn" == *splitKReduceKernel* ]] && continue
      status=ok
      if [ "$stack" != 0 ] || [ "$spillSt" != 0 ] || [ "$spillLd" != 0 ] || [ "$lmem" != 0 ]; then status=FAIL; failed=1; fi
      printf '%-8s %-34s %5s %9s %s\n' "$target" "$(op_kernel_name "$fn")" "$regs" "$smem" "$spillSt+$spillLd/$stack/lmem$lmem $status"
    done < <(awk '
      /Compiling entry function/ { if (fn != "") print fn "|" tg "|" st "|" ss "|" sl "|" rg "|" sm "|" lm;
                                   match($0, /function .[^ ]+. for/); fn = substr($0, RSTART + 10, RLENGTH - 15);
                                   match($0, /for .sm_[0-9a-z]+/); tg = substr($0, RSTART + 5, RLENGTH - 5);
                                   st = ss = sl = rg = sm = lm = 0 }
      /bytes stack frame/ { st = $1; ss = $5; sl = $9 }
      /Used [0-9]+ registers/ { match($0, /Used [0-9]+/); rg = substr($0, RSTART + 5, RLENGTH - 5);
                                if (match($0, /[0-9]+ bytes smem/)) sm = substr($0, RSTART, RLENGTH - 11);
                                if (match($0, /[0-9]+ bytes lmem/)) lm = substr($0, RSTART, RLENGTH - 11) }
      END { if (fn != "") print fn "|" tg "|" st "|" ss "|" sl "|" rg "|" sm "|" lm }' "$log" | sort)
  done
  echo "CUDA compile check: $((SECONDS - start)) s"
fi

if [ "$what" = all ] || [ "$what" = hip ]; then
  hipStart=$SECONDS
  HIP_CLANG=${HIP_CLANG:-clang++-19}
  command -v "$HIP_CLANG" >/dev/null || { echo "check-compile: no $HIP_CLANG (set HIP_CLANG or apt-get install clang-19)" >&2; exit 1; }
  libs=()
  if [ -n "${HIP_DEVICE_LIBS:-}" ]; then
    libs=(--rocm-device-lib-path="$HIP_DEVICE_LIBS")
  elif [ -f /usr/lib/x86_64-linux-gnu/amdgcn/bitcode/ocml.bc ]; then
    libs=(--rocm-device-lib-path="$(native/hip/debian-device-libs.sh "$out/hip-device-libs")")
  fi
  rocm=${ROCM_PATH:-$( [ -d /opt/rocm ] && echo /opt/rocm || echo /usr )}
  echo "== HIP kernels with $("$HIP_CLANG" --version | head -1)"
  mkdir -p "$out/hip"
  : > "$out/hip/jobs"
  while IFS=$'\t' read -r arch row name key threads shared first; do
    [ "$first" = first ] || continue
    case "$arch" in gfx942) archEnum=Gfx942 ;; gfx90a) archEnum=Gfx90a ;; *) continue ;; esac
    echo "$HIP_CLANG -std=c++17 -O3 -x hip --offload-arch=$arch --rocm-path=$rocm ${libs[*]} --cuda-device-only -S" \
         "-DGEMMKIT_ONLY_ARCH=$archEnum -DGEMMKIT_ONLY_ROW=$row native/gpu/kernel_tables.cu -o $out/hip/$key.s" \
         "> $out/hip/$key.log 2>&1 || echo FAILED >> $out/hip/$key.log" >> "$out/hip/jobs"
  done < "$out/rows.tsv"
  rm -f "$out"/hip/*.log "$out"/hip/*.s
  xargs -P "$jobs" -I{} sh -c '{}' < "$out/hip/jobs"
  printf '%-8s %-44s %-6s %5s %5s %5s %7s %s\n' target kernel layout vgpr agpr sgpr lds scratch/spill
  while IFS=$'\t' read -r arch row name key threads shared first; do
    [ "$first" = first ] || continue
    case "$arch" in gfx942|gfx90a) ;; *) continue ;; esac
    if grep -q FAILED "$out/hip/$key.log"; then
      echo "FAIL: $key did not compile:"; head -30 "$out/hip/$key.log"; failed=1; continue
    fi
    # The amdhsa.kernels metadata lists, per kernel: .agpr_count, .group_segment_fixed_size (LDS),
    # .name, .private_segment_fixed_size (scratch), .sgpr_count, .sgpr_spill_count, .vgpr_count
    # (arch VGPRs + AGPRs on CDNA), .vgpr_spill_count.
    while IFS='|' read -r fn agpr lds scratch sgpr sgprSpill vgpr vgprSpill; do
      [[ "$fn" == *splitKReduceKernel* ]] && continue
      status=ok
      if [ "$scratch" != 0 ] || [ "$sgprSpill" != 0 ] || [ "$vgprSpill" != 0 ] || [ "$lds" -gt 65536 ]; then status=FAIL; failed=1; fi
      printf '%-8s %-44s %-6s %5s %5s %5s %7s %s\n' "$arch" "$key" "$(layout_of "$fn")" "$vgpr" "$agpr" "$sgpr" "$lds" \
        "$scratch/$vgprSpill+$sgprSpill $status"
    done < <(awk '
      /^amdhsa.kernels:/ { meta = 1 }
      meta && /^  - / { if (fn != "") print fn "|" ag "|" ld "|" sc "|" sg "|" sgs "|" vg "|" vgs; fn = ""; ag = ld = sc = sg = sgs = vg = vgs = 0 }
      meta && /\.agpr_count:/ { ag = $NF }
      meta && /\.group_segment_fixed_size:/ { ld = $NF }
      meta && /^    \.name:/ { fn = $NF }
      meta && /\.private_segment_fixed_size:/ { sc = $NF }
      meta && /\.sgpr_count:/ { sg = $NF }
      meta && /\.sgpr_spill_count:/ { sgs = $NF }
      meta && /\.vgpr_count:/ { vg = $NF }
      meta && /\.vgpr_spill_count:/ { vgs = $NF }
      END { if (fn != "") print fn "|" ag "|" ld "|" sc "|" sg "|" sgs "|" vg "|" vgs }' "$out/hip/$key.s")
    mfma=$(grep -c 'v_mfma' "$out/hip/$key.s" || true)
    if [[ "$key" == *.mfma.* ]] && [ "$mfma" = 0 ]; then echo "FAIL: $key has no MFMA instructions"; failed=1; fi
  done < "$out/rows.tsv"
  echo "== HIP op kernels"
  for arch in gfx942 gfx90a; do
    "$HIP_CLANG" -std=c++17 -O3 -x hip --offload-arch=$arch --rocm-path="$rocm" "${libs[@]}" --cuda-device-only -S \
      native/gpu/op_launchers.cu -o "$out/hip/ops.$arch.s" > "$out/hip/ops.$arch.log" 2>&1 || echo FAILED >> "$out/hip/ops.$arch.log" &
  done
  wait
  printf '%-8s %-34s %5s %5s %5s %7s %s\n' target kernel vgpr agpr sgpr lds scratch/spill
  for arch in gfx942 gfx90a; do
    if grep -q FAILED "$out/hip/ops.$arch.log"; then
      echo "FAIL: the op kernels did not compile for $arch:"; head -30 "$out/hip/ops.$arch.log"; failed=1; continue
    fi
    # A warning (an occupancy hint not met, say) fails the check too: the figures would not be the intended ones.
    if grep -q 'warning' "$out/hip/ops.$arch.log"; then echo "FAIL: warnings compiling the op kernels for $arch:"; cat "$out/hip/ops.$arch.log"; failed=1; fi
    while IFS='|' read -r fn agpr lds scratch sgpr sgprSpill vgpr vgprSpill; do
      [[ "$fn" == *splitKReduceKernel* ]] && continue
      status=ok
      if [ "$scratch" != 0 ] || [ "$sgprSpill" != 0 ] || [ "$vgprSpill" != 0 ] || [ "$lds" -gt 65536 ]; then status=FAIL; failed=1; fi
      printf '%-8s %-34s %5s %5s %5s %7s %s\n' "$arch" "$(op_kernel_name "$fn")" "$vgpr" "$agpr" "$sgpr" "$lds" \
        "$scratch/$vgprSpill+$sgprSpill $status"
    done < <(awk '
      /^amdhsa.kernels:/ { meta = 1 }
      meta && /^  - / { if (fn != "") print fn "|" ag "|" ld "|" sc "|" sg "|" sgs "|" vg "|" vgs; fn = ""; ag = ld = sc = sg = sgs = vg = vgs = 0 }
      meta && /\.agpr_count:/ { ag = $NF }
      meta && /\.group_segment_fixed_size:/ { ld = $NF }
      meta && /^    \.name:/ { fn = $NF }
      meta && /\.private_segment_fixed_size:/ { sc = $NF }
      meta && /\.sgpr_count:/ { sg = $NF }
      meta && /\.sgpr_spill_count:/ { sgs = $NF }
      meta && /\.vgpr_count:/ { vg = $NF }
      meta && /\.vgpr_spill_count:/ { vgs = $NF }
      END { if (fn != "") print fn "|" ag "|" ld "|" sc "|" sg "|" sgs "|" vg "|" vgs }' "$out/hip/ops.$arch.s" | sort)
  done
  echo "HIP compile check: $((SECONDS - hipStart)) s"
fi

if [ "$failed" != 0 ]; then
  echo "GPU compile check FAILED" >&2
  exit 1
fi
echo "GPU compile check passed ($((SECONDS - start)) s)"
