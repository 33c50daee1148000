#!/usr/bin/env bash
# A checkpoint is untrusted input (framework/train/checkpoint.h). One short run of YOLOv8n on a
# generated 8-image set leaves weights/last (epoch 0, batch 1 of 2, one optimizer step); each case
# edits a copy of it as a careless or hostile user would (the manifest with sed, a stage file's
# metadata, shapes or values with edit-safetensors.py) and runs `train --resume`, `val` or `export`
# on it: each must exit 2 with exactly one line on stderr naming the file (with line:col in the
# manifest), the key or tensor and the reason. Before the checks these inputs corrupted the heap,
# failed internal checks (exit 1), overflowed, resumed a run that never steps again or never saves
# `best` again, or loaded transposed, flattened or NaN weights.
# Usage: check-checkpoint.sh SOURCE_ROOT YOLOPIPE
set -euo pipefail
root=$1 yolopipe=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
edit_safetensors() { python3 "$root/tests/cli/edit-safetensors.py" "$@"; }

cat > "$tmp/exp.yaml" <<EOF
name: ck
model: $root/experiments/models/yolov8.yaml
scale: n
data: data/ck/data.yaml
synth: {train: 8, val: 4, imgsz: 64, classes: 3, seed: 1}
train: {epochs: 2, batch: 4, imgsz: 64, nbs: 4, warmup_epochs: 0, close_mosaic: 0, workers: 1}
parallel: {micro_batches: 2}
output: {dir: $tmp/base}
EOF
"$yolopipe" train "$tmp/exp.yaml" --set train.max_steps=1 > "$tmp/out" 2>&1 || fail "the first run: $(cat "$tmp/out")"
base=$tmp/base/ck/weights/last
grep -qx 'batch: 1' "$base/manifest.yaml" || fail "the first run did not stop mid-epoch: $(cat "$base/manifest.yaml")"

# fresh: a copy of the run as output.dir $dir; $last is its checkpoint, $stage its stage file.
n=0
fresh() {
  n=$((n + 1))
  dir=$tmp/case$n
  cp -r "$tmp/base" "$dir"
  last=$dir/ck/weights/last stage=$dir/ck/weights/last/stage-0.safetensors
}
# manifest SED: edits the copy's manifest (the edit must change it).
manifest() {
  sed -i "$1" "$last/manifest.yaml"
  if cmp -s "$base/manifest.yaml" "$last/manifest.yaml"; then fail "sed '$1' changed nothing"; fi
}
# expect LINE ARGS...: yolopipe ARGS exits 2 with exactly LINE on stderr.
expect() {
  local line=$1; shift
  set +e
  "$yolopipe" "$@" > "$tmp/out" 2> "$tmp/err"
  local rc=$?
  set -e
  [[ $rc == 2 ]] || fail "case $n, yolopipe $*: exit $rc, expected 2: $(tail -3 "$tmp/err")"
  printf '%s\n' "$line" | cmp -s - "$tmp/err" || fail "case $n, yolopipe $*: stderr
  expected: $line
  got:      $(cat "$tmp/err")"
}
resume() { expect "$1" train "$tmp/exp.yaml" --resume --set output.dir="$dir"; }

# The untouched checkpoint resumes, validates and exports.
fresh
"$yolopipe" train "$tmp/exp.yaml" --resume --set output.dir="$dir" > "$tmp/out" 2>&1 || fail "resume: $(cat "$tmp/out")"
fresh
"$yolopipe" val "$tmp/exp.yaml" --weights "$last" > "$tmp/out" 2>&1 || fail "val: $(cat "$tmp/out")"
"$yolopipe" export "$dir/ck" --out "$tmp/ema.safetensors" > "$tmp/out" 2>&1 || fail "export: $(cat "$tmp/out")"

