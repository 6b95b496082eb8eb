#!/usr/bin/env bash
# Packs what the device check scripts need to run gemmkit's TypeScript on a GPU machine that has no Node
# (nvcc or ROCm, cmake, ninja and PyTorch, but no node or npm) into one .tar.xz, made on a machine that has
# them (this checkout, after `npm install`):
#   build/node-carry/bin/node                 this machine's node binary
#   build/node-carry/include/node/            its headers (/usr/include/node, or <prefix>/include/node)
#   build/node-carry/include/node-addon-api/  node-addon-api's headers (napi.h, napi-inl.h, ...)
#   dist/, package.json                       the built TypeScript (npm run build:ts first when stale)
#   node_modules/<runtime dependencies>       `npm ls --omit=dev`: what dist/ imports at run time
#   build/Release/gemmkit.node                the CPU addon (it needs this machine's glibc or newer; a GPU
#                                             model does not use it, so the scripts go on when it fails to load)
# Extract it at the repository root of the GPU machine (the device scripts do when `node` is not on PATH):
# node runs from build/node-carry/bin, and the GPU addon is built with plain cmake, CMAKE_JS_INC pointing at
# the two include folders (bench/gpu/model-check.sh build_addon).
#   usage: bench/gpu/carry-node.sh [OUT.tar.xz]   (default build/carry/gemmkit-node.tar.xz; at most 60 MiB)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/carry/gemmkit-node.tar.xz}
limit=$((60 * 1024 * 1024))
cd "$root"

node_bin=$(readlink -f "$(command -v node)") || { echo "carry-node: no node on PATH" >&2; exit 1; }
include=""
for d in "$(dirname "$node_bin")/../include/node" /usr/include/node /usr/local/include/node; do
  if [ -f "$d/node_api.h" ]; then include=$(cd "$d" && pwd); break; fi
done
[ -n "$include" ] || { echo "carry-node: no Node headers (node_api.h) next to $node_bin or in /usr/include/node" >&2; exit 1; }
[ -f node_modules/node-addon-api/napi.h ] || { echo "carry-node: node_modules/node-addon-api is missing; run npm install" >&2; exit 1; }
[ -f build/Release/gemmkit.node ] || { echo "carry-node: build/Release/gemmkit.node is missing; run npm install" >&2; exit 1; }
# dist/ must be what src/ says now.
npx --no-install tsc -p tsconfig.json

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/build/node-carry/bin" "$stage/build/node-carry/include/node-addon-api" "$stage/build/Release" "$stage/node_modules"
cp "$node_bin" "$stage/build/node-carry/bin/node"
cp -r "$include" "$stage/build/node-carry/include/node"
cp node_modules/node-addon-api/*.h "$stage/build/node-carry/include/node-addon-api/"
cp build/Release/gemmkit.node "$stage/build/Release/"
cp -r dist package.json "$stage/"
# The runtime dependencies, nested ones at their own paths.
npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | while read -r dir; do
  rel=${dir#"$root"/}
  [ -d "$stage/$rel" ] && continue
  mkdir -p "$stage/$(dirname "$rel")"
  cp -r "$dir" "$stage/$rel"
done
rm -rf "$stage/node_modules/.bin"
cat > "$stage/build/node-carry/README" <<EOF
gemmkit node carry, made $(date -u +%Y-%m-%dT%H:%MZ) from $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') with node $("$node_bin" --version)
on $(uname -m), glibc $(ldd --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+$' || echo '?'). Made by bench/gpu/carry-node.sh.
EOF

mkdir -p "$(dirname "$out")"
tar -C "$stage" -cf - . | xz -9 -T0 > "$out.tmp"
size=$(stat -c %s "$out.tmp")
if [ "$size" -gt "$limit" ]; then
  rm -f "$out.tmp"
  echo "carry-node: the archive is $((size / 1024 / 1024)) MiB, over the 60 MiB limit" >&2
  exit 1
fi
mv "$out.tmp" "$out"
echo "carry-node: $out ($((size / 1024 / 1024)) MiB): node $("$node_bin" --version), dist/, $(ls "$stage/node_modules" | wc -l) packages, the CPU addon"
