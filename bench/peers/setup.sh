#!/usr/bin/env bash
# Sets up the peer libraries that `npm run bench` and `npm run bench:peers` compare gemmkit with, on
# Debian/Ubuntu x86-64, and builds the small peer programs and the ceilings microbenchmark into
# build/peers/ (ignored by git):
#   OpenBLAS  Debian's python3-numpy on libopenblas0 (the libblas.so.3 alternative is set to OpenBLAS)
#   BLIS      libblis-dev (0.9 on Debian 12)      -> build/peers/blis_runner
#   oneDNN    libdnnl-dev (2.6 on Debian 12)      -> build/peers/onednn_runner
#   ceilings  g++ only                            -> build/peers/ceilings
# Idempotent: with everything in place it installs nothing, rebuilds nothing and takes about a second.
# Usage: bench/peers/setup.sh [--check]   (--check: change nothing; say what is missing, exit 1 if any)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/build/peers"
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

if [ "$(uname -m)" != x86_64 ] || ! command -v dpkg-query >/dev/null; then
  echo "bench/peers/setup.sh: the peers are set up on Debian-family x86-64 only" >&2
  exit 1
fi
multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
openblas_dir="/usr/lib/$multiarch/openblas-pthread"
packages=(python3-numpy libopenblas0 libopenblas0-pthread libblis-dev libdnnl-dev)
problems=()

# ---- packages
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ $check_only = 1 ]; then
    problems+=("packages not installed: ${missing[*]}")
  else
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    echo "installing ${missing[*]}"
    $sudo apt-get -o DPkg::Lock::Timeout=900 update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

# ---- numpy's BLAS: the libblas.so.3 / liblapack.so.3 alternatives must be OpenBLAS, not BLIS (which
# libblis-dev also registers) or the reference BLAS.
for lib in libblas.so.3 liblapack.so.3; do
  name="$lib-$multiarch"
  want="$openblas_dir/$lib"
  have="$(update-alternatives --query "$name" 2>/dev/null | sed -n 's/^Value: //p')"
  if [ "$have" != "$want" ]; then
    if [ $check_only = 1 ] || [ ! -e "$want" ]; then
      problems+=("$name points to '${have:-nothing}', not $want")
    else
      sudo=""
      if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
      $sudo update-alternatives --set "$name" "$want"
    fi
  fi
done

# ---- programs: rebuilt when a source is newer than the binary
needs_build() {  # needs_build BINARY SOURCE...
  local bin="$1"; shift
  [ -x "$bin" ] || return 0
  for s in "$@"; do [ "$s" -nt "$bin" ] && return 0; done
  return 1
}
cxx="${CXX:-g++}"
common=("$root/bench/peers/runner_common.h" "$root/native/core/dtype.h")
if [ $check_only = 0 ]; then
  mkdir -p "$out"
  if needs_build "$out/blis_runner" "$root/bench/peers/blis_runner.cpp" "${common[@]}"; then
    echo "building build/peers/blis_runner"
    "$cxx" -std=c++17 -O2 -Wall -o "$out/blis_runner" "$root/bench/peers/blis_runner.cpp" -lblis -lm
  fi
  if needs_build "$out/onednn_runner" "$root/bench/peers/onednn_runner.cpp" "${common[@]}"; then
    echo "building build/peers/onednn_runner"
    "$cxx" -std=c++17 -O2 -Wall -o "$out/onednn_runner" "$root/bench/peers/onednn_runner.cpp" -fopenmp -ldnnl
  fi
  bash "$root/bench/ceilings/build.sh" "$out"
fi
for bin in blis_runner onednn_runner ceilings; do
  [ -x "$out/$bin" ] || problems+=("build/peers/$bin is not built")
done

# ---- what each peer detects (fast: --info times nothing)
if [ ${#problems[@]} -eq 0 ]; then
  {
    /usr/bin/python3 "$root/bench/peers/openblas_runner.py" --info
    /usr/bin/python3 "$root/bench/peers/openblas_runner.py" --info --coretype=SkylakeX
    "$out/blis_runner" --info --arch=skx
    "$out/blis_runner" --info --arch=detected
    "$out/onednn_runner" --info
  } | sed -E 's/^.*"peer": ?"([^"]*)", ?"detail": ?"([^"]*)".*$/  \1: \2/'
  if ! /usr/bin/python3 "$root/bench/peers/openblas_runner.py" --info | grep -q '"OpenBLAS 0\.3\.21 '; then
    echo "note: numpy's OpenBLAS is not 0.3.21 (the version these benches were written against)" >&2
  fi
  echo "peers ready in build/peers"
else
  printf 'peers not ready:\n' >&2
  printf '  %s\n' "${problems[@]}" >&2
  printf 'run bench/peers/setup.sh (as root or with sudo) to set them up\n' >&2
  exit 1
fi
