#!/usr/bin/env bash
# Files that are not what the command line or an experiment says they are (framework/core/fsutil.h):
#   - bounded reads: an experiment that is a FIFO (without a writer: opening it would wait forever),
#     a folder, /dev/zero as the model or the dataset (read whole, it grows until memory runs out),
#     a YAML file over the 16 MiB cap (sparse: nothing is written) each end in one line naming the
#     file and the reason, exit 2, within a hard time limit.
# Usage: check-files.sh SOURCE_ROOT YOLOPIPE
set -euo pipefail
root=$1 yolopipe=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_error LINE ARGS...: exit 2 within 20 s (a hang fails, it does not block the suite), and
# stderr is exactly LINE.
expect_error() {
  local line=$1; shift
  set +e
  timeout 20 "$yolopipe" "$@" > "$tmp/out" 2> "$tmp/err"
  local rc=$?
  set -e
  [[ $rc != 124 ]] || fail "yolopipe $*: still running after 20 s (blocked on a read?)"
  [[ $rc == 2 ]] || fail "yolopipe $*: exit $rc, expected 2: $(tail -3 "$tmp/err")"
  printf '%s\n' "$line" | cmp -s - "$tmp/err" || fail "yolopipe $*: stderr
  expected: $line
  got:      $(cat "$tmp/err")"
}

model=$root/tests/reference/models/tiny-detect.yaml
cat > "$tmp/exp.yaml" <<EOF
name: files
model: $model
data: data/files/data.yaml
synth: {train: 4, val: 2, imgsz: 64, classes: 3, seed: 1}
train: {epochs: 1, batch: 2, imgsz: 64, nbs: 2, warmup_epochs: 0, close_mosaic: 0, workers: 1}
parallel: {micro_batches: 1}
output: {dir: $tmp/runs}
EOF

# ---- bounded reads -----------------------------------------------------------------------------------
mkfifo "$tmp/fifo.yaml"
expect_error "$tmp/fifo.yaml: not a regular file (a device, FIFO or socket)" plan "$tmp/fifo.yaml"
mkdir "$tmp/folder.yaml"
expect_error "$tmp/folder.yaml: is a directory" plan "$tmp/folder.yaml"
expect_error "/dev/zero: not a regular file (a device, FIFO or socket)" info /dev/zero
expect_error "/dev/zero: not a regular file (a device, FIFO or socket)" plan "$tmp/exp.yaml" --set model=/dev/zero
expect_error "/dev/zero: not a regular file (a device, FIFO or socket)" train "$tmp/exp.yaml" --set data=/dev/zero
truncate -s 17M "$tmp/huge.yaml"
expect_error "$tmp/huge.yaml: larger than the 16 MiB limit for YAML files" info "$tmp/huge.yaml"
echo "file checks passed"
