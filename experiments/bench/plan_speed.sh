#!/usr/bin/env bash
# How long `yolopipe plan` takes for one point of a large study: YOLOv8x at 640 on 1,024 H100s in
# 128 nodes of 8 (--gpus-per-node 8), 16 images per GPU, data-parallel only and 8 stages x 128
# replicas. The target is under 1 s per point (issue 15). A benchmark, never asserted in tests.
# Usage: experiments/bench/plan_speed.sh [YOLOPIPE] [REPEATS]   (defaults: build/yolopipe, 5)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
yolopipe=${1:-$root/build/yolopipe}
repeats=${2:-5}
common=(--device h100 --gpus-per-node 8 --set scale=x --set train.imgsz=640 --set train.batch=16384)
layouts=("parallel.stages=1 parallel.replicas=1024 parallel.micro_batches=1"
         "parallel.stages=8 parallel.replicas=128 parallel.micro_batches=16")
for layout in "${layouts[@]}"; do
  sets=()
  for kv in $layout; do sets+=(--set "$kv"); done
  best=
  for ((i = 0; i < repeats; i++)); do
    start=$(date +%s.%N)
    "$yolopipe" plan "$root/experiments/default.yaml" "${common[@]}" "${sets[@]}" --json > /dev/null
    end=$(date +%s.%N)
    best=$(awk -v a="$start" -v b="$end" -v best="$best" \
      'BEGIN { t = b - a; print (best == "" || t < best) ? t : best }')
  done
  step=$("$yolopipe" plan "$root/experiments/default.yaml" "${common[@]}" "${sets[@]}" --json |
    sed -n 's/.*"step_time_s": \([0-9.e+-]*\).*/\1/p')
  printf 'yolov8x, 1024 GPUs, %s: plan %.3f s (best of %d), simulated step %.1f ms\n' \
    "$layout" "$best" "$repeats" "$(awk -v s="$step" 'BEGIN { print s * 1000 }')"
done
