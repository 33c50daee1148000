#!/bin/bash
# `yolopipe val` of a 2-stage x 2-replica experiment runs in one process, without mpirun, and prints
# the table that the 2 x 2 training run printed for the same epoch, line for line (the independent
# reference: validation through the pipeline, each replica taking every other batch, scored at world
# rank 0). The model is first trained in one process for 29 epochs (a fresh model scores 0 on
# everything, which would make the comparison empty), then resumed under mpirun at 2 x 2 for the
# 30th, whose log must also carry the epoch labels, the summary and no rewritten progress line (Open
# MPI gives ranks a pseudo-terminal; a log gets plain lines).
#
# usage: check-val-single.sh SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS
set -u
source "$(dirname "$0")/tiny-env.sh"
run=(--set train.epochs=30 --set val.period=10 --set train.lr0=0.05 --set name=v)
export OMP_NUM_THREADS=2
"$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" "${run[@]}" --set train.max_steps=116 >one.log 2>&1 ||
    { fail "the one-process run: exit $?"; tail -n 15 one.log; }
layout=(--set parallel.stages=2 --set parallel.replicas=2 --set parallel.micro_batches=2)
"$src/tests/mpi/mpirun.sh" 4 "$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" "${run[@]}" "${layout[@]}" \
    --resume >pipe.log 2>&1 || { fail "the 2 x 2 run: exit $?"; tail -n 15 pipe.log; }

# The table after a label, up to the next line that is not a table row.
table() { awk -v label="$2" 'index($0, label) == 1 { on = 1; next } on && !/^ +[A-Za-z]/ { exit } on' "$1"; }
trained=$(table pipe.log "epoch 30/30 validation:")
grep -q "$(printf '\r')" pipe.log && fail "the mpirun log has carriage returns (a rewritten progress line)"
[ "$(grep -c '^epoch 30/30  step' pipe.log)" = 4 ] || fail "the epoch of 4 steps logged $(grep -c '^epoch 30/30  step' pipe.log) progress lines, not 4"
grep -q "/runs/v/weights/best (best, epoch [0-9]*/30) validation:$" pipe.log || fail "no validation of weights/best labelled with its epoch"
grep -q "^done: 30 epochs, 120 optimizer steps in .* s; best epoch [0-9]*: P .*, R .*, mAP50 .*, mAP50-95 " pipe.log || fail "no summary line"
listing=$(grep "^run directory .*/runs/v: " pipe.log)
for f in config.yaml measured.json profile.csv results.csv labels.jpg train_batch0.jpg val_batch0_pred.jpg weights/best weights/last; do
    [[ ", ${listing#*: }," == *", $f,"* ]] || fail "the summary's run directory line does not list $f: '$listing'"
done

"$yolopipe" val "$src/tests/mpi/tiny.yaml" "${common[@]}" "${run[@]}" "${layout[@]}" --weights runs/v/weights/last \
    >val.log 2>&1 || { fail "val without mpirun: exit $?"; cat val.log; }
grep -q "^val: validating in one process (the experiment's 2 stages x 2 replicas are for training)$" val.log ||
    fail "val does not say it validates in one process"
single=$(table val.log "runs/v/weights/last (epoch 30/30) validation:")
# Interleaved with 2 chunks and explicit ranges: one process all the same.
"$yolopipe" val "$src/tests/mpi/tiny.yaml" "${common[@]}" "${run[@]}" "${layout[@]}" --set parallel.schedule=interleaved \
    --set parallel.chunks=2 --set 'parallel.partition=[[0,5],[6,10],[11,15],[16,22]]' --weights runs/v/weights/last \
    >val-interleaved.log 2>&1 || { fail "val of an interleaved experiment without mpirun: exit $?"; cat val-interleaved.log; }
[ "$(table val-interleaved.log "runs/v/weights/last (epoch 30/30) validation:")" = "$single" ] ||
    fail "val of the interleaved experiment differs from the 1f1b one"
all=$(grep ' all ' <<<"$trained")
if [ -z "$trained" ]; then fail "no epoch 30 table in the 2 x 2 log"; tail -n 20 pipe.log
elif [ "$(awk '{print $NF}' <<<"$all")" = 0 ]; then fail "the model scores mAP50-95 0: nothing to compare ($all)"
elif [ "$trained" != "$single" ]; then fail "val in one process differs from the 2 x 2 run's table"; diff <(echo "$trained") <(echo "$single")
else echo "ok   val in one process prints the 2 x 2 run's epoch 30 table: $all"; fi

echo "$failures failed"
[ "$failures" = 0 ]
