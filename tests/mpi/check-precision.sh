#!/bin/bash
# Mixed precision across pipeline stages (DESIGN.md "Semantics" with device.precision bf16/fp16), on
# the CPU backend (forced, also where there is a GPU: it is deterministic across processes), whose
# 16-bit activations are the reference the GPU is compared with:
# - bf16 and fp16 training under 2 stages (1f1b, zb-h1's split backward) and 4 stages (gpipe) must
#   give the parameters and running statistics of one process bit for bit: the activations that
#   cross stages are the same 16-bit values a single process stores, and with one replica every sum
#   runs in the same order.
# - fp16 whose gradients overflow (a classification gain of 30 makes the gradients, times the initial
#   loss scale of 65536, overflow float16) must skip those steps on every rank alike (all 4 of the
#   first epoch, halving the scale to 4096), report them, then train on with finite weights equal to
#   the one-process run's.
#
# usage: check-precision.sh SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS
set -u
source "$(dirname "$0")/tiny-env.sh"
common+=(--set train.max_steps=4)

train() {  # train NAME NP [--set k=v]...
    local name=$1 np=$2
    shift 2
    local cmd=("$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" --set "name=$name" "$@")
    if [ "$np" = 1 ]; then "${cmd[@]}" >"$name.log" 2>&1
    else "$src/tests/mpi/mpirun.sh" "$np" "${cmd[@]}" >"$name.log" 2>&1; fi
    local rc=$?
    [ $rc = 0 ] && return 0
    fail "$name: exit $rc"; tail -n 15 "$name.log"; return 1
}

check() {  # check NAME REFERENCE: bit for bit, running statistics included
    local out
    if out=$("$compare" "runs/$1/weights/last" "runs/$2/weights/last" 0 buffers); then echo "ok   $1 vs $2: $out"
    else fail "$1 vs $2: $out"; fi
}

for precision in bf16 fp16; do
    train "$precision-ref" 1 --set device.precision=$precision || continue
    grep -q "stores activations in $precision" "$precision-ref.log" || fail "$precision-ref: no note about $precision"
    for layout in "2 1f1b" "2 zb-h1" "4 gpipe"; do
        read -r stages schedule <<<"$layout"
        name=$precision-s$stages-$schedule
        train "$name" "$stages" --set device.precision=$precision --set parallel.stages=$stages \
            --set parallel.schedule=$schedule && check "$name" "$precision-ref"
    done
done

# The 16-bit runs must differ from float32's (the precision took effect).
if train fp32-ref 1; then
    for precision in bf16 fp16; do
        [ -d "runs/$precision-ref" ] && "$compare" "runs/$precision-ref/weights/last" runs/fp32-ref/weights/last 0 >/dev/null &&
            fail "$precision-ref: the same weights as fp32"
    done
fi

overflow=(--set device.precision=fp16 --set train.cls=30 --set train.max_steps=8)
for layout in "1 overflow-ref" "2 overflow-s2"; do
    read -r stages name <<<"$layout"
    train "$name" "$stages" "${overflow[@]}" --set parallel.stages=$stages || continue
    grep -q "fp16: 4 of 4 optimizer steps skipped (gradients overflowed); loss scale now 4096" "$name.log" ||
        { fail "$name: the first epoch's skipped steps are not reported"; grep "fp16:" "$name.log"; }
done
[ -d runs/overflow-s2 ] && check overflow-s2 overflow-ref  # compare_weights also fails on non-finite values

echo "$failures failure(s)"
[ $failures = 0 ]
