#!/usr/bin/env bash
# Configures (once) and builds one build directory. Usage: scripts/build.sh DIR [meson options...]
# CUDA is picked up automatically from /usr/local/cuda when present (-Dcuda=auto).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1
shift
if [[ -d /usr/local/cuda/bin ]]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
# Configure once; later runs apply the given options to the existing directory.
if [[ -f "$dir/build.ninja" ]]; then
  log=$(meson configure "$dir" "$@" 2>&1) || { echo "$log" >&2; exit 1; }
else
  log=$(meson setup "$dir" "$@" 2>&1) || { echo "$log" >&2; exit 1; }
fi
# On a terminal ninja rewrites one progress line in place; in a log, one line to start and ninja's last.
echo "building $dir (ninja)..."
if [[ -t 1 ]]; then
  ninja -C "$dir"
else
  out=$(ninja -C "$dir" 2>&1) || { echo "$out" >&2; exit 1; }
  echo "${out##*$'\n'}"
fi
