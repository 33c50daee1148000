#!/usr/bin/env bash
# Files that are not what the command line or an experiment says they are (framework/core/fsutil.h):
#   - bounded reads: an experiment that is a FIFO (without a writer: opening it would wait forever),
#     a folder, /dev/zero as the model or the dataset (read whole, it grows until memory runs out),
#     a YAML file over the 16 MiB cap (sparse: nothing is written) each end in one line naming the
#     file and the reason, exit 2, within a hard time limit;
#   - safe writes: `export --out` a FIFO or a folder is refused and leaves it as it was (a FIFO
#     stands in for /dev/full: replacing it needs no root and harms nothing); the "last.tmp-<pid>"
#     folders of killed runs are removed at the next save (only those of dead processes, only that
#     exact name); a write past `ulimit -f` is one line naming the file, not a death by SIGXFSZ;
#   - data of the other task's layout (a detection dataset YAML under `task: classify`, a folder under
#     detect) is reported at the experiment's task or data value (it once had no position).
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
train: {epochs: 2, batch: 2, imgsz: 64, nbs: 2, warmup_epochs: 0, close_mosaic: 0, workers: 1}
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

# ---- safe writes -------------------------------------------------------------------------------------
"$yolopipe" train "$tmp/exp.yaml" --set train.max_steps=1 > "$tmp/out" 2>&1 || fail "the first run: $(cat "$tmp/out")"
run=$tmp/runs/files
mkfifo "$tmp/out-fifo.safetensors"
expect_error "$tmp/out-fifo.safetensors: not a regular file (a device, FIFO or socket); refusing to replace it" \
  export "$run" --out "$tmp/out-fifo.safetensors"
[[ -p $tmp/out-fifo.safetensors ]] || fail "export --out a FIFO replaced it"
mkdir "$tmp/out-dir.safetensors"
expect_error "$tmp/out-dir.safetensors: is a directory; give the name of a file to write" export "$run" --out "$tmp/out-dir.safetensors"

# A process that has ended, for its id; this shell ($$) is alive.
sleep 0 & dead=$!
wait "$dead"
weights=$run/weights
mkdir -p "$weights/last.tmp-$dead/sub" "$weights/last.tmp-$$" "$weights/last.tmp-${dead}x" "$weights/lastx.tmp-$dead"
touch "$weights/last.tmp-$dead/sub/stage-0.safetensors"
"$yolopipe" train "$tmp/exp.yaml" --resume --set train.max_steps=2 > "$tmp/out" 2>&1 || fail "the resumed run: $(cat "$tmp/out")"
[[ ! -e $weights/last.tmp-$dead ]] || fail "a dead process's last.tmp-$dead is still there after a save"
for kept in "last.tmp-$$" "last.tmp-${dead}x" "lastx.tmp-$dead"; do
  [[ -d $weights/$kept ]] || fail "$kept was removed (a live process's, or not our temporary name)"
done

set +e
(ulimit -f 64; exec "$yolopipe" export "$run" --out "$tmp/big.safetensors") > "$tmp/out" 2> "$tmp/err"
rc=$?
set -e
[[ $rc == 2 ]] || fail "export past ulimit -f: exit $rc, expected 2: $(cat "$tmp/err")"
grep -Eqx "$tmp/big\.safetensors\.tmp-[0-9]+: write failed: File too large" "$tmp/err" && [[ $(wc -l < "$tmp/err") == 1 ]] ||
  fail "export past ulimit -f: expected one line naming the file, got: $(cat "$tmp/err")"
[[ ! -e $tmp/big.safetensors ]] || fail "export past ulimit -f left a partial file"

# ---- the task and the data's layout ------------------------------------------------------------------
expect_error "--set task:1:1: task is classify but data $tmp/data/files/data.yaml is not a folder: classification data is \
a folder with train/ and val/ class folders (a dataset YAML is for task: detect)" train "$tmp/exp.yaml" --set task=classify
expect_error "--set data:1:1: data $tmp/data/files is a folder but the task is detect: detection data is a dataset YAML \
(class folders are for task: classify)" train "$tmp/exp.yaml" --set data="$tmp/data/files"
echo "file checks passed"
