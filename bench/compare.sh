#!/usr/bin/env bash
# Side by side, one run, one machine: `workbench bench` against bench/llada_bench.py (PyTorch) on
# the same random checkpoint at the bench shape (d_model 256, 6 layers, 8 heads, mlp 704, vocab
# 8192): forward 2 x 160, generation batch 2 / prompt 32 / gen 128 / 64 steps / block 32 at T = 0
# and T = 1, one d1 estimator forward + backward on all weights at 4 x (32 + 128). Each side runs
# with 1 thread, with 2 threads, and with 2 threads next to a busy loop; the ratios
# (PyTorch time / workbench time, > 1 = workbench faster) are printed at the end.
#
# Usage: bench/compare.sh [OUT_DIR]   (needs python3 with torch + safetensors, and a release
# build: `cargo build --release --bin workbench`; set WORKBENCH=path to use another binary).
# Bounded: every side-run has a timeout; the whole script takes about 5-8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/compare}
WB=${WORKBENCH:-target/release/workbench}
ITERS=${ITERS:-3}
LIMIT=${LIMIT:-150}
mkdir -p "$OUT"
[ -x "$WB" ] || { echo "no $WB: run cargo build --release --bin workbench" >&2; exit 2; }
python3 -c 'import torch, safetensors' || { echo "python3 needs torch and safetensors" >&2; exit 2; }

python3 bench/llada_bench.py --check-fixtures tests/fixtures > "$OUT/fixtures.jsonl"
MODEL="$OUT/model"
python3 bench/llada_bench.py --make-model "$MODEL" --shape bench --seed 0
TARGETS=forward,generate,generate_t1,d1

BUSY_PID=
stop_busy() { if [ -n "$BUSY_PID" ]; then kill "$BUSY_PID" 2>/dev/null || true; wait "$BUSY_PID" 2>/dev/null || true; BUSY_PID=; fi; }
trap stop_busy EXIT

run_side() { # side threads label
  local side=$1 n=$2 label=$3 f="$OUT/$1_$3.jsonl"
  if [ "$side" = wb ]; then
    WORKBENCH_THREADS=$n timeout "$LIMIT" "$WB" bench --model "$MODEL" --targets "$TARGETS" \
      --iters "$ITERS" > "$f" || echo "{\"error\": \"workbench $label failed or timed out\"}" >> "$f"
  else
    OMP_NUM_THREADS=$n timeout "$LIMIT" python3 bench/llada_bench.py --model "$MODEL" \
      --targets "$TARGETS" --iters "$ITERS" --threads "$n" > "$f" \
      || echo "{\"error\": \"pytorch $label failed or timed out\"}" >> "$f"
  fi
}

for cfg in 1:t1 2:t2; do
  n=${cfg%%:*}; label=${cfg#*:}
  run_side pt "$n" "$label"
  run_side wb "$n" "$label"
done
# A competing process: one busy loop on the 2-core machine, both sides at 2 threads.
( while :; do :; done ) & BUSY_PID=$!
run_side pt 2 busy
run_side wb 2 busy
stop_busy

python3 - "$OUT" <<'EOF'
import json, sys, os
out = sys.argv[1]
def load(name):
    res = {}
    for line in open(os.path.join(out, name + ".jsonl")):
        line = line.strip()
        if line.startswith("{"):
            v = json.loads(line)
            if "target" in v:
                res[v["target"]] = v
    return res
rows = {}
for label in ["t1", "t2", "busy"]:
    rows[label] = (load("pt_" + label), load("wb_" + label))
targets = ["forward", "generate", "generate_t1", "d1"]
print(f"{'target':<12} {'threads':<8} {'pytorch s':>10} {'workbench s':>12} {'ratio':>7}")
for t in targets:
    for label in ["t1", "t2", "busy"]:
        pt, wb = rows[label]
        if t in pt and t in wb:
            a, b = pt[t]["median_s"], wb[t]["median_s"]
            print(f"{t:<12} {label:<8} {a:>10.3f} {b:>12.3f} {a / b:>7.2f}x")
print("d1 halves (2 threads): pytorch fwd/bwd %.3f/%.3f s, workbench %.3f/%.3f s" % (
    rows["t2"][0]["d1"]["forward_s"], rows["t2"][0]["d1"]["backward_s"],
    rows["t2"][1]["d1"]["forward_s"], rows["t2"][1]["d1"]["backward_s"])
    if "d1" in rows["t2"][0] and "d1" in rows["t2"][1] else "")
print("slowdown under a busy process (busy / unloaded, 2 threads):")
for t in targets:
    pt2, wb2 = rows["t2"]; ptb, wbb = rows["busy"]
    if all(t in r for r in (pt2, wb2, ptb, wbb)):
        print(f"  {t:<12} pytorch {ptb[t]['median_s'] / pt2[t]['median_s']:.2f}x  "
              f"workbench {wbb[t]['median_s'] / wb2[t]['median_s']:.2f}x")
pt, wb = rows["t2"]
if "generate" in pt and "generate" in wb and wb["generate"].get("completions"):
    a = [x for r in pt["generate"]["completions"] for x in r]
    b = [x for r in wb["generate"]["completions"] for x in r]
    same = sum(x == y for x, y in zip(a, b))
    print(f"T = 0 tokens identical to PyTorch's: {same}/{len(a)}")
EOF
