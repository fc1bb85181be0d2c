#!/usr/bin/env bash
# The GPU verification run (on the lent H100; see bench/RESULTS.md): builds everything for sm_90a,
# runs the whole ctest suite with MIXTAPE_REQUIRE_GPU=1 (so no GPU test may skip), then the
# benchmarks. Logs go to $OUT when set. Catch2 travels as .carry/catch2.tar (the machine is offline).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/mixtape_gpu}
mkdir -p "$out"
if [ ! -f /usr/include/catch2/catch.hpp ] && [ -f .carry/catch2.tar ]; then tar -C / -xf .carry/catch2.tar; fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/device.txt"
nvcc --version | tail -1 | tee -a "$out/device.txt"
jobs=$(nproc)
cmake --preset default -B build-gpu >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
start=$(date +%s)
# Keep going past a failing target so one broken test does not hide the rest; report and fail at the end.
build_ok=1
cmake --build build-gpu -j "$jobs" -- -k 0 >"$out/build.log" 2>&1 || { build_ok=0; grep -E 'error|FAILED' "$out/build.log" | head -40; }
echo "build: $(( $(date +%s) - start )) s"
MIXTAPE_REQUIRE_GPU=1 ctest --test-dir build-gpu -j 4 --output-on-failure --timeout 900 >"$out/ctest.log" 2>&1
rc=$?
grep -E 'Test +#|tests passed|tests failed|Total Test' "$out/ctest.log" | tail -60
for b in build-gpu/bench/bench_*; do
  [ -x "$b" ] || continue
  echo "== $b"
  "$b" 2>&1 | tee -a "$out/bench.jsonl"
done
[ "$build_ok" = 1 ] || { echo "build had failures (see build.log)"; rc=1; }
exit $rc
