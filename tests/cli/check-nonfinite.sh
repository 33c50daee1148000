#!/usr/bin/env bash
# Non-finite gradients in fp32 and bf16 (the CPU backend stores bf16 activations too), one process.
# YOLOPIPE_NAN_GRADS (experiments/SCHEMA.md) puts a NaN into the gradients of chosen optimizer steps.
# Each such step must be skipped: parameters, EMA and optimizer state stay as they were and finite
# (before the fix they all became NaN, with exit 0 and no message), the skips are reported in the
# epoch's progress line, its summary and results.csv, and train.max_skipped_steps skips in a row
# stop the run with one error line and exit 2. Checks, independent of the code under test's own
# reporting: two runs whose every step was skipped (2 and 4 steps) hold the same parameters bit for
# bit and byte-identical exported EMA weights (the initial ones); a run with skips among good steps
# resumes (the loader refuses non-finite weights, EMA and optimizer state).
# Usage: check-nonfinite.sh SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS
set -uo pipefail
root=$1 yolopipe=$2 compare=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# tests/mpi/tiny.yaml on 8 images, 4 per step: 2 optimizer steps per epoch.
exp=(train "$root/tests/mpi/tiny.yaml" --set "model=$root/experiments/models/yolov8.yaml" --set "data=$tmp/data/nf/data.yaml"
     --set "synth={train: 8, val: 4, imgsz: 64, classes: 3, seed: 1}" --set train.batch=4 --set train.nbs=4
     --set parallel.micro_batches=2 --set val.period=0 --set "output.dir=$tmp/runs")

train() {  # train NAME NAN_STEPS|none [--set k=v]...: the run's exit status; stdout in NAME.out, stderr in NAME.err
    local name=$1 steps=$2
    shift 2
    local hook=(env -u YOLOPIPE_NAN_GRADS)
    [ "$steps" = none ] || hook=(env "YOLOPIPE_NAN_GRADS=$steps")
    "${hook[@]}" "$yolopipe" "${exp[@]}" --set "name=$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
}

expect_ok() {  # expect_ok NAME NAN_STEPS [--set k=v]...
    train "$@" && return 0
    fail "$1: exit $?"; tail -n 5 "$tmp/$1.out" "$tmp/$1.err"; return 1
}

for p in fp32 bf16; do
    # Every step skipped: 2 steps (epoch 1) and 4 steps (epochs 1 and 2).
    expect_ok "$p-all2" 1-2 --set device.precision=$p --set train.max_steps=2 &&
    expect_ok "$p-all4" 1-4 --set device.precision=$p --set train.max_steps=4 || continue
    grep -q "^$p: 2 of 2 optimizer steps skipped (the gradient norm or the loss was not finite)" "$tmp/$p-all4.out" ||
        fail "$p-all4: the epoch summary does not report 2 of 2 skipped: $(grep -c skipped "$tmp/$p-all4.out") lines"
    grep -q "^epoch 2/3  step 2/2 .*  skipped 2$" "$tmp/$p-all4.out" || fail "$p-all4: the progress line does not show the skips"
    # results.csv: the last column counts each epoch's skips.
    cut -d, -f1,17 "$tmp/runs/$p-all4/results.csv" | tr '\n' ' ' | grep -qx 'epoch,train/skipped_steps 1,2 2,2 ' ||
        fail "$p-all4: results.csv: $(cut -d, -f1,17 "$tmp/runs/$p-all4/results.csv" | tr '\n' ' ')"
    if out=$("$compare" "$tmp/runs/$p-all2/weights/last" "$tmp/runs/$p-all4/weights/last" 0); then
        echo "ok   $p: 2 and 4 skipped steps leave the same finite parameters: $out"
    else fail "$p: the parameters moved or are not finite: $out"; fi
    for n in 2 4; do "$yolopipe" export "$tmp/runs/$p-all$n" --out "$tmp/$p-all$n.safetensors" >/dev/null 2>&1 ||
        fail "$p-all$n: export: $("$yolopipe" export "$tmp/runs/$p-all$n" --out "$tmp/x.safetensors" 2>&1)"; done
    cmp -s "$tmp/$p-all2.safetensors" "$tmp/$p-all4.safetensors" || fail "$p: the EMA moved during skipped steps"

    # Skips among good steps: steps 2 and 3 of 5; then resume it (all tensors are checked finite).
    expect_ok "$p-mixed" 2-3 --set device.precision=$p --set train.max_steps=5 --set train.max_skipped_steps=3 &&
    grep -q "^skipped_steps: 2$" "$tmp/runs/$p-mixed/weights/last/manifest.yaml" &&
    expect_ok "$p-mixed" none --resume --set device.precision=$p --set train.max_steps=6 ||
        fail "$p-mixed: $(cat "$tmp/runs/$p-mixed/weights/last/manifest.yaml" "$tmp/$p-mixed.err" 2>&1 | tr '\n' ' ')"

    # train.max_skipped_steps in a row: steps 2, 3 and 4 skipped, the run stops at epoch 2 batch 2.
    train "$p-limit" 2-9 --set device.precision=$p --set train.max_skipped_steps=3
    rc=$?
    want="--set train.max_skipped_steps:1:1: 3 optimizer steps in a row skipped, the last at epoch 2 batch 2: the gradient norm or the loss was not finite (train.max_skipped_steps is 3); training diverged: lower train.lr0 or check the data"
    [ $rc = 2 ] || fail "$p-limit: exit $rc, expected 2"
    [ "$(cat "$tmp/$p-limit.err")" = "$want" ] || fail "$p-limit: stderr: $(cat "$tmp/$p-limit.err")"
done

# The hook's value is checked like any input.
YOLOPIPE_NAN_GRADS=3-1 "$yolopipe" "${exp[@]}" --set name=bad >/dev/null 2>"$tmp/bad.err"
rc=$?
[ $rc = 2 ] && [ "$(cat "$tmp/bad.err")" = "YOLOPIPE_NAN_GRADS: expected an optimizer step or a range FIRST-LAST (steps from 1), found '3-1'" ] ||
    fail "YOLOPIPE_NAN_GRADS=3-1: exit $rc: $(cat "$tmp/bad.err")"

echo "$failures failure(s)"
[ $failures = 0 ]
