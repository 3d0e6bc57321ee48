#!/usr/bin/env bash
# The GPU checks of ptuning in one bounded run, for a lent GPU machine that has no network and its
# own torch/transformers (it needs: python3 with torch, transformers >= 5.17, accelerate,
# safetensors, scikit-learn, scipy, matplotlib, psutil; seqeval and optuna travel as wheels).
#
#   bash scripts/gpu_report.sh pack                 # here: write .gpu/ (~50 MB, git-ignored)
#   bash scripts/gpu_report.sh run                  # there, with .gpu/ carried along: ~9.5 min
#   bash scripts/gpu_report.sh run --dry-run        # here, on the CPU: every stage on tiny slices
#
# Stages, in this order (STAGES="study bf16 bench serving sweep" by default; `protocol` adds the
# older `gpu` report protocol):
#   study    `ptuning report --protocol study-gpu --jobs 4` for STUDY_SECONDS (default 300), beside
#   bf16     bench/bench_bf16_accuracy.py: dev scores with the frozen backbone held in bf16 against
#            plain autocast (main job and CoNLL-2003, 2 seeds), which shares the GPU with the study;
#   bench    `ptuning bench` of fine-tune and p-tuning-v2 in bf16 and in fp32 (step time, peak
#            memory, inference, ratios; on an H200 each took about 50 s, start-up included);
#   serving  mixed- vs single-task serving throughput;
#   sweep    cost curves over T, P, B (JSON and PNG), with whatever time is left.
# The study comes first and the timings after it, each timing alone on the GPU. The study folder
# travels back without checkpoints or trial runs (a fine-tune trial's is 90 MB; 16 MiB come back). Everything stops
# DEADLINE seconds after the start (default 560), so whatever finished comes back in $OUT (default
# gpu-out/, 8 files at most): run.log, study-gpu.tar.gz (reports/study-gpu without checkpoints),
# bf16-accuracy.json, bench-gpu.json, bench-gpu-fp32.json, sweep-gpu.json and .png, serving-gpu.json.
# .gpu/study-gpu.tar.gz, if present, holds an earlier run's study folder, which this run resumes.
# Afterwards, here:
#   tar -xzf gpu-out/study-gpu.tar.gz -C reports && ptuning report --protocol study-gpu --render-only
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

STAGES="${STAGES:-study bf16 bench serving sweep}"
has() { [[ " $STAGES " == *" $1 "* ]]; }
STUDY_SECONDS="${STUDY_SECONDS:-300}"
if [ $dry = 1 ]; then
    device=cpu; bench_opts=(--quick --methods fine-tune p-tuning-v2); serve_opts=(--quick --throughput-only)
    report_opts=(--dry-run --jobs 1); study_opts=(--dry-run --jobs 2 --threads 1); bf16_opts=(--dry-run --seeds 0)
    name=gpu-dry-run; study=study-gpu-dry-run
else
    device=cuda; bench_opts=(--repeats 1 --methods fine-tune p-tuning-v2); serve_opts=(--quick); report_opts=(--jobs 4)
    study_opts=(--jobs 4 --threads 2); bf16_opts=(--parallel 2); name=gpu; study=study-gpu
fi
mkdir -p "$WORK/reports"
if [ -f .gpu/study-gpu.tar.gz ]; then  # an earlier run's study: trials and cells done are kept
    tar -xzf .gpu/study-gpu.tar.gz -C "$WORK/reports"
fi

pids=()
if has study; then
    say "stage 1: the study-gpu protocol for $STUDY_SECONDS s"
    timeout "$STUDY_SECONDS" "$PY" -m ptuning report --protocol study-gpu "${study_opts[@]}" --data-dir "$WORK/data" \
        --reports-dir "$WORK/reports" > "$WORK/study.log" 2>&1 &
    pids+=($!)
fi
if has bf16; then
    say "stage 1b: dev scores, frozen backbone in bf16 against autocast (beside the study)"
    timeout "$STUDY_SECONDS" "$PY" bench/bench_bf16_accuracy.py "${bf16_opts[@]}" --data-dir "$WORK/data" \
        --output "$OUT/bf16-accuracy.json" > "$WORK/bf16.log" 2>&1 &
    pids+=($!)
fi
[ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
for f in study bf16; do [ -f "$WORK/$f.log" ] && { say "--- $f log (tail)"; tail -n 60 "$WORK/$f.log" | tee -a "$LOG"; }; done
if [ -d "$WORK/reports/$study" ]; then
    tar -czf "$OUT/study-gpu.tar.gz" -C "$WORK/reports" --exclude=_runs --exclude=trials --exclude=checkpoints --exclude='*.lock*' "$study"
fi

stage() {  # stage NAME SECONDS COMMAND...: run it if it fits before the deadline
    local what=$1 cap=$2; shift 2
    local budget; budget=$(left)
    [ "$budget" -gt "$cap" ] || cap=$budget
    if [ "$cap" -lt 10 ]; then say "$what: skipped, $budget s left"; return; fi
    say "$what ($cap s at most)"
    timeout "$cap" "$@" 2>&1 | tee -a "$LOG"
}
has bench && stage "stage 2: ptuning bench on $device, bf16" 75 \
    "$PY" -m ptuning bench --device "$device" "${bench_opts[@]}" --output "$OUT/bench-gpu.json"
has bench && stage "stage 3: ptuning bench on $device, fp32" 45 \
    "$PY" -m ptuning bench --device "$device" --no-bf16 "${bench_opts[@]}" --output "$OUT/bench-gpu-fp32.json"
has serving && stage "stage 4: serving throughput on $device" 60 \
    "$PY" bench/bench_serving.py --device "$device" "${serve_opts[@]}" --json "$OUT/serving-gpu.json"

if has sweep; then
    sweep_opts=(--warmup 2 --steps 5 --infer-reps 5 --batch-size 8 --prefix-len 32)
    [ $dry = 1 ] && sweep_opts=(--warmup 1 --steps 1 --infer-reps 1 --batch-size 2 --prefix-len 4)
    stage "stage 5: cost curves (fine-tune and p-tuning-v2 across T, P, B) on $device" 120 \
        "$PY" -m ptuning bench --sweep --device "$device" "${sweep_opts[@]}" --output "$OUT/sweep-gpu.json"
fi
if has protocol; then  # the older `gpu` report protocol (reports/gpu); .gpu/results.jsonl holds cells done
    if [ -f .gpu/results.jsonl ]; then
        mkdir -p "$WORK/reports/$name" && cp .gpu/results.jsonl "$WORK/reports/$name/results.jsonl"
    fi
    budget=$(left)
    say "stage 6: report protocol gpu, $budget s left"
    if [ "$budget" -gt 30 ]; then
        timeout "$budget" "$PY" -m ptuning report --protocol gpu "${report_opts[@]}" --data-dir "$WORK/data" \
            --reports-dir "$WORK/reports" ${TASKS:+--tasks $TASKS} 2>&1 | tee -a "$LOG"
    fi
    cp "$WORK/reports/$name/results.jsonl" "$OUT/results.jsonl" 2>/dev/null || say "no protocol results"
fi
say "done; results in $OUT"
