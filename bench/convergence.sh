#!/usr/bin/env bash
# Issue 3's convergence recipe under every Lightning preset, mixtape and the PyTorch peer side by
# side on one machine: vocab 256, ctx 128, d 128, 2 layers, 4 heads, batch 16, AdamW (0.9, 0.95),
# lr 1e-3 with 50 warmup steps, fresh stream-0 batches, validation on 65,536 tokens of stream 1.
# The peer runs --steps 800 after its 5 untimed warm-up steps, i.e. 805 updates; mixtape runs 805.
# Also mixtape's variants of the true half presets, bf16-true-sr and 16-true-f32-state (no peer).
#
#   bash bench/convergence.sh BUILD_DIR [PEER_SCRIPT] > results.jsonl
set -uo pipefail
build=${1:-build-gpu}
peer=${2:-}
shape="--vocab 256 --ctx 128 --d 128 --layers 2 --heads 4 --batch 16 --lr 1e-3 --val-tokens 65536"
for p in 32-true 64-true 16-true bf16-true 16-mixed bf16-mixed bf16-true-sr 16-true-f32-state; do
  "$build/examples/train_gpt" --precision "$p" --steps 805 --warmup 50 $shape --quiet --json
  case "$p" in *-sr|*-f32-state) continue ;; esac  # mixtape's variants: torch has no equivalent preset
  if [ -n "$peer" ]; then
    python3 "$peer" gpt --precision "$p" --steps 800 --warmup-steps 50 $shape 2>/dev/null |
      sed 's/^{/{"impl": "torch", /'
  fi
done
