#!/usr/bin/env bash
# Host training speed, mixtape's train_gpt against the PyTorch peer on the CPU, side by side and
# interleaved (ours, peer, ours, peer, ...), the small GPT of issue 3: vocab 256, ctx 128, d 128,
# 2 layers, 4 heads, batch 16. Both time each step by wall clock (the peer's median over 20 timed
# steps after 5 warm-up steps; ours over 20 steps after the first); one JSON line per run.
#
#   bash bench/host_speed.sh BUILD_DIR PEER_SCRIPT [ROUNDS] > host_speed.jsonl
# The peer needs a CPU PyTorch (Debian: apt-get install python3-torch libopenblas0-pthread, run with
# /usr/bin/python3).
set -uo pipefail
build=${1:-build}
peer=${2:?the peer script, e.g. ../shared/reference/torch_gpt.py}
rounds=${3:-3}
shape="--vocab 256 --ctx 128 --d 128 --layers 2 --heads 4 --batch 16"
for r in $(seq "$rounds"); do
  for p in 32-true 64-true bf16-mixed bf16-true; do
    "$build/examples/train_gpt" --device cpu --precision "$p" --steps 21 --val-tokens 0 $shape --quiet --json
    /usr/bin/python3 "$peer" gpt --device cpu --precision "$p" --steps 20 --val-tokens 0 $shape 2>/dev/null |
      sed 's/^{/{"impl": "torch", /'
  done
done
