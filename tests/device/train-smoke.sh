#!/bin/bash
# GPU training end to end on one rank: tests/mpi/tiny.yaml (YOLOv8n, 64 px, synthetic) for 10 epochs
# on the CUDA backend and, for comparison, on the CPU backend from the same seed. Passes when the GPU
# run finishes, its training box loss falls, and its last validation mAP50 is within 0.1 of the
# CPU run's (the two runs differ by float summation order only, which the assigner amplifies over
# hundreds of steps, so the curves are compared, not the bits).
# usage: train-smoke.sh SOURCE_ROOT YOLOPIPE
set -u
src=$(realpath "$1") yolopipe=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
for backend in cuda cpu; do
  "$yolopipe" train "$src/tests/mpi/tiny.yaml" --set "model=$src/experiments/models/yolov8.yaml" \
    --set "data=$work/data/tiny/data.yaml" --set "output.dir=$work/runs" --set train.epochs=10 \
    --set "name=$backend" --set "device.backend=$backend" >"$backend.log" 2>&1 ||
    { echo "FAIL: training on $backend exited with $?"; tail -n 20 "$backend.log"; exit 1; }
  grep -E "measured batch time|^ *all " "$backend.log" | tail -n 2
done
python3 - runs/cuda/results.csv runs/cpu/results.csv <<'PY'
import csv, sys
def rows(path):
    with open(path) as f:
        return [{k.strip(): float(v) for k, v in r.items()} for r in csv.DictReader(f)]
gpu, cpu = rows(sys.argv[1]), rows(sys.argv[2])
box = "train/box_loss"
map50 = next(k for k in gpu[0] if k.startswith("metrics/mAP50") and "95" not in k)
print(f"{'epoch':>5} {'gpu box':>9} {'cpu box':>9} {'gpu mAP50':>10} {'cpu mAP50':>10}")
for g, c in zip(gpu, cpu):
    print(f"{int(g['epoch']):>5} {g[box]:>9.4f} {c[box]:>9.4f} {g[map50]:>10.4f} {c[map50]:>10.4f}")
ok = gpu[-1][box] < gpu[0][box] and abs(gpu[-1][map50] - cpu[-1][map50]) <= 0.1
print("PASS" if ok else "FAIL: the GPU run's loss did not fall or its mAP50 is more than 0.1 from the CPU run's")
sys.exit(0 if ok else 1)
PY
