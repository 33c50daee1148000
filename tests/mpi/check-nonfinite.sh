#!/bin/bash
# Non-finite gradients under pipeline stages and replicas (tests/cli/check-nonfinite.sh is the
# one-process test). YOLOPIPE_NAN_GRADS puts a NaN into the gradients of the last stage's ranks only:
# the other stages' gradients are finite, and only the global gradient norm (summed over the stages
# in the batch's all-reduce) tells them to skip. Every rank must skip the same steps:
# - steps 2 and 3 of 5 skipped under 2 stages (1f1b) give the parameters and running statistics of
#   one process with the same skips bit for bit (one replica adds in one process's order), finite;
# - every step skipped (4 steps) under 1, 2 stages, 2 replicas and 2 x 2 leaves the initial
#   parameters, bit for bit the same in every layout (a rank that stepped alone would differ);
# - 3 skipped steps in a row with train.max_skipped_steps=3 end a 2-stage run with exit 2 and the
#   error once (rank 0 prints it; the others fail alike and quietly).
# Before the fix the NaN reached every parameter of the last stage (compare_weights fails on
# non-finite values) and the runs ended with exit 0.
#
# usage: check-nonfinite.sh SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS
set -u
source "$(dirname "$0")/tiny-env.sh"
common+=(--set val.period=0)

run() {  # run NAME NP NAN_STEPS [--set k=v]...: the exit status; stdout and stderr in NAME.out, NAME.err
    local name=$1 np=$2 steps=$3
    shift 3
    local cmd=(env "YOLOPIPE_NAN_GRADS=$steps" "$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" --set "name=$name" "$@")
    if [ "$np" = 1 ]; then "${cmd[@]}" >"$name.out" 2>"$name.err"
    else "$src/tests/mpi/mpirun.sh" "$np" "${cmd[@]}" >"$name.out" 2>"$name.err"; fi
}

train() {  # train NAME NP NAN_STEPS [--set k=v]...
    run "$@" && return 0
    fail "$1: exit $?"; tail -n 15 "$1.out" "$1.err"; return 1
}

check() {  # check NAME REFERENCE [buffers]: bit for bit, and finite
    local out
    if out=$("$compare" "runs/$1/weights/last" "runs/$2/weights/last" 0 ${3:-}); then echo "ok   $1 vs $2: $out"
    else fail "$1 vs $2: $out"; fi
}

# Skips among good steps: 4 optimizer steps per epoch (32 images, 8 per step).
mixed=(--set train.max_steps=5 --set train.max_skipped_steps=3)
if train mixed-ref 1 2-3 "${mixed[@]}" && train mixed-s2 2 2-3 "${mixed[@]}" --set parallel.stages=2; then
    for name in mixed-ref mixed-s2; do
        grep -q "^fp32: 2 of 4 optimizer steps skipped (the gradient norm or the loss was not finite)" "$name.out" ||
            fail "$name: the skipped steps are not reported"
    done
    check mixed-s2 mixed-ref buffers
fi

# Every step skipped, in every layout.
all=(--set train.max_steps=4)
if train all-ref 1 1-4 "${all[@]}"; then
    for layout in "2 2 1" "2 1 2" "4 2 2"; do
        read -r np stages replicas <<<"$layout"
        name=all-s$stages-r$replicas
        train "$name" "$np" 1-4 "${all[@]}" --set parallel.stages=$stages --set parallel.replicas=$replicas &&
            check "$name" all-ref
    done
fi

# The limit, under 2 stages: steps 2, 3 and 4 skipped.
run limit-s2 2 2-9 --set parallel.stages=2 --set train.max_skipped_steps=3
rc=$?
want="--set train.max_skipped_steps:1:1: 3 optimizer steps in a row skipped, the last at epoch 1 batch 4: the gradient norm or the loss was not finite (train.max_skipped_steps is 3); training diverged: lower train.lr0 or check the data"
[ $rc = 2 ] || fail "limit-s2: exit $rc, expected 2"
[ "$(grep -c -F -- "max_skipped_steps" limit-s2.err)" = 1 ] && grep -qxF -- "$want" limit-s2.err ||
    { fail "limit-s2: the error is not printed once as expected:"; cat limit-s2.err; }

echo "$failures failure(s)"
[ $failures = 0 ]
