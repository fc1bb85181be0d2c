#!/usr/bin/env bash
# gpu_run.sh: the issue-5 run on the lent H100, in phases that fit the device tool's 10-minute calls
# (the machine stays warm between calls made within its idle window, keeping build-gpu):
#   bench/gpu_run.sh build     configure and build the CUDA tests, gpt_bench (4 policies), mlp_bench
#   bench/gpu_run.sh test      ctest -L cuda with MIXTAPE_REQUIRE_GPU=1 (no GPU test may skip)
#   bench/gpu_run.sh bench     the attention kernels alone (bench_attention), then small GPT, GPT-2
#                              small and the MLP, ours and the peer's eager run once
#   bench/gpu_run.sh profile   bench/kernel_profile.sh on GPT-2 small bf16-mixed
#   bench/gpu_run.sh compare [ROUNDS] [CASE...]   bench/compare.sh
#   bench/gpu_run.sh patch NAME  apply bench/patches/NAME.patch, rebuild, run the cuda tests, the
#                              attention kernels and GPT-2 bf16-mixed (ours), then take the patch out
#   bench/gpu_run.sh ab NAME...  HEAD's gpt_bench, bench_attention and bench_bandwidth into
#                              /tmp/base_build beside the full build with bench/patches/NAME.patch applied,
#                              each in turn (left applied in this call's copy), then ctest -L cuda on the
#                              patched build (~560 s; AB_TESTS=0 stops after the builds, for `test` next)
#   bench/gpu_run.sh ab-bench  (next call, machine still warm) bench_attention, bench_bandwidth and
#                              gpt_bench for each of $PRECISIONS, HEAD against the patched build,
#                              interleaved, twice; CE_ROWS="4096 8192" adds the patched build's GPT-2
#                              bf16-mixed at those --ce-chunk-rows; PROFILE=1 adds both sides' kernel
#                              profiles of bf16-mixed and the patched build's of $PROFILE_PRECISIONS
#                              (PROFILE=only: the profiles without the timings)
#   bench/gpu_run.sh peer      the peer's torch.compile run for each of $PRECISIONS; PEER_PROFILE="P..."
#                              adds the peer's compiled step kernel by kernel (kernel_profile.sh)
# POLICIES="bf16_mixed;f32_true" builds only those policies (gpt_bench --precision tf32 is f32_true).
# PATCHES="NAME..." applies those bench/patches first, in any phase but ab (whose base is the tree
# as it comes): each device call gets a fresh copy of the tree, so a later call that rebuilds the
# patched tree names them again.
# The peer script travels as .carry/torch_gpt.py, Catch2 as .carry/catch2.tar. Output under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
apply_patch() {  # applies bench/patches/$1.patch unless it is applied already
  git apply --reverse --check "bench/patches/$1.patch" 2>/dev/null || git apply "bench/patches/$1.patch"
}
if [ "${1:-}" != ab ]; then
  for n in ${PATCHES:-}; do apply_patch "$n" || exit 1; done
