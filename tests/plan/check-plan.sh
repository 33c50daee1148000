#!/usr/bin/env bash
# `yolopipe plan` end to end: the JSON keys scripts rely on, parameters conserved across stages,
# a well-formed Chrome trace, every reference model planned, and user errors with exit code 2.
# Usage: check-plan.sh SOURCE_ROOT YOLOPIPE
set -euo pipefail
root=$1 yolopipe=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
exp=$root/experiments/default.yaml

# JSON: stages with layers/params/gflops; schedule with name, bubble_fraction, step_time_s and
# peak_activation_bytes per rank; parameters add up to the model's (info --json with the same nc).
"$yolopipe" plan "$exp" --set parallel.replicas=1 --set parallel.stages=4 --set parallel.micro_batches=8 --json > "$tmp/plan.json"
"$yolopipe" info "$root/experiments/models/yolov8.yaml" --scale n --nc 4 --imgsz 160 --json > "$tmp/info.json"
python3 - "$tmp/plan.json" "$tmp/info.json" <<'PY'
import json, sys
plan, info = (json.load(open(p)) for p in sys.argv[1:3])
stages, sched = plan["stages"], plan["schedule"]
assert len(stages) == 4, stages
assert stages[0]["layers"][0] == 0 and stages[-1]["layers"][1] == 22
for a, b in zip(stages, stages[1:]):
    assert b["layers"][0] == a["layers"][1] + 1, "stages are contiguous"
assert sum(s["params"] for s in stages) == info["parameters"], "parameters conserved"
assert abs(sum(s["gflops"] for s in stages) - info["gflops"] * 2) < 1e-3, "GFLOPs of a 2-image micro-batch"
assert sched["name"] == "1f1b" and sched["step_time_s"] > 0 and 0 <= sched["bubble_fraction"] < 1
assert len(sched["peak_activation_bytes"]) == 4 and len(sched["bubble_fraction_per_rank"]) == 4
PY

# The trace: a JSON object whose traceEvents are complete events on rank tracks.
"$yolopipe" plan "$exp" --set parallel.replicas=1 --set parallel.stages=2 --set parallel.micro_batches=4 --set parallel.schedule=zb-h1 \
  --trace "$tmp/trace.json" > "$tmp/plan.txt"
grep -q "schedule zb-h1" "$tmp/plan.txt"
python3 - "$tmp/trace.json" <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
cats = {e.get("cat") for e in events if e.get("ph") == "X"}
assert {"fwd", "bwd", "wgrad", "send"} <= cats, cats
PY

# Every reference model plans (detection and classification, several stage counts and schedules).
for args in "yolov8.yaml --set scale=m --set parallel.stages=8 --set parallel.micro_batches=8" \
            "yolov5.yaml --set parallel.stages=3 --set parallel.schedule=gpipe --set parallel.micro_batches=4" \
            "yolov3.yaml --set scale=null --set parallel.stages=4 --set parallel.schedule=interleaved --set parallel.chunks=2 --set parallel.micro_batches=8" \
            "yolov8-cls.yaml --set task=classify --set parallel.stages=2 --set parallel.micro_batches=2"; do
  set -- $args
  model=$1; shift
  "$yolopipe" plan "$exp" --set parallel.replicas=1 --set "model=$root/experiments/models/$model" "$@" > "$tmp/out.txt" \
    || { echo "plan failed for $model $*"; exit 1; }
  grep -q "^schedule " "$tmp/out.txt"
done

# User errors: one line, exit code 2.
expect_error() {
  local expected=$1; shift
  set +e
  "$yolopipe" plan "$exp" --set parallel.replicas=1 "$@" > /dev/null 2> "$tmp/err.txt"
  local rc=$?
  set -e
  [[ $rc == 2 ]] || { echo "exit $rc, expected 2 for: $*"; exit 1; }
  grep -qF -- "$expected" "$tmp/err.txt" || { echo "expected '$expected', got: $(cat "$tmp/err.txt")"; exit 1; }
}
expect_error "--set parallel.stages:1:1: stage count larger than useful: 23 layers cannot fill 30 stages" \
  --set parallel.stages=30
expect_error "needs parallel.micro_batches (6) to be a multiple of parallel.stages (4)" \
  --set parallel.stages=4 --set parallel.schedule=interleaved --set parallel.chunks=2 \
  --set parallel.micro_batches=6 --set train.batch=24
expect_error "--device must be cpu, h100 or a100, found 'tpu'" --device tpu
echo "plan checks passed"
