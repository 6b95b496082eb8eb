#!/usr/bin/env bash
# Sets up the llama.cpp peer of `npm run bench:models`: node-llama-cpp with its prebuilt CPU binary
# (@node-llama-cpp/linux-x64), versions pinned by bench/peers/node-llama-cpp/package-lock.json, installed
# into build/peers/node-llama-cpp/ (ignored by git). It is no dependency of gemmkit: nothing under src/
# loads it, and `npm install` in the repository does not fetch it.
#   NODE_LLAMA_CPP_SKIP_DOWNLOAD=true  node-llama-cpp neither downloads nor builds llama.cpp
#   --omit=optional                    none of its GPU binaries (CUDA, Vulkan: hundreds of MB)
#   --ignore-scripts                   its postinstall (which would only try that download) does not run
# Idempotent: with the pinned versions in place it does nothing. Needs the npm registry, Linux x86-64.
# Usage: bench/peers/setup-llama-cpp.sh [--check]   (--check: change nothing; exit 1 if not set up)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/bench/peers/node-llama-cpp"
dest="$root/build/peers/node-llama-cpp"
stamp="$dest/.installed-from-lock"

if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "bench/peers/setup-llama-cpp.sh: the llama.cpp peer is set up on Linux x86-64 only" >&2
  exit 1
fi
if [ -f "$stamp" ] && cmp -s "$stamp" "$src/package-lock.json" && [ -f "$dest/node_modules/node-llama-cpp/package.json" ]; then
  echo "llama.cpp peer ready: node-llama-cpp $(node -p "require('$dest/node_modules/node-llama-cpp/package.json').version") in build/peers/node-llama-cpp"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "llama.cpp peer not set up: run bench/peers/setup-llama-cpp.sh" >&2
  exit 1
fi
echo "installing node-llama-cpp (pinned, prebuilt CPU binary only) into build/peers/node-llama-cpp"
rm -rf "$dest"
mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
# npm install (not npm ci, which refuses a lock whose other-platform optional packages it cannot place)
# installs the lock's versions; --no-save leaves the lock as committed.
(cd "$dest" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --ignore-scripts --no-save --no-audit --no-fund --loglevel=error)
cp "$src/package-lock.json" "$stamp"
echo "llama.cpp peer ready: node-llama-cpp $(node -p "require('$dest/node_modules/node-llama-cpp/package.json').version") in build/peers/node-llama-cpp"
