#!/bin/bash
# Pipeline equivalence for today's families: YOLO11 (C3k2, C2PSA's attention, the light Detect) and
# YOLO12 (A2C2f's area attention with its layer scale) at scale n on tests/mpi/tiny.yaml, as
# check-equivalence.sh does for YOLOv8: from a model one process trained for 40 steps, three more
# steps at 2 stages under 1f1b and zb-h1 (split backward) must give one process's parameters and
# running statistics bit for bit, and at 2 stages x 2 replicas within 1e-5 relative (the replicas'
# all-reduce adds in another order). The attention blocks' proj, pe and ffn.1 batch-norm biases have
# an exact gradient of 0 (the next training-mode batch norm subtracts any constant they add): they
# hold float noise of ~1e-9 that another summation order changes by ~5 %, so the 2 x 2 comparison
# measures tensors below 1e-4 against 1e-4 (compare_weights' floor: 1e-9 absolute for them).
#
# usage: check-equivalence-families.sh SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS
for family in yolo11 yolo12; do
    (
        source "$(dirname "$0")/equivalence-lib.sh" "$1" "$2" "$3" "$1/experiments/models/$family.yaml"
        train base-8 0 --set train.batch=8 --set parallel.micro_batches=4 --set train.max_steps=40 || exit 1
        resume_from base-8 ref-8 0 43 --set parallel.micro_batches=4 || exit 1
        for layout in "2 1 4 1f1b" "2 1 4 zb-h1" "2 2 2 1f1b"; do
            read -r stages replicas micro schedule <<<"$layout"
            name=$family-s$stages-d$replicas-$schedule
            resume_from base-8 "$name" $((stages * replicas)) 43 --set parallel.stages=$stages \
                --set parallel.replicas=$replicas --set parallel.micro_batches=$micro \
                --set parallel.schedule=$schedule || continue
            if [ "$replicas" = 1 ]; then check "$name" ref-8 buffers 0; else check "$name" ref-8 "" 1e-5 floor=1e-4; fi
        done
        echo "$family: $failures failure(s)"
        [ $failures = 0 ]
    ) || status=1
done
exit ${status:-0}
