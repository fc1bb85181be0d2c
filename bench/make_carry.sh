#!/usr/bin/env bash
# make_carry.sh: fills the git-ignored .carry/ that device runs take along (`carry: [".carry"]`):
# the PyTorch peer from ../shared/reference and this machine's Catch2 headers (the device machine
# has no network to install them). Run from the repository root after tools/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .carry
cp ../shared/reference/torch_gpt.py .carry/torch_gpt.py
[ -f /usr/include/catch2/catch.hpp ] || { echo "make_carry: no /usr/include/catch2 (run tools/setup.sh)" >&2; exit 1; }
tar -C / -cf .carry/catch2.tar usr/include/catch2 $(cd / && ls -d usr/lib/cmake/Catch2 2>/dev/null || true)
ls -la .carry
