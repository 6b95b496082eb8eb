#!/usr/bin/env bash
# Builds the ceilings microbenchmark into build/peers/ (or $1). Needs only g++; each kernel carries its
# own target attribute, so the binary runs on any x86-64 and skips what the CPU lacks. Quick no-op when
# the binary is newer than its source.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/build/peers}"
src="$root/bench/ceilings/ceilings.cpp"
mkdir -p "$out"
if [ ! -x "$out/ceilings" ] || [ "$src" -nt "$out/ceilings" ]; then
  "${CXX:-g++}" -std=c++17 -O2 -pthread -Wall -Wextra -o "$out/ceilings" "$src"
fi
