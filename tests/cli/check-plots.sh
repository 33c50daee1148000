#!/usr/bin/env bash
# The run directory's JPEGs (framework/train/trainer_plots.c), from one-epoch runs on tiny synthetic
# sets at 64 px:
#   - detection, one process: labels.jpg, train_batch0..2.jpg, val_batch0..2_labels.jpg and
#     _pred.jpg, each a whole JPEG (decoded by image_read) of the size plot_images' grid gives
#     (ceil(sqrt(4)) = 2 tiles of 64 px a side; labels.jpg 1600 px), and no other picture or
#     temporary file;
#   - close_mosaic adds the first three batches without mosaic (train_batch8..10 here);
#   - augment.render=backend (recipes rendered by the backend) gives the same train_batch files;
#   - a picture that cannot be written is one warning line, the run goes on (and --resume does not
#     draw labels.jpg again);
#   - output.plots=false writes none of them;
#   - classification: the batch grids, no labels.jpg (Ultralytics plots labels for detection only);
#   - two pipeline stages under mpirun: the same files, written once (by world rank 0), the
#     training batches byte for byte those of the one-process run.
# Usage: check-plots.sh SOURCE_ROOT YOLOPIPE IMAGE_SIZE
set -euo pipefail
root=$1 yolopipe=$2 image_size=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# The multi-rank tests' tiny experiment (32 training and 12 validation images at 64 px), here with
# the tiny test models (scale null: they have none), one epoch and batches of 4: 8 training and 3
# validation batches of 4 images. The classification twin is that file with a classification synth.
sed -e 's/^task: detect/task: classify/' -e 's/^synth: {/synth: {task: classify, /' "$root/tests/mpi/tiny.yaml" \
  > "$tmp/classify.yaml"
common=(--set scale=null --set "output.dir=$tmp/runs" --set train.epochs=1 --set train.batch=4 --set train.nbs=4
        --set parallel.micro_batches=1 --set device.backend=cpu)
detect=("$root/tests/mpi/tiny.yaml" --set "model=$root/tests/reference/models/tiny-detect.yaml"
        --set "data=$tmp/data/det/data.yaml" "${common[@]}")
classify=("$tmp/classify.yaml" --set "model=$root/tests/reference/models/tiny-classify.yaml"
          --set "data=$tmp/data/cls" "${common[@]}")

batches="train_batch0.jpg train_batch1.jpg train_batch2.jpg"
for b in 0 1 2; do batches+=" val_batch${b}_labels.jpg val_batch${b}_pred.jpg"; done

# expect_pictures RUN_DIR NAMES: exactly these pictures (no other .jpg, no temporary file), each
# decoding to its expected size (labels.jpg 1600 px; the grids 2 x 64 px a side: 4 images a batch).
expect_pictures() {
  local dir=$1 names=$2 got want f size
  got=$(cd "$dir" && ls | { grep -E '\.jpg|\.tmp-' || true; } | sort | tr '\n' ' ')
  want=$(tr ' ' '\n' <<< "$names" | { grep . || true; } | sort | tr '\n' ' ')
  [[ $got == "$want" ]] || fail "$dir: pictures
  expected: $want
  got:      $got"
  for f in $names; do
    size=128x128
    [[ $f == labels.jpg ]] && size=1600x1600
    got=$("$image_size" "$dir/$f") || fail "$dir/$f does not decode: $got"
    [[ $got == "$size" ]] || fail "$dir/$f: $got, expected $size"
  done
}

# ---- detection, one process ----------------------------------------------------------------------
"$yolopipe" train "${detect[@]}" --set name=det > "$tmp/out" 2>&1 || fail "detection run: $(tail -5 "$tmp/out")"
expect_pictures "$tmp/runs/det" "labels.jpg $batches"
if grep -q "warning" "$tmp/out"; then fail "detection run warned: $(grep warning "$tmp/out")"; fi

# A backend that renders the images itself (augment.render=backend: the batches hold recipes) gets
# its pictures rendered on the host by the same per-pixel function: the same bytes, the same files.
"$yolopipe" train "${detect[@]}" --set name=rendered --set augment.render=backend > "$tmp/out" 2>&1 ||
  fail "augment.render=backend run: $(tail -5 "$tmp/out")"
