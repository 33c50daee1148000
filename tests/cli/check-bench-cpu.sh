#!/usr/bin/env bash
# experiments/bench/train_step.sh on the CPU backend, yolopipe's side only (PyTorch is not a test
# dependency): a 64 px, batch-2 YOLOv8n run at 1 and at 2 threads (--threads) must give a row each,
# the device naming its thread count, with the median step and its layers' time from the run's
# profile.csv, which the script finds from the trainer's "run directory" line and keeps (--profiles).
# Runs on a copy of experiments/ in a temporary folder: the script writes its synthetic images and
# CSV beside itself.
# Usage: check-bench-cpu.sh SOURCE_ROOT YOLOPIPE
set -euo pipefail
root=$1 yolopipe=$(realpath "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
mkdir -p "$tmp/experiments"
cp -r "$root/experiments/bench" "$root/experiments/models" "$tmp/experiments/"
rm -rf "$tmp/experiments/bench/results"
"$tmp/experiments/bench/train_step.sh" --device cpu --frameworks yolopipe --models n --imgsz 64 --batch 2 \
    --steps 2 --warmup 1 --yolopipe-precisions fp32 --yolopipe "$yolopipe" --csv "$tmp/rows.csv" \
    --threads "1 2" --profiles "$tmp/profiles" >"$tmp/out" 2>&1 || fail "train_step.sh: $(tail -5 "$tmp/out")"
for t in 1 2; do
    # date,commit,device,model,imgsz,batch,framework,precision,steps,median_ms,images_per_s,...,yolopipe_layers_ms (15)
    row=$(grep ", $t of [0-9]* threads\",yolov8n,64,2,yolopipe,fp32," "$tmp/rows.csv") ||
        fail "no yolopipe row at $t threads in $(cat "$tmp/rows.csv")"
    IFS=, read -r -a f < <(sed 's/"[^"]*"/x/g' <<<"$row")
    [[ ${f[9]} =~ ^[0-9.]+$ ]] || fail "no median in: $row"
    [[ ${f[14]} =~ ^[0-9.]+$ ]] || fail "no layers time in: $row"
    grep -q '^22,Detect,' "$tmp/profiles/yolopipe-yolov8n-fp32-t$t.csv" || fail "no profile.csv kept for $t threads"
    grep -q "^device: cpu ($t threads per rank)" "$tmp/profiles/yolopipe-yolov8n-fp32-t$t.log" ||
        fail "the run at --threads $t did not run $t threads: $(grep '^device:' "$tmp/profiles/yolopipe-yolov8n-fp32-t$t.log")"
    echo "ok: $t threads: median ${f[9]} ms, layers ${f[14]} ms"
done
