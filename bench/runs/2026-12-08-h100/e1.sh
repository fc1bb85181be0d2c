#!/usr/bin/env bash
# one call: HEAD (base) against HEAD + the attention patch + the LayerNorm chunk patch: the touched
# CUDA test units, the A/B timings, the peer (torch.compile); every step bounded by the time left.
set -uo pipefail
s=$(date +%s); el() { echo $(( $(date +%s)-s )); }
left() { echo $(( ${1:-575} - $(el) )); }
[ -f /usr/include/catch2/catch.hpp ] || tar -C / -xf .carry/catch2.tar
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
pol="bf16_mixed;f32_true"
rm -rf /tmp/base_src && mkdir -p /tmp/base_src && tar --exclude=./build --exclude=./build-gpu --exclude=./.carry -cf - . | tar -xf - -C /tmp/base_src
( cmake -S /tmp/base_src -B /tmp/base_build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMIXTAPE_EXAMPLE_POLICIES="$pol" > $OUT/cfg_base.log 2>&1 &&
  cmake --build /tmp/base_build -j 5 --target bench_attention gpt_bench > $OUT/build_base.log 2>&1; echo "base built rc=$? t=$(el)" ) &
for n in attention-tf32-saved-ds-forward layernorm-backward-chunks cross-entropy-staged; do git apply bench/patches/$n.patch && echo "applied $n"; done
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMIXTAPE_EXAMPLE_POLICIES="$pol" > $OUT/cfg.log 2>&1
units="test_kernels_attention_cuda test_kernels_model_cuda test_nn_gpt_cuda test_nn_cuda test_autograd_cuda"
cmake --build build-gpu -j 12 --target gpt_bench bench_attention $units -- -k 0 > $OUT/build.log 2>&1; echo "patched built rc=$? t=$(el)"
grep -E "error|FAILED" $OUT/build.log | head -20
wait
MIXTAPE_REQUIRE_GPU=1 timeout 150 ctest --test-dir build-gpu -R "^(${units// /|})\$" -j 5 --output-on-failure > $OUT/ctest.log 2>&1
echo "ctest rc=$? t=$(el)"; grep -E 'Test +#|tests passed|tests failed' $OUT/ctest.log
grep -B3 -A25 -E "FAILED|failed" $OUT/ctest.log | head -60
{
for d in /tmp/base_build build-gpu; do echo "== attention $d"; timeout 60 "$d/bench/bench_attention"; done
for r in 1 2; do for d in /tmp/base_build build-gpu; do echo "== gpt2 bf16-mixed $d"; timeout $(left) "$d/bench/gpt_bench" --precision bf16-mixed | tail -n 1; done; done
for d in /tmp/base_build build-gpu; do echo "== gpt2 tf32 $d"; timeout $(left) "$d/bench/gpt_bench" --precision tf32 | tail -n 1; done
} 2>&1 | tee $OUT/ab.txt
echo "ab t=$(el)"
for p in bf16-mixed tf32; do
  timeout $(left 590) python3 .carry/torch_gpt.py gpt --precision $p --compile 2>$OUT/peer_$p.err | tail -n 1 | tee -a $OUT/peer.jsonl
  echo "peer $p t=$(el)"
done
