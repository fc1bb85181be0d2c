#!/usr/bin/env bash
# kernel_profile.sh: where one training step's GPU time goes, kernel by kernel, with Nsight Compute
# (the H100 machine has ncu but no nsys). Runs the benchmark eagerly for two steps, times every
# kernel of the second one (gpu__time_duration, kernels serialised, so the sum is GPU time without
# overlap or launch gaps) and prints the kernels grouped by name, largest first.
#
#   bench/kernel_profile.sh BIN [benchmark flags]     e.g. build/bench/gpt_bench --precision bf16-mixed
#   bench/kernel_profile.sh python3 .carry/torch_gpt.py gpt --precision bf16-true --compile   (the peer)
#   CSV=FILE keeps the raw ncu table.
set -euo pipefail
bin=${1:?usage: kernel_profile.sh BIN [flags]}
shift
csv=${CSV:-$(mktemp /tmp/kernel_profile.XXXXXX.csv)}
case $(basename "$bin") in
  python*) flags="--warmup 2 --steps 1 --val-tokens 0" ;;  # the peer: a steady step after compiling
  *) flags="--cuda-graph off --warmup 1 --steps 1 --val-tokens 0" ;;
esac
ncu --clock-control none --metrics gpu__time_duration.sum --csv --log-file "$csv" "$bin" "$@" $flags > /dev/null
python3 - "$csv" <<'PY'
import csv, collections, sys
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
rows = [r for r in rows if r.get("Metric Name") == "gpu__time_duration.sum"]
# The step boundary: the optimizer's last kernel ends each step; take the kernels after the first step's.
ids = [int(r["ID"]) for r in rows]
names = [r["Kernel Name"] for r in rows]
unit = rows[0]["Metric Unit"] if rows else "ns"
scale = {"ns": 1e-6, "usecond": 1e-3, "us": 1e-3, "msecond": 1.0, "ms": 1.0}.get(unit, 1e-6)
t = [float(r["Metric Value"].replace(",", "")) * scale for r in rows]
n = len(rows)
# Two identical steps follow the setup kernels: the second step is the last n_step kernels, where
# n_step is the largest k such that the last k names repeat the k before them.
best = 0
for k in range(n // 2, 0, -1):
    if names[n - k:] == names[n - 2 * k:n - k]:
        best = k
        break
step = list(zip(names[n - best:], t[n - best:])) if best else list(zip(names, t))
agg = collections.OrderedDict()
for name, ms in step:
    short = name.split("(")[0].split("<")[0].replace("void ", "").split("::")[-1][:70]
    a = agg.setdefault(short, [0, 0.0])
    a[0] += 1
    a[1] += ms
total = sum(ms for _, ms in step)
print("kernels in the step: %d, GPU time %.3f ms (serialised)" % (len(step), total))
print("| kernel | launches | ms | share |")
print("|---|---|---|---|")
for name, (c, ms) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print("| %s | %d | %.3f | %.1f%% |" % (name, c, ms, 100 * ms / total))
PY
echo "raw: $csv" >&2
