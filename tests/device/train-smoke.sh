#!/bin/bash
# GPU training end to end on one rank: tests/mpi/tiny.yaml (YOLOv8n, 64 px, synthetic) for 10 epochs
# on the CUDA backend and, for comparison, on the CPU backend from the same seed; then the GPU run
# again under mpirun with the NCCL transport. Passes when the GPU
# run finishes with finite losses and its first epoch's mean training losses are within 2% of the
# CPU run's. The two runs differ by float summation order only, which the assigner's near ties
# amplify over the epochs, so later epochs are printed side by side, not compared (the equivalence
# test compares bits, from a trained model). This short run at lr 0.02 is not a convergence test:
# its box loss grows as the assigner finds more foreground anchors.
# usage: train-smoke.sh SOURCE_ROOT YOLOPIPE
set -u
src=$(realpath "$1") yolopipe=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# cuda and cpu: one process each; nccl: the GPU run again as one rank under mpirun with the NCCL
# transport forced (a build without NCCL skips it), which has nothing to transfer but builds and
# tears down the communicators around a whole training run.
for run in cuda cpu nccl; do
  launch=() backend=$run extra=()
  if [ $run = nccl ]; then
    "$yolopipe" --version | grep -q "NCCL" || { echo "no NCCL in this build: skipping the nccl run"; continue; }
    launch=("$src/tests/mpi/mpirun.sh" 1) backend=cuda extra=(--set parallel.transport=nccl)
  fi
  "${launch[@]}" "$yolopipe" train "$src/tests/mpi/tiny.yaml" --set "model=$src/experiments/models/yolov8.yaml" \
    --set "data=$work/data/tiny/data.yaml" --set "output.dir=$work/runs" --set train.epochs=10 \
    --set "name=$run" --set "device.backend=$backend" "${extra[@]}" >"$run.log" 2>&1 ||
    { echo "FAIL: training ($run) exited with $?"; tail -n 20 "$run.log"; exit 1; }
  grep -E "measured batch time|^ *all " "$run.log" | tail -n 2
done
nccl_csv=runs/nccl/results.csv
[ -f $nccl_csv ] || nccl_csv=runs/cuda/results.csv
python3 - runs/cuda/results.csv runs/cpu/results.csv $nccl_csv <<'PY'
import csv, sys
def rows(path):
    with open(path) as f:
        return [{k.strip(): float(v) for k, v in r.items()} for r in csv.DictReader(f)]
gpu, cpu, nccl = rows(sys.argv[1]), rows(sys.argv[2]), rows(sys.argv[3])
box = "train/box_loss"
map50 = next(k for k in gpu[0] if k.startswith("metrics/mAP50") and "95" not in k)
print(f"{'epoch':>5} {'gpu box':>9} {'cpu box':>9} {'gpu mAP50':>10} {'cpu mAP50':>10}")
for g, c in zip(gpu, cpu):
    print(f"{int(g['epoch']):>5} {g[box]:>9.4f} {c[box]:>9.4f} {g[map50]:>10.4f} {c[map50]:>10.4f}")
import math
parts = ["train/box_loss", "train/cls_loss", "train/dfl_loss"]
finite = all(math.isfinite(r[k]) for run in (gpu, nccl) for r in run for k in parts)
close = all(abs(run[0][k] - cpu[0][k]) <= 0.02 * abs(cpu[0][k]) for run in (gpu, nccl) for k in parts)
ok = finite and close
print("PASS" if ok else "FAIL: the GPU run has a non-finite loss or its first epoch's losses are more than 2% from the CPU run's")
sys.exit(0 if ok else 1)
PY