for b in 0 1 2; do
  cmp -s "$tmp/runs/det/train_batch$b.jpg" "$tmp/runs/rendered/train_batch$b.jpg" ||
    fail "train_batch$b.jpg differs between augment.render=host and backend"
done

# close_mosaic: the first three batches without mosaic are pictured too, named by their iteration
# (8 batches an epoch: 8..10), as Ultralytics' plot_idx; two validations overwrite the val pictures.
"$yolopipe" train "${detect[@]}" --set name=closing --set train.epochs=2 --set train.close_mosaic=1 \
  --set val.period=1 > "$tmp/out" 2>&1 || fail "close_mosaic run: $(tail -5 "$tmp/out")"
expect_pictures "$tmp/runs/closing" "labels.jpg $batches train_batch8.jpg train_batch9.jpg train_batch10.jpg"

# A picture that cannot be written is one warning line and the run goes on: stopped after its first
# step, the run gets a folder where train_batch1.jpg belongs, and the resumed run warns about it once,
# finishes, and writes the others (labels.jpg is not drawn again on resume: it is the first run's).
"$yolopipe" train "${detect[@]}" --set name=warn --set train.max_steps=1 > "$tmp/out" 2>&1 ||
  fail "max_steps=1 run: $(tail -5 "$tmp/out")"
mkdir "$tmp/runs/warn/train_batch1.jpg"
touch -d '2000-01-01' "$tmp/runs/warn/labels.jpg"
"$yolopipe" train "${detect[@]}" --set name=warn --resume > "$tmp/out" 2>&1 || fail "resumed run: $(tail -5 "$tmp/out")"
[[ $(grep -c "warning" "$tmp/out") == 1 ]] || fail "resumed run: expected one warning: $(cat "$tmp/out")"
grep -qx "warning: picture not written: $tmp/runs/warn/train_batch1.jpg: is a directory; give the name of a file to write" \
  "$tmp/out" || fail "resumed run: $(grep warning "$tmp/out")"
[[ -d $tmp/runs/warn/train_batch1.jpg && -f $tmp/runs/warn/results.csv ]] || fail "resumed run: folder replaced or no results"
[[ $(stat -c %Y "$tmp/runs/warn/labels.jpg") == $(date -d '2000-01-01' +%s) ]] || fail "resume drew labels.jpg again"
rmdir "$tmp/runs/warn/train_batch1.jpg"
expect_pictures "$tmp/runs/warn" "labels.jpg ${batches/train_batch1.jpg /}"

# ---- output.plots=false ----------------------------------------------------------------------------
"$yolopipe" train "${detect[@]}" --set name=off --set output.plots=false > "$tmp/out" 2>&1 ||
  fail "plots=false run: $(tail -5 "$tmp/out")"
[[ -f $tmp/runs/off/results.csv ]] || fail "plots=false run wrote no results.csv"
expect_pictures "$tmp/runs/off" ""

# ---- classification --------------------------------------------------------------------------------
"$yolopipe" train "${classify[@]}" --set name=cls > "$tmp/out" 2>&1 ||
  fail "classification run: $(tail -5 "$tmp/out")"
expect_pictures "$tmp/runs/cls" "$batches"

# ---- two stages under mpirun -------------------------------------------------------------------------
MPIRUN_TIME_LIMIT=90 "$root/tests/mpi/mpirun.sh" 2 "$yolopipe" train "${detect[@]}" --set name=two \
  --set parallel.stages=2 --set parallel.micro_batches=2 > "$tmp/out" 2>&1 ||
  fail "2-stage run: $(tail -5 "$tmp/out")"
expect_pictures "$tmp/runs/two" "labels.jpg $batches"
# World rank 0 holds stage 0 (the pixels) but not the targets, which it builds again: the same
# batches as the one-process run, so the same files.
for f in labels.jpg train_batch0.jpg train_batch1.jpg train_batch2.jpg; do
  cmp -s "$tmp/runs/det/$f" "$tmp/runs/two/$f" || fail "$f differs between one process and two stages"
done
echo "plots: ok"