# ---- the manifest: positions, counters and their relations ------------------------------------------
fresh; manifest 's/^epoch: 0$/epoch: -1000/; s/^batch: 1$/batch: 0/'
resume "$last/manifest.yaml:3:8: epoch must be an integer from 0 to 2 (train.epochs), found -1000"
fresh; manifest 's/^batch: 1$/batch: -1/'
resume "$last/manifest.yaml:4:8: batch must be an integer from 0 to 1 (the run has 2 batches per epoch), found -1"
# Refused, but the iteration it gives was still computed from it: epoch x batches + 2^63 - 1 overflowed
# (UBSan, in clang's fuzz build: tests/fuzz/corpus/manifest/crash-batch-overflow.yaml; gcc computes the
# sum only where it is used, so here the case checks the message).
fresh; manifest 's/^batch: 1$/batch: 9223372036854775807/'
resume "$last/manifest.yaml:4:8: batch must be an integer from 0 to 1 (the run has 2 batches per epoch), found 9223372036854775807"
fresh; manifest 's/^iteration: 1$/iteration: -5/'
resume "$last/manifest.yaml:5:12: iteration must be 1 (epoch 0 x 2 batches per epoch + batch 1), found -5"
fresh; manifest 's/^optimizer_steps: 1$/optimizer_steps: -3/'
resume "$last/manifest.yaml:7:18: optimizer_steps must be 1 (at most one step per batch up to last_step_iteration), found -3"
fresh; manifest 's/^last_step_iteration: 0$/last_step_iteration: 999999999/'
resume "$last/manifest.yaml:6:22: last_step_iteration must be an integer from -1 to 0 (-1 or a batch before iteration), found 999999999"
fresh; manifest 's/^best_fitness: -1$/best_fitness: .nan/'
resume "$last/manifest.yaml:9:15: best_fitness must be -1 (no validation yet) or a fitness from 0 to 1, found .nan"
fresh; manifest 's/^bn_batches: 2$/bn_batches: 3/'
resume "$last/manifest.yaml:8:13: bn_batches must be 2 (iteration 1 x 2 forward passes per batch), found 3"
fresh; manifest 's/^seed: 0$/seed: 4/'
resume "$last/manifest.yaml:10:7: seed must be 0 (train.seed), found 4"
fresh; manifest 's/^loss_scale: 1$/loss_scale: 1024/'
resume "$last/manifest.yaml:11:13: loss_scale must be 1 (loss scaling is fp16's only), found 1024"
fresh; manifest 's/layers: \[0, 22\]/layers: [0, 99]/'
resume "$last/manifest.yaml:16:45: stages[0].layers[1] must be 22 (the model's last layer), found 99"
fresh; manifest 's/^format: 1$/format: "1"/'
resume "$last/manifest.yaml:2:9: format must be 1 (the format this yolopipe reads), found a quoted string '1'"
fresh; manifest '$a epochs: 7'
resume "$last/manifest.yaml:17:1: unknown key 'epochs' in a checkpoint manifest"
fresh; manifest 's/^skipped_in_a_row: 0$/skipped_in_a_row: 1/'
resume "$last/manifest.yaml:14:19: skipped_in_a_row must be 0 (at most skipped_steps), found 1"
# Without an experiment to resume (export), the manifest's own rules still hold.
fresh; manifest 's/^epoch: 0$/epoch: -1/'
expect "$last/manifest.yaml:3:8: epoch must be an integer >= 0, found -1" export "$dir/ck" --weights last --out "$tmp/x.safetensors"

# ---- a stage file's metadata ------------------------------------------------------------------------
for value in -1000000 99999999999999999999999 abc; do
  fresh; edit_safetensors "$stage" meta "ema_updates=$value"
  resume "$stage: metadata ema_updates must be an integer from 0 to 1 (the manifest's optimizer_steps), found '$value'"
done

# ---- tensors: shapes whole, values finite -----------------------------------------------------------
for shape in 3,16,3,3 432; do
  fresh; edit_safetensors "$stage" shape "model.0.conv.weight=$shape"
  resume "$stage: tensor 'model.0.conv.weight' is F32 [$shape], the model needs F32 [16,3,3,3]"
done
fresh; edit_safetensors "$stage" shape "ema.model.0.conv.weight=432"
expect "$stage: tensor 'ema.model.0.conv.weight' is F32 [432], the model needs F32 [16,3,3,3]" \
  val "$tmp/exp.yaml" --weights "$last"
expect "$stage: tensor 'ema.model.0.conv.weight' is F32 [432], but 'model.0.conv.weight' is F32 [16,3,3,3]" \
  export "$dir/ck" --weights last --out "$tmp/x.safetensors"
finite="a checkpoint holds finite values only"
fresh; edit_safetensors "$stage" nan model.0.conv.weight 5
resume "$stage: tensor 'model.0.conv.weight' holds NaN at element 5; $finite"
expect "$stage: tensor 'model.0.conv.weight' holds NaN at element 5; $finite" val "$tmp/exp.yaml" --weights "$last"
fresh; edit_safetensors "$stage" nan ema.model.2.cv1.bn.running_var 1
resume "$stage: tensor 'ema.model.2.cv1.bn.running_var' holds NaN at element 1; $finite"
expect "$stage: tensor 'ema.model.2.cv1.bn.running_var' holds NaN at element 1; $finite" \
  export "$dir/ck" --weights last --out "$tmp/x.safetensors"
fresh; edit_safetensors "$stage" nan optimizer.model.0.conv.weight.exp_avg 0
resume "$stage: tensor 'optimizer.model.0.conv.weight.exp_avg' holds NaN at element 0; $finite"
[[ ! -e $tmp/x.safetensors ]] || fail "export wrote a file from a refused checkpoint"
echo "checkpoint checks passed ($n copies)"
