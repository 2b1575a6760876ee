#!/usr/bin/env bash
# The GPU checks in one call (under 5 minutes on one H100/H200): the CUDA tests, the training-step and epoch
# benchmarks, cache building, and the quickstart with trainer=gpu. Every figure is printed.
#   bash benchmarks/gpu.sh            # from the repository root, on a machine with a CUDA GPU
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LOGS=/tmp/captioning-gpu  # one log per check; with $OUT set, all of them as $OUT/gpu_logs.tar.gz
rm -rf "$LOGS" && mkdir -p "$LOGS"
PY="${PYTHON:-python3}"
status=0

section() { echo; echo "=== $1 ($(date +%T))"; }
run() {  # run NAME COMMAND...: print and keep its output; remember a failure
  local name=$1; shift
  section "$name: $*"
  local start=$SECONDS
  "$@" 2>&1 | tee "$LOGS/$name.log" | grep -v -E "^\s*$|it/s\]|s/it\]" | tail -n 40 || status=1
  echo "--- $name: $((SECONDS - start)) s"
}

section "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"

run cuda_tests $PY -m pytest -q -p no:cacheprovider tests/model/test_train_steps.py
for precision in 32 bf16; do  # batch 32, the reference setting, against the tutorial's loop in the same run
  run "step_${precision}_b32" $PY benchmarks/train_step.py --device cuda --precision $precision --batch-size 32 \
    --reference
done
run quickstart $PY train.py experiment=quickstart trainer=gpu
cp "$(ls -td outputs/quickstart/*/ | head -n 1)history.csv" "$LOGS/quickstart_history.csv" && cat "$LOGS/quickstart_history.csv"
# A Flickr30k-sized cache (31,783 images, 6.4 GB), 1,500 of the epoch's 4,967 batches timed and extrapolated
run epoch $PY benchmarks/epoch.py --device cuda --workers 6 --max-batches 1500 --cache /tmp/captioning-epoch.npy
for precision in 32 bf16; do  # model.compile_step=true: each word step compiled (fused kernels)
  run "step_${precision}_b32_compiled" $PY benchmarks/train_step.py --device cuda --precision $precision \
    --batch-size 32 --compile --reference
done
for precision in 32 bf16; do
  run "step_${precision}_b256" $PY benchmarks/train_step.py --device cuda --precision $precision --batch-size 256
done
run encoder $PY benchmarks/encoder.py --device cuda --images 1024 --batch-size 128 --workers 12

section "figures"
grep -h '^{' "$LOGS"/step_*.log "$LOGS"/epoch.log "$LOGS"/encoder.log 2>/dev/null | $PY -c '
import json, sys
for line in sys.stdin:
    row = json.loads(line)
    settings = row.pop("settings"); row.pop("machine", None)
    keep = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
    print({k: settings[k] for k in ("device", "precision", "batch_size", "step", "workers") if k in settings}, keep)
'
grep -h -E "quickstart|Epoch 7|test_loss|bleu|took|seconds" "$LOGS/quickstart.log" | tail -n 15
if [ -n "${OUT:-}" ]; then tar -czf "$OUT/gpu_logs.tar.gz" -C "$LOGS" .; fi
exit $status
