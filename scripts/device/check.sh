#!/usr/bin/env bash
# One-shot GPU check (H100/H200), <= 8 minutes, run by the device tool with the CUDA binary
# built on the CPU machine carried along (see docs/performance.md for the build recipe):
#   1. bf16 logits of the tiny fixture checkpoint vs the f32 reference logits, and every golden
#      sampler case on the GPU in f32 (`workbench bench --targets parity`);
#   2. a LLaDA-8B-shaped model (random bf16 weights drawn on the GPU) forward at 8 x 512, MFU;
#   3. generation tokens/s at that shape (batch 8, prompt 256, gen 256, 64 steps, block 32);
#   4. one LoRA d1 step at G = 6, L = 256 with activation checkpointing (time, device memory).
# Writes $OUT/device_check.json (or ./device_check.json), one object with every result.
# Usage: scripts/device/check.sh [WORKBENCH_BINARY]   (default target-cuda/release/workbench; a
#   path ending in .gz, such as target-cuda/device/workbench.gz, is unpacked first)
# DEVICE=cpu SHAPE=tiny scripts/device/check.sh target/release/workbench  is a CPU dry run.
set -uo pipefail
cd "$(dirname "$0")/../.."
WB=${1:-target-cuda/release/workbench}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-llada8b}
DEST=${OUT:-.}
mkdir -p "$DEST"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ "${WB%.gz}" != "$WB" ]; then  # the carried, gzipped binary of scripts/device/build_cuda.sh
  gzip -dc "$WB" > "$TMP/workbench" && chmod +x "$TMP/workbench" && WB=$TMP/workbench
fi
if [ "$DEVICE" != cpu ]; then ldd "$WB" | grep -E 'cuda|cublas|curand|nvrtc|not found' || true; fi
PEAK=${PEAK_TFLOPS:-989}
PDT=bf16; [ "$DEVICE" = cpu ] && PDT=f32  # CPU matmul has no bf16
if [ "$DEVICE" != cpu ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$TMP/gpu.txt" 2>&1 || true; fi
step() { # name timeout args...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  if timeout "$limit" "$WB" bench --device "$DEVICE" --peak-tflops "$PEAK" "$@" --json "$TMP/$name.json" > "$TMP/$name.log" 2>&1; then
    echo "$name ok ($(( $(date +%s) - t0 )) s)"
  else
    echo "{\"error\": \"$name failed (rc $?)\", \"log\": $(tail -c 2000 "$TMP/$name.log" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" > "$TMP/$name.json"
    echo "$name FAILED"; tail -5 "$TMP/$name.log"
  fi
}
step parity 90 --targets parity --dtype "$PDT"
step forward 120 --shape "$SHAPE" --targets forward --forward-batch 8 --forward-len 512 --iters 5
step generate 150 --shape "$SHAPE" --targets generate --batch 8 --prompt 256 --gen 256 --steps 64 --block 32 --iters 1 --warmup 0
step lora 120 --shape "$SHAPE" --targets lora --train-batch 6 --prompt 32 --gen 224 --checkpointing --iters 2
python3 - "$TMP" "$DEST/device_check.json" <<'PY'
import json, os, sys
tmp, dest = sys.argv[1], sys.argv[2]
rep = {}
gpu = os.path.join(tmp, "gpu.txt")
if os.path.exists(gpu):
    rep["gpu"] = open(gpu).read().strip()
for name in ["parity", "forward", "generate", "lora"]:
    try:
        rep[name] = json.load(open(os.path.join(tmp, name + ".json")))
    except Exception as e:
        rep[name] = {"error": f"no report: {e}"}
json.dump(rep, open(dest, "w"), indent=1)
print(json.dumps(rep)[:3000])
PY
