#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and trains the default experiment
# (experiments/default.yaml: YOLOv8n on the synthetic shapes dataset, generated on first use).
# Extra arguments go to `yolopipe train`, e.g. --set train.epochs=2
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
./build/yolopipe train experiments/default.yaml "$@"
