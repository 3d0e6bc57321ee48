#!/usr/bin/env bash
# The GPU checks of ptuning in one bounded run, for a lent GPU machine that has no network and its
# own torch/transformers (it needs: python3 with torch, transformers >= 5.17, accelerate,
# safetensors, scikit-learn, scipy, matplotlib, psutil; seqeval travels as a wheel).
#
#   bash scripts/gpu_report.sh pack                 # here: write .gpu/ (~47 MB, git-ignored)
#   bash scripts/gpu_report.sh run                  # there, with .gpu/ carried along: ~9.5 min
#   bash scripts/gpu_report.sh run --dry-run        # here, on the CPU: every stage on tiny slices
#
# `run` writes into $OUT (default: gpu-out/): run.log (versions, nvidia-smi, every stage's output),
# bench-gpu.json (`ptuning bench` on CUDA, bf16 autocast: step time, peak memory, inference latency
# of every method, ratios to fine-tuning; bench-gpu-fp32.json the same in fp32), sweep-gpu.json and .png
# (cost curves over T, P, B; SKIP=sweep skips them), serving-gpu.json (mixed- vs single-task serving
# throughput) and results.jsonl (one line per finished cell of the `gpu` report protocol). Each stage
# has its own time limit (SKIP=bench skips the bench, TASKS="conll03 squad" runs only those tasks'
# cells, and .gpu/results.jsonl, if present, holds cells already done that the protocol skips) and the protocol stops at DEADLINE seconds after the start (default 560),
# so whatever finished comes back. Afterwards, here:
#   cp gpu-out/results.jsonl reports/gpu/ && ptuning report --protocol gpu --name gpu --render-only
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
dry=0; [ "${2:-}" = "--dry-run" ] && dry=1
PY="${PYTHON:-python3}"

if [ "$mode" = "pack" ]; then
    exec "$PY" scripts/gpu_bundle.py pack --data-dir "${PTUNING_DATA:-../shared/data}" --out .gpu
fi
[ "$mode" = "run" ] || { echo "usage: $0 pack | run [--dry-run]" >&2; exit 2; }
[ -d .gpu ] || { echo "no .gpu/ bundle: run '$0 pack' first (and carry .gpu)" >&2; exit 2; }

start=$(date +%s)
DEADLINE="${DEADLINE:-560}"
OUT="${OUT:-gpu-out}"
WORK="${WORK:-/tmp/ptuning-gpu}"
mkdir -p "$OUT"
LOG="$OUT/run.log"
left() { echo $(( DEADLINE - ($(date +%s) - start) )); }
say() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$LOG"; }

rm -rf "$WORK"
"$PY" scripts/gpu_bundle.py unpack --bundle .gpu --dest "$WORK" 2>&1 | tee -a "$LOG"
export PYTHONPATH="$WORK/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PTUNING_DATA="$WORK/data" HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1

say "versions"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import sys, torch, transformers, accelerate; print('python', sys.version.split()[0], '| torch', torch.__version__, '| transformers', transformers.__version__, '| accelerate', accelerate.__version__, '| cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
} 2>&1 | tee -a "$LOG"

SKIP="${SKIP:-}"  # stages to skip, e.g. SKIP=bench (a second run that only finishes the protocol)
if [ $dry = 1 ]; then
    device=cpu; bench_opts=(--quick --methods fine-tune p-tuning-v2); serve_opts=(--quick --throughput-only)
    report_opts=(--dry-run --jobs 1); name=gpu-dry-run
else
    device=cuda; bench_opts=(--repeats 1); serve_opts=(--quick); report_opts=(--jobs 4); name=gpu
fi

say "stage 1: ptuning bench on $device"
[[ "$SKIP" == *bench* ]] || timeout 150 "$PY" -m ptuning bench --device "$device" "${bench_opts[@]}" --output "$OUT/bench-gpu.json" 2>&1 | tee -a "$LOG"

say "stage 1b: cost curves (fine-tune and p-tuning-v2 across T, P, B) and the fp32 bench on $device"
if [[ "$SKIP" != *sweep* ]]; then
    sweep_opts=(--warmup 2 --steps 5 --infer-reps 5 --batch-size 8 --prefix-len 32)
    [ $dry = 1 ] && sweep_opts=(--warmup 1 --steps 1 --infer-reps 1 --batch-size 2 --prefix-len 4)
    timeout 150 "$PY" -m ptuning bench --sweep --device "$device" "${sweep_opts[@]}" --output "$OUT/sweep-gpu.json" 2>&1 | tee -a "$LOG"
    [[ "$SKIP" == *bench* ]] || timeout 90 "$PY" -m ptuning bench --device "$device" --no-bf16 "${bench_opts[@]}" --output "$OUT/bench-gpu-fp32.json" 2>&1 | tee -a "$LOG"
fi

say "stage 2: serving throughput on $device"
timeout 90 "$PY" bench/bench_serving.py --device "$device" "${serve_opts[@]}" --json "$OUT/serving-gpu.json" 2>&1 | tee -a "$LOG"

if [ -f .gpu/results.jsonl ]; then  # cells of an earlier run: the protocol skips them
    mkdir -p "$WORK/reports/$name" && cp .gpu/results.jsonl "$WORK/reports/$name/results.jsonl"
fi
budget=$(left)
say "stage 3: report protocol gpu, $budget s left"
if [ "$budget" -gt 30 ]; then
    timeout "$budget" "$PY" -m ptuning report --protocol gpu "${report_opts[@]}" --data-dir "$WORK/data" \
        --reports-dir "$WORK/reports" ${TASKS:+--tasks $TASKS} 2>&1 | tee -a "$LOG"
fi
cp "$WORK/reports/$name/results.jsonl" "$OUT/results.jsonl" 2>/dev/null || say "no protocol results"
say "done; results in $OUT"
