#!/usr/bin/env bash
# Makes a ROCm device-library folder that clang's HIP driver accepts for gfx942 and gfx90a on Debian 12
# (rocm-device-libs 5.2): links to Debian's bitcode, plus the gfx942 ISA-version library that ROCm 5.2
# lacks, made from the gfx940 one (the two differ only in the ISA version constant, 9400 -> 9402).
# Prints the folder. A real ROCm install (/opt/rocm) does not need this.
#   usage: native/hip/debian-device-libs.sh OUTDIR
set -euo pipefail
out=${1:?usage: debian-device-libs.sh OUTDIR}
src=${ROCM_BITCODE_DIR:-/usr/lib/x86_64-linux-gnu/amdgcn/bitcode}
llvm=${LLVM_BIN_DIR:-/usr/lib/llvm-19/bin}
[ -f "$src/ocml.bc" ] || { echo "debian-device-libs: no ROCm bitcode in $src (apt-get install rocm-device-libs)" >&2; exit 1; }
mkdir -p "$out"
for f in "$src"/*.bc; do ln -sf "$f" "$out/"; done
if [ ! -e "$out/oclc_isa_version_942.bc" ]; then
  [ -f "$src/oclc_isa_version_940.bc" ] || { echo "debian-device-libs: $src has no gfx940 library to derive gfx942's from" >&2; exit 1; }
  "$llvm/llvm-dis" "$src/oclc_isa_version_940.bc" -o - | sed 's/i32 9400,/i32 9402,/' | "$llvm/llvm-as" -o "$out/oclc_isa_version_942.bc.tmp"
  mv "$out/oclc_isa_version_942.bc.tmp" "$out/oclc_isa_version_942.bc"
fi
echo "$out"
