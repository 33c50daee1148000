#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and trains the default experiment
# (experiments/default.yaml: YOLOv8n on the synthetic shapes dataset, generated on first use, as
# 2 pipeline stages x 2 replicas under mpirun; CPU backend when there is no GPU).
# Extra arguments go to `yolopipe train`, e.g. --set train.epochs=2 --set parallel.replicas=1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
experiment=experiments/default.yaml
# As many processes as the experiment (with the --set overrides) has ranks: stages x replicas.
sets=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
    --set) sets+=(--set "${args[i + 1]}"); i=$((i + 1)) ;;
    --set=*) sets+=("${args[i]}") ;;
    esac
done
ranks=$(./build/yolopipe plan "$experiment" "${sets[@]}" --json | grep -o '"world_size": [0-9]*' | grep -o '[0-9]*$')
flags=(-np "$ranks" --oversubscribe)            # more ranks than cores is fine: each gets a share
if [[ $(id -u) == 0 ]]; then flags+=(--allow-run-as-root); fi
export OMPI_MCA_btl_vader_single_copy_mechanism=none  # containers forbid Open MPI's cross-memory attach
exec mpirun "${flags[@]}" ./build/yolopipe train "$experiment" --trace "$@"  # trace.json in the run directory
