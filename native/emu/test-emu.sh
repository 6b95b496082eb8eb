#!/usr/bin/env bash
# npm run test:emu: every config of every GPU table (sm80, sm90a on emu-cuda; gfx942, gfx90a on
# emu-hip) and every op kernel run by the CPU emulator against the float64 reference, after the
# emulator's self-test:
#   gemmkit-emu-<flavour>-check --edges   M, N, K at 1, tile - 1, tile + 1 (an orthogonal array of 9)
#                                         and 77x45x129, with every transpose, epilogue and output
#                                         dtype, batches; split-K through the .sk configs
#   gemmkit-emu-<flavour>-check           the full plan gemmkit-gpu-check runs on a real GPU
#   gemmkit-emu-<flavour>-ops-check       the ops beyond GEMM (gemmkit-gpu-ops-check's full plan)
# The two flavours run side by side, one OS thread each. Exit status: non-zero on any failure; the
# failing config, problem and coordinates are printed.
#   env: GEMMKIT_EMU_BUILD (default build-emu), made by npm run build:emu
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${GEMMKIT_EMU_BUILD:-build-emu}
for f in cuda hip; do
  for t in selftest check ops-check; do
    if [ ! -x "$build/gemmkit-emu-$f-$t" ]; then
      echo "test:emu: no $build/gemmkit-emu-$f-$t; build the emulator first with npm run build:emu" >&2
      exit 2
    fi
  done
done
logs=$(mktemp -d)
start=$SECONDS
run_flavour() {
  local f=$1 rc=0
  {
    "$build/gemmkit-emu-$f-selftest" || rc=1
    "$build/gemmkit-emu-$f-check" --edges || rc=1
    "$build/gemmkit-emu-$f-check" || rc=1
    "$build/gemmkit-emu-$f-ops-check" || rc=1
  } > "$logs/$f.log" 2>&1
  echo $rc > "$logs/$f.rc"
}
GEMMKIT_EMU_THREADS=1 run_flavour cuda &
GEMMKIT_EMU_THREADS=1 run_flavour hip &
wait
status=0
for f in cuda hip; do
  echo "=== emu-$f"
  grep -E "^(FAIL|     worst|table |[0-9]+ (tests|configs|checks)|gemmkit)" "$logs/$f.log"
  [ "$(cat "$logs/$f.rc")" = 0 ] || status=1
done
echo "test:emu: $([ $status = 0 ] && echo passed || echo FAILED) in $((SECONDS - start)) s (full logs in $logs)"
exit $status
