#!/bin/bash
# Shared by the equivalence tests (check-equivalence.sh, check-equivalence-families.sh): a work
# directory, and train / check / resume_from over tests/mpi/tiny.yaml with the model $model (a path).
#
# usage: source equivalence-lib.sh SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS MODEL_YAML
set -u
export OMP_NUM_THREADS=1
src=$(realpath "$1") yolopipe=$(realpath "$2") compare=$(realpath "$3") model=$(realpath "$4")
tol=1e-5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
common=(--set "model=$model" --set "data=$work/data/tiny/data.yaml"
        --set "output.dir=$work/runs" --set train.epochs=30)

train() {  # train NAME NP [--set k=v]...
    local name=$1 np=$2
    shift 2
    local cmd=("$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" --set "name=$name" "$@")
    if [ "$np" = 0 ]; then "${cmd[@]}" >"$name.log" 2>&1
    else "$src/tests/mpi/mpirun.sh" "$np" "${cmd[@]}" >"$name.log" 2>&1; fi
    local rc=$?
    if [ $rc != 0 ]; then
        echo "FAIL $name: exit $rc"; tail -n 15 "$name.log"; failures=$((failures + 1)); return 1
    fi
}

check() {  # check NAME REFERENCE [buffers] [TOLERANCE] [floor=F]
    local out
    if out=$("$compare" "runs/$1/weights/last" "runs/$2/weights/last" "${4:-$tol}" ${3:-} ${5:-}); then
        echo "ok   $1 vs $2: $out"
    else
        echo "FAIL $1 vs $2: $out"; failures=$((failures + 1))
    fi
}

# From the base models (one process, micro-batches of 2 images, 40 steps): run NAME resumes a copy
# of base-BATCH (or base-BATCH-ms) for three more steps under the given layout.
resume_from() {  # resume_from BASE NAME NP STEPS [--set k=v]...
    local base=$1 name=$2 np=$3 steps=$4 batch=${1#base-}
    shift 4
    rm -rf "runs/$name" && cp -r "runs/$base" "runs/$name"
    train "$name" "$np" --resume --set train.max_steps=$steps --set "train.batch=${batch%%-*}" "$@"
}