fi
out=${OUT:-/tmp/mixtape_gpu}
mkdir -p "$out"
if [ ! -f /usr/include/catch2/catch.hpp ] && [ -f .carry/catch2.tar ]; then tar -C / -xf .carry/catch2.tar; fi
peer=.carry/torch_gpt.py
policies=${POLICIES:-"bf16_mixed;f16_mixed;bf16_true;f32_true"}  # POLICIES=... builds fewer
ensure_build() {
  if [ ! -x build-gpu/bench/gpt_bench ] || [ "${1:-}" = force ]; then
    cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMIXTAPE_EXAMPLE_POLICIES="$policies" \
      >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
    local start=$(date +%s)
    local targets="gpt_bench mlp_bench bench_attention bench_bandwidth"
    [ "${BENCH_ONLY:-0}" = 1 ] || targets="$targets test_autograd_cuda test_backends_gpu_host_first test_backends_gpu_cuda_first \
      test_blas_cuda test_core_cuda test_kernels_cuda test_kernels_attention_cuda test_nn_cuda test_nn_gpt_cuda \
      test_numeric_cuda test_optim_cuda test_kernels_model_cuda"
    cmake --build build-gpu -j "$(nproc)" --target $targets -- -k 0 >"$out/build.log" 2>&1 ||
      { grep -E 'error|FAILED' "$out/build.log" | head -40; }
    echo "build: $(( $(date +%s) - start )) s"
  fi
}
# ctest -L cuda on build-gpu (no GPU test may skip) into LOG; prints the summary, and the failures.
run_cuda_tests() {
  MIXTAPE_REQUIRE_GPU=1 ctest --test-dir build-gpu -L cuda -j 4 --output-on-failure --timeout 600 >"$1" 2>&1
  local rc=$?
  grep -E 'Test +#|tests passed|tests failed|Total Test' "$1" | tail -20
  [ $rc = 0 ] || grep -B5 -A25 -E "FAILED|failed" "$1" | head -120
  return $rc
}
S="--vocab 256 --ctx 128 --d 128 --layers 2 --heads 4 --batch 16"
case ${1:-} in
  build) nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; ensure_build force ;;
  test)
    ensure_build
    run_cuda_tests "$out/ctest.log"
    exit $? ;;
  bench)
    ensure_build
    echo "== attention kernels (GPT-2 small's shape)"; build-gpu/bench/bench_attention
    for p in bf16-mixed; do
      echo "== small $p"; build-gpu/bench/gpt_bench $S --precision $p
      python3 $peer gpt $S --precision $p
    done
    for p in ${PRECISIONS:-bf16-mixed}; do
      echo "== gpt2 $p"; build-gpu/bench/gpt_bench --precision $p
      [ "${PEER:-1}" = 1 ] && python3 $peer gpt --precision $p
    done
    echo "== mlp"; build-gpu/bench/mlp_bench; [ "${PEER:-1}" = 1 ] && python3 $peer mlp ;;
  profile)
    ensure_build
    CSV=$out/kernels.csv bash bench/kernel_profile.sh build-gpu/bench/gpt_bench "${@:2}" | tee "$out/profile.md" | head -45 ;;
  compare)
    ensure_build
    OUT=$out/compare.jsonl bash bench/compare.sh build-gpu "$peer" "${2:-3}" "${@:3}" ;;
  patch)
    p=bench/patches/${2:?usage: gpu_run.sh patch NAME}.patch
    git apply "$p" || exit 1
    trap 'git apply -R "$p"' EXIT
    ensure_build force
    run_cuda_tests "$out/ctest_patch.log"
    rc=$?
    build-gpu/bench/bench_attention
    build-gpu/bench/gpt_bench --precision bf16-mixed
    exit $rc ;;
  ab)
    [ -n "${2:-}" ] || { echo "usage: gpu_run.sh ab NAME..." >&2; exit 2; }
    rm -rf /tmp/base_src && mkdir -p /tmp/base_src &&
      tar --exclude=./build --exclude=./build-gpu --exclude=./.carry -cf - . | tar -xf - -C /tmp/base_src
    ( cmake -S /tmp/base_src -B /tmp/base_build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMIXTAPE_EXAMPLE_POLICIES="$policies" \
        >"$out/configure_base.log" 2>&1 &&
      cmake --build /tmp/base_build -j 3 --target bench_attention bench_bandwidth gpt_bench >"$out/build_base.log" 2>&1
      echo "base build rc=$?" ) &
    for n in "${@:2}"; do apply_patch "$n" || exit 1; done
    ensure_build force
    wait
    [ "${AB_TESTS:-1}" = 1 ] || exit 0
    run_cuda_tests "$out/ctest.log"
    exit $? ;;
  ab-bench)
    if [ "${PROFILE:-0}" != only ]; then
      for d in /tmp/base_build build-gpu; do
        [ -x "$d/bench/bench_bandwidth" ] && { echo "== bandwidth $d"; "$d/bench/bench_bandwidth" 20; }
      done
      for r in 1 2; do
        for d in /tmp/base_build build-gpu; do echo "== attention $d"; "$d/bench/bench_attention"; done
        for p in ${PRECISIONS:-bf16-mixed}; do
          for d in /tmp/base_build build-gpu; do echo "== gpt2 $p $d"; "$d/bench/gpt_bench" --precision "$p" | tail -n 1; done
        done
      done
      for rows in ${CE_ROWS:-}; do
        echo "== gpt2 bf16-mixed build-gpu --ce-chunk-rows $rows"
        build-gpu/bench/gpt_bench --precision bf16-mixed --ce-chunk-rows "$rows" | tail -n 1
      done
    fi
    # PROFILE=1 (after the timings) or PROFILE=only: both sides' kernels of one bf16-mixed step, for
    # patches that share a run; then the patched build's other precisions
    if [ "${PROFILE:-0}" != 0 ]; then
      for d in /tmp/base_build build-gpu; do
        n=$([ "$d" = build-gpu ] && echo patched || echo base)
        bash bench/kernel_profile.sh "$d/bench/gpt_bench" --precision bf16-mixed > "$out/profile_$n.md" 2>&1
        echo "== profile $n"; head -30 "$out/profile_$n.md"
      done
      for p in ${PROFILE_PRECISIONS:-}; do
        bash bench/kernel_profile.sh build-gpu/bench/gpt_bench --precision "$p" > "$out/profile_patched_$p.md" 2>&1
        echo "== profile patched $p"; head -30 "$out/profile_patched_$p.md"
      done
    fi ;;
  peer)
    for p in ${PRECISIONS-bf16-mixed}; do  # PRECISIONS="" runs none (PEER_PROFILE alone)
      echo "== peer gpt2 $p torch.compile"
      python3 $peer gpt --precision "$p" --compile 2>"$out/peer_$p.err" | tail -n 1 | tee -a "$out/peer.jsonl"
    done
    # PEER_PROFILE="bf16-true": the peer's compiled step kernel by kernel (which attention, which GEMMs)
    for p in ${PEER_PROFILE:-}; do
      bash bench/kernel_profile.sh python3 $peer gpt --precision "$p" --compile > "$out/profile_peer_$p.md" 2>&1
      echo "== profile peer $p"; head -40 "$out/profile_peer_$p.md"
    done ;;
  *) echo "usage: gpu_run.sh build|test|bench|profile|compare|patch|ab|ab-bench|peer" >&2; exit 2 ;;
esac
