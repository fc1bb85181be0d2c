#!/usr/bin/env bash
# compare.sh: mixtape's gpt_bench / mlp_bench against the PyTorch peer (eager, torch.compile and
# torch.compile reduce-overhead), interleaved round by round in one invocation, then one table of
# median ratios. A case counts only if both sides' validation losses agree within 0.02 (a fast wrong
# step does not count).
#
#   bench/compare.sh BUILD PEER [ROUNDS] [CASE...]
#     BUILD   a build directory with bench/gpt_bench and bench/mlp_bench (CUDA)
#     PEER    ../shared/reference/torch_gpt.py (or a copy of it)
#     ROUNDS  rounds of every run (default 3)
#     CASE    small | gpt2:PRECISION | mlp:PRECISION (default: small gpt2:bf16-mixed mlp:bf16-mixed)
#   PEER_MODES="eager compile reduce-overhead" (default) picks the peer's variants.
#   OUT=FILE.jsonl keeps every JSON line (default: a temporary file, printed path).
set -euo pipefail
build=${1:?usage: compare.sh BUILD PEER [ROUNDS] [CASE...]}
peer=${2:?usage: compare.sh BUILD PEER [ROUNDS] [CASE...]}
rounds=${3:-3}
shift $(( $# >= 3 ? 3 : $# ))
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(small gpt2:bf16-mixed mlp:bf16-mixed)
modes=(${PEER_MODES:-eager compile reduce-overhead})
out=${OUT:-$(mktemp /tmp/compare.XXXXXX.jsonl)}
: > "$out"

args_of() {  # the workload's flags, shared by both sides
  case $1 in
    small) echo "gpt --precision bf16-mixed --vocab 256 --ctx 128 --d 128 --layers 2 --heads 4 --batch 16" ;;
    gpt2:*) echo "gpt --precision ${1#gpt2:}" ;;
    mlp:*) echo "mlp --precision ${1#mlp:}" ;;
    *) echo "compare.sh: unknown case '$1' (small, gpt2:PRECISION, mlp:PRECISION)" >&2; exit 2 ;;
  esac
}

record() {  # record CASE SIDE COMMAND...: appends the command's JSON line, tagged
  local case=$1 side=$2; shift 2
  local line
  if ! line=$("$@" 2>/tmp/compare_err.txt | tail -n 1); then
    echo "compare.sh: $case / $side failed: $(tail -n 3 /tmp/compare_err.txt)" >&2
    return 0
  fi
  echo "$line" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d["case"]=sys.argv[1]; d["side"]=sys.argv[2]; print(json.dumps(d))' "$case" "$side" >> "$out"
  echo "  $case  $side  $(echo "$line" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.0f/s  %.3f ms  %.0f MiB  val %s" % (d["per_s"], d["step_ms"], d["peak_mib"], d.get("val_loss")))')" >&2
}

for ((r = 1; r <= rounds; r++)); do
  echo "round $r/$rounds" >&2
  for c in "${cases[@]}"; do
    read -r workload flags <<< "$(args_of "$c")"
    record "$c" mixtape "$build/bench/${workload}_bench" $flags
    for m in "${modes[@]}"; do
      case $m in
        eager) record "$c" "torch eager" python3 "$peer" "$workload" $flags ;;
        compile) record "$c" "torch.compile" python3 "$peer" "$workload" $flags --compile ;;
        reduce-overhead) record "$c" "torch.compile reduce-overhead" python3 "$peer" "$workload" $flags --compile reduce-overhead ;;
        *) echo "compare.sh: unknown peer mode '$m'" >&2; exit 2 ;;
      esac
    done
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cases = list(dict.fromkeys(r["case"] for r in rows))
print("| case | side | runs | per_s (median) | step ms | TFLOP/s | peak MiB | val_loss | mixtape / side |")
print("|---|---|---|---|---|---|---|---|---|")
for c in cases:
    sides = list(dict.fromkeys(r["side"] for r in rows if r["case"] == c))
    med = {}
    for s in sides:
        rs = [r for r in rows if r["case"] == c and r["side"] == s]
        med[s] = {k: statistics.median([r[k] for r in rs]) for k in ("per_s", "step_ms", "tflops", "peak_mib")}
        vals = [r["val_loss"] for r in rs if r.get("val_loss") is not None]
        med[s]["val_loss"] = statistics.median(vals) if vals else None
        med[s]["runs"] = len(rs)
    ours = med.get("mixtape")
    for s in sides:
        m = med[s]
        ratio, note = "", ""
        if ours and s != "mixtape":
            ratio = "%.2fx" % (ours["per_s"] / m["per_s"])
            if ours["val_loss"] is not None and m["val_loss"] is not None and abs(ours["val_loss"] - m["val_loss"]) > 0.02:
                note = " (val_loss differs by %.3f: does not count)" % abs(ours["val_loss"] - m["val_loss"])
        val = "%.4f" % m["val_loss"] if m["val_loss"] is not None else "-"
        print("| %s | %s | %d | %.0f | %.3f | %.1f | %.0f | %s | %s%s |" % (c, s, m["runs"], m["per_s"], m["step_ms"],
              m["tflops"], m["peak_mib"], val, ratio, note))
PY
echo "all runs: $out" >&2
