#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the main job. For now that is the layer
# table of the bundled YOLOv8n model; the training issues turn it into the default experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
./build/yolopipe info experiments/models/yolov8.yaml --scale n "$@"
