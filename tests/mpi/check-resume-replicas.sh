#!/bin/bash
# Resuming under data-parallel replicas is bit-identical to the uninterrupted run, even from a
# checkpoint at an epoch's end that falls between two optimizer steps (the soak script found it:
# tests/soak/soak.sh). There each replica holds gradients accumulated since the last step and
# running statistics of its own micro-batches since then; the checkpoint keeps replica 0's. Before
# the fix the uninterrupted run kept each replica's own and the resumed one their sum and replica 0's
# statistics: the runs parted by 0.12 (relative) within an epoch.
# 1 stage x 2 replicas, 4 images a batch (1 per micro-batch), nbs 64: warm-up accumulates over
# 2 to 4 batches here, so an epoch of 8 batches ends between two steps. The run is SIGKILLed as soon
# as its first checkpoint exists and resumed; then both must equal, parameters and running statistics.
#
# usage: check-resume-replicas.sh SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS
set -u
source "$(dirname "$0")/tiny-env.sh"
layout=(--set parallel.replicas=2 --set parallel.micro_batches=2 --set train.batch=4 --set train.nbs=64
        --set train.epochs=8 --set val.period=0)

"$src/tests/mpi/mpirun.sh" 2 "$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" "${layout[@]}" \
    --set name=whole >whole.log 2>&1 || { fail "the uninterrupted run: exit $?"; tail -n 15 whole.log; }

setsid "$src/tests/mpi/mpirun.sh" 2 "$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" "${layout[@]}" \
    --set name=killed >killed-1.log 2>&1 &
job=$!
for _ in $(seq 1 1200); do
    [ -e runs/killed/weights/last/manifest.yaml ] && break
    kill -0 $job 2>/dev/null || break
    sleep 0.1
done
kill -9 -- -$job 2>/dev/null
wait $job 2>/dev/null
epoch=$(sed -n 's/^epoch: //p' runs/killed/weights/last/manifest.yaml 2>/dev/null)
if [ -z "$epoch" ] || [ "$epoch" -ge 8 ]; then
    fail "no checkpoint before the end to resume from (epoch '${epoch}')"; tail -n 15 killed-1.log
else
    echo "killed after the checkpoint of epoch $epoch"
    "$src/tests/mpi/mpirun.sh" 2 "$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" "${layout[@]}" \
        --set name=killed --resume >killed-2.log 2>&1 || { fail "the resumed run: exit $?"; tail -n 15 killed-2.log; }
    grep "^resuming" killed-2.log
    if out=$("$compare" runs/whole/weights/last runs/killed/weights/last 0 buffers); then echo "ok   resumed vs whole: $out"
    else fail "resumed vs whole: $out"; fi
fi
echo "$failures failure(s)"
[ "$failures" = 0 ]
