#!/usr/bin/env bash
# Installs the Debian packages yolopipe builds and tests with, skipping those already present.
# Safe to run repeatedly; uses sudo when not root. CUDA is optional and never installed here: the
# build uses /usr/local/cuda when it is there.
set -euo pipefail

packages=(
  build-essential pkg-config meson ninja-build python3
  libyaml-dev libopenblas-dev libcmocka-dev
  libdnnl-dev                   # oneDNN: the CPU backend's convolutions (kernels/cpu/cpu_conv.c)
  libopenmpi-dev openmpi-bin
  libpng-dev libjpeg62-turbo-dev
  libcairo2-dev fontconfig fonts-dejavu-core  # boxes and text on the run's pictures (framework/eval/draw.c): cairo finds DejaVu Sans through fontconfig
  python3-matplotlib            # the figures of runs, studies and traces (experiments/yolopipe_plot.py)
  slurmctld slurmd slurm-client munge   # tests/mpi/check-slurm.sh: srun on a one-node cluster
  clang libclang-rt-14-dev libomp-14-dev  # the fuzz targets (tests/fuzz): libFuzzer, and OpenMP under clang
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "yolopipe: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
