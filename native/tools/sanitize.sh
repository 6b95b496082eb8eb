#!/usr/bin/env bash
# Builds the CPU addon with clang's AddressSanitizer and UndefinedBehaviorSanitizer and runs the vitest
# suite against it (GEMMKIT_CPU_ADDON points src/native.ts at that build; the ASan runtime is preloaded
# into node, which is not instrumented itself), then a short soak (test/soak/soak.ts). Leak checking is
# on in every process that exits by itself: the soak, the tests' child processes and vitest's main
# process (vitest's workers are killed at the end, so they are not leak checked; the soak covers the same
# paths). native/tools/lsan.supp suppresses only allocations made by Node and V8 themselves. Every report
# goes to a file under build/sanitize/reports, and the script fails when there is any (or when a run
# fails).
#
#   native/tools/sanitize.sh            build, then run the suite (less the files in SKIP_FILES below)
#   native/tools/sanitize.sh build      build only
#   native/tools/sanitize.sh test/lifetime.test.ts ...   build, then run these test files
#
# Needs clang (CLANG=clang++-19 by default; Debian: apt-get install clang-19 libclang-rt-19-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."

CLANG="${CLANG:-clang++-19}"
OUT=build/sanitize
command -v "$CLANG" >/dev/null || { echo "sanitize.sh: $CLANG not found (Debian: apt-get install clang-19 libclang-rt-19-dev)" >&2; exit 2; }
RUNTIME="$("$CLANG" -print-file-name=libclang_rt.asan-x86_64.so)"
[ -f "$RUNTIME" ] || { echo "sanitize.sh: no ASan runtime at $RUNTIME (Debian: apt-get install libclang-rt-19-dev)" >&2; exit 2; }

# The addon's sources and Node-API headers, as binding.gyp and node-gyp have them.
mapfile -t SOURCES < <(node -e "const g = JSON.parse(require('fs').readFileSync('binding.gyp', 'utf8')); console.log(g.targets[0].sources.join('\n'))")
NODE_INCLUDE="$(node -p "const p = require('path'); const d = p.resolve(process.execPath, '../../include/node'); require('fs').existsSync(p.join(d, 'node_api.h')) ? d : require('node-api-headers').include_dir")"
ADDON_API_INCLUDE="$(node -p "require('node-addon-api').include_dir")"

mkdir -p "$OUT/obj"
FLAGS=(-std=c++17 -O2 -g -fno-omit-frame-pointer -Wno-unknown-warning-option -fPIC -fexceptions -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_GYP_MODULE_NAME=gemmkit -I"$NODE_INCLUDE" -I"$ADDON_API_INCLUDE")
echo "sanitize.sh: building $OUT/gemmkit.node with $CLANG (ASan + UBSan, ${#SOURCES[@]} sources)"
OBJECTS=()
pids=()
for src in "${SOURCES[@]}"; do
  obj="$OUT/obj/$(basename "${src%.cpp}").o"
  OBJECTS+=("$obj")
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find native -name '*.h' -newer "$obj" -print -quit)" ]; then
    "$CLANG" "${FLAGS[@]}" -c "$src" -o "$obj" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$(nproc)" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
"$CLANG" -shared -fsanitize=address,undefined -shared-libsan -o "$OUT/gemmkit.node" "${OBJECTS[@]}" -ldl -lpthread

[ "${1:-}" = build ] && exit 0

# Programs other than node that the tests run (a compiler and linker building a test library) must not
# inherit the preloaded runtime: wrappers first on PATH drop it before running the real tool.
mkdir -p "$OUT/bin"
for tool in g++ gcc c++ cc clang++ ld as make cmake; do
  real="$(command -v "$tool" || true)"
  [ -n "$real" ] || continue
  printf '#!/bin/sh\nunset LD_PRELOAD\nexec %s "$@"\n' "$real" > "$OUT/bin/$tool"
  chmod +x "$OUT/bin/$tool"
done
export PATH="$PWD/$OUT/bin:$PATH"

# Reports go to files (vitest's workers and the tests' child processes all inherit these settings). A
# 32 MiB quarantine (the default is 256) keeps freed memory out of reuse long enough to catch a use after
# free without inflating RSS past what the memory-bound tests allow.
rm -rf "$OUT/reports" && mkdir -p "$OUT/reports"
REPORTS="$PWD/$OUT/reports"
export GEMMKIT_CPU_ADDON="$PWD/$OUT/gemmkit.node"
export LD_PRELOAD="$RUNTIME"
export ASAN_OPTIONS="log_path=$REPORTS/asan:detect_leaks=1:malloc_context_size=3:quarantine_size_mb=32:handle_segv=0:allow_user_segv_handler=1:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$PWD/native/tools/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="log_path=$REPORTS/ubsan:print_stacktrace=1:halt_on_error=1"
# Instrumented kernels run about 3.5x slower, so a test that must finish a shape's tuning within a fixed
# time budget cannot; it is the one test left out here (it checks the tuner, not memory).
SLOW='the numerical check rejects a wrong candidate a relative error of 1e-3 in one element'
# Files whose native calls are not the sanitized addon's, or are the same calls other files make in
# process, only through spawned processes that cost minutes under ASan: the GPU emulator's suites (the
# emulator addons are separate builds), the tuner CLI's and the server's process lifecycles.
SKIP_FILES=(test/emu.test.ts test/models_emu.test.ts test/tuner_cli.test.ts test/serve_lifecycle.test.ts)
EXCLUDES=()
if [ $# = 0 ]; then for f in "${SKIP_FILES[@]}"; do EXCLUDES+=(--exclude "$f"); done; fi
echo "sanitize.sh: running vitest ${*:-(the suite less ${SKIP_FILES[*]})} against it (leaving out: $SLOW)"
rc=0
timeout 900 npx vitest run -t "^(?!${SLOW//./\.}).*" "${EXCLUDES[@]}" "$@" || rc=$?
if [ $# = 0 ]; then
  echo "sanitize.sh: a short soak, leak checked at its exit"
  timeout 300 node --expose-gc --import tsx test/soak/soak.ts --workers 2 --small 4000 --large 40 --prepacks 200 --bound-mb 512 || rc=$?
fi
unset LD_PRELOAD

# A report is a finding when it has an error (ASan, LSan) or a runtime error (UBSan); LSan also writes
# bare warnings ("False leaks are possible"), shown but not counted.
found=0
for f in "$REPORTS"/*; do
  [ -s "$f" ] || continue
  echo "=== sanitizer report $f"
  cat "$f"
  if grep -qE "ERROR: |runtime error: " "$f"; then found=1; fi
done
if [ "$found" = 1 ]; then
  echo "sanitize.sh: the sanitizers reported problems (above)" >&2
  exit 1
fi
if [ "$rc" != 0 ]; then
  echo "sanitize.sh: the test suite failed under the sanitizers (exit $rc)" >&2
  exit "$rc"
fi
echo "sanitize.sh: no sanitizer reports"
