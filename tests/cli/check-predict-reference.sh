#!/usr/bin/env bash
# `yolopipe predict` against Ultralytics' own model.predict on the same exported weights (the issue's
# acceptance check): tests/reference/ultralytics_predict.py builds Ultralytics' DetectionModel from
# the model YAML, scale and nc the export records, loads the weights strictly and predicts on the
# same images with the same imgsz, conf and iou; compare_predictions.py then wants the same number of
# boxes per image, the same classes, corners within 1 pixel and confidences within 1e-4 (it prints
# the largest differences). Images: the synthetic validation set and Ultralytics' bus.jpg and
# zidane.jpg (from the installed package), at imgsz 160 (rectangular inputs: 128x160 and 160x96).
#
# Weights: YOLOPIPE_PREDICT_RUN (a run directory, e.g. runs/default after training) when set, else a
# one-epoch YOLOv8n run on 16 generated images, whose scores all sit near the initial class prior:
# --conf 0.002 (YOLOPIPE_PREDICT_CONF overrides) keeps a few boxes on every image, photos included.
# YOLOPIPE_PREDICT_IMGSZ overrides the input size (160).
# Skipped (77) without Ultralytics in ${YOLOPIPE_REFERENCE_PYTHON:-python3}.
# Usage: check-predict-reference.sh SOURCE_ROOT YOLOPIPE
set -euo pipefail
root=$1 yolopipe=$(realpath "$2")
py=${YOLOPIPE_REFERENCE_PYTHON:-python3}
if ! "$py" -c 'import ultralytics' 2> /dev/null; then
  echo "skipped: Ultralytics is not importable by $py (set YOLOPIPE_REFERENCE_PYTHON)"
  exit 77
fi
assets=$("$py" -c 'import os, ultralytics; print(os.path.join(os.path.dirname(ultralytics.__file__), "assets"))')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
conf=${YOLOPIPE_PREDICT_CONF:-0.002} imgsz=${YOLOPIPE_PREDICT_IMGSZ:-160}
run=${YOLOPIPE_PREDICT_RUN:+$(realpath "$YOLOPIPE_PREDICT_RUN")}
cd "$tmp"
if [[ -z $run ]]; then
  cat > exp.yaml <<EOF2
name: ref
model: $root/experiments/models/yolov8.yaml
scale: n
data: data/ref/data.yaml
synth: {train: 16, val: 4, imgsz: 96, classes: 3, seed: 2}
train: {epochs: 1, batch: 8, imgsz: 96, nbs: 8, warmup_epochs: 0, close_mosaic: 0, workers: 1}
parallel: {micro_batches: 2}
output: {dir: runs, plots: false}
EOF2
  "$yolopipe" train exp.yaml > train.out 2>&1 || fail "training: $(tail -3 train.out)"
  run=runs/ref
  val=data/ref/images/val
else
  val=$("$py" -c 'import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); print(c["data"])' "$run/config.yaml")
  val=$(dirname "$val")/images/val
fi
images=("$val"/*.png)
images=("${images[@]:0:8}" "$assets/bus.jpg" "$assets/zidane.jpg")
"$yolopipe" export "$run" --out m.safetensors > /dev/null || fail "export"
"$yolopipe" predict m.safetensors "${images[@]}" --imgsz "$imgsz" --conf "$conf" --out ours > ours.out 2>&1 ||
  fail "predict: $(tail -3 ours.out)"
"$py" "$root/tests/reference/ultralytics_predict.py" m.safetensors "${images[@]}" --imgsz "$imgsz" --conf "$conf" \
  > ref.json 2> ref.err || fail "Ultralytics: $(tail -3 ref.err)"
"$py" "$root/tests/reference/compare_predictions.py" ours/predictions.json ref.json
