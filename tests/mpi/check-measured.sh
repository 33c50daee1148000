#!/bin/bash
# The measured record a study point reads (<run>/measured.json, README "Run directory"), from two
# 2-rank runs of 3 optimizer steps: 2 stages x 1 replica (1f1b, 2 micro-batches, with a trace) and
# 1 stage x 2 replicas. Checked: the file parses, every field is there with one entry per batch or
# per rank, the times are positive and the median is the median of batch_s[1:]; and, against the
# planner's figures for the same experiment (`yolopipe plan --json`, computed from the model's
# description, not from the executor's counters): each rank's peak saved activations equal the
# simulated peak exactly (1f1b, one chunk: both count the same tensors), the bytes sent point to
# point are the cut's bytes times the micro-batches, and a replica all-reduces exactly its stage's
# parameter bytes per step. Zero tolerance: all are integer byte counts. Each rank's placement: on
# this one host, its host name is `hostname`'s and its local rank its world rank.
#
# usage: check-measured.sh SOURCE_ROOT YOLOPIPE
set -u
export OMP_NUM_THREADS=1
src=$(realpath "$1") yolopipe=$(realpath "$2")
python=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
common=(--set device.backend=cpu --set "model=$src/experiments/models/yolov8.yaml" --set "data=$work/data/tiny/data.yaml"
        --set "output.dir=$work/runs" --set train.max_steps=3 --set train.epochs=3)
failures=0

run() {  # run NAME [--set k=v]...: trains on 2 ranks and plans the same experiment
    local name=$1
    shift
    if ! "$src/tests/mpi/mpirun.sh" 2 "$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" --set "name=$name" "$@" \
        >"$name.log" 2>&1; then
        echo "FAIL $name: training exited non-zero"; tail -n 15 "$name.log"; failures=$((failures + 1)); return 1
    fi
    "$yolopipe" plan "$src/tests/mpi/tiny.yaml" "${common[@]}" --set "name=$name" "$@" --json >"$name.plan.json" || {
        echo "FAIL $name: plan exited non-zero"; failures=$((failures + 1)); return 1; }
}

check() {  # check NAME: measured.json against its plan
    if $python - "runs/$1/measured.json" "$1.plan.json" <<'PY'; then echo "ok   $1"; else echo "FAIL $1"; failures=$((failures + 1)); fi
import json, socket, statistics, sys
m = json.load(open(sys.argv[1]))
plan = json.load(open(sys.argv[2]))
errors = []
def expect(cond, what):
    if not cond:
        errors.append(what)
W = m["world_size"]
expect(W == 2 and m["stages"] * m["replicas"] == W, f"world_size {W}, stages {m['stages']}, replicas {m['replicas']}")
expect(m["images_per_batch"] == m["replicas"] * m["micro_batches"] * m["micro_batch_images"], "images_per_batch")
expect(m["batches"] == 3 and m["optimizer_steps"] == 3, f"batches {m['batches']}, steps {m['optimizer_steps']}")
expect(len(m["batch_s"]) == 3 and len(m["compute_s"]) == 3, "one batch_s and compute_s entry per batch")
expect(all(0 < c <= b for b, c in zip(m["batch_s"], m["compute_s"])), "0 < compute_s <= batch_s")
expect(len(m["program_s"]) == 3 and len(m["optimizer_s"]) == 3, "one program_s and optimizer_s entry per batch")
expect(all(0 < o <= c - p for c, p, o in zip(m["compute_s"], m["program_s"], m["optimizer_s"])),
       "0 < optimizer_s <= compute_s - program_s (a step every batch)")
# Printed with 10 significant digits: equal to 1e-9 relative.
expect(abs(m["median_batch_s_after_first"] - statistics.median(m["batch_s"][1:])) <= 1e-9 * m["median_batch_s_after_first"],
       "median_batch_s_after_first is the median of batch_s[1:]")
expect(abs(m["images_per_s"] * m["median_batch_s_after_first"] - m["images_per_batch"]) < 1e-6 * m["images_per_batch"],
       "images_per_s = images_per_batch / median")
per_rank = ["pipeline_rank", "replica", "local_rank", "local_size", "host", "peak_rss_bytes", "param_bytes", "peak_activation_bytes", "p2p_bytes_per_batch",
            "allreduce_bytes_per_batch", "allreduce_bytes_per_step"]
for key in per_rank:
    expect(len(m[key]) == W, f"{key} has one entry per rank")
expect(all(v > 0 for v in m["peak_rss_bytes"]), "peak_rss_bytes > 0")
expect(m["host"] == [socket.gethostname()] * W, f"host {m['host']}: every rank on this host")
expect(m["local_rank"] == list(range(W)) and m["local_size"] == [W] * W,
       f"local_rank {m['local_rank']}, local_size {m['local_size']}: one host, so the world ranks")
expect(all(v > 0 for v in m["peak_activation_bytes"]), "peak_activation_bytes > 0")
stages = plan["stages"]
mb = m["micro_batches"]
for r in range(W):
    p = m["pipeline_rank"][r]
    expect(m["param_bytes"][r] == stages[p]["params"] * 4, f"rank {r}: param_bytes {m['param_bytes'][r]}, plan {stages[p]['params'] * 4}")
    want = plan["schedule"]["peak_activation_bytes"][p]
    expect(m["peak_activation_bytes"][r] == want, f"rank {r}: peak_activation_bytes {m['peak_activation_bytes'][r]}, plan {want}")
    if m["stages"] == 2:
        # One cut set between the two stages: activations forward from rank 0, gradients of the same size back.
        want = stages[0]["send_bytes"] * mb
        expect(m["p2p_bytes_per_batch"][r] == want and want > 0, f"rank {r}: p2p {m['p2p_bytes_per_batch'][r]}, plan {want}")
    else:
        expect(m["p2p_bytes_per_batch"][r] == 0, f"rank {r}: p2p bytes without stages to send to")
    if m["replicas"] > 1:
        want = stages[p]["params"] * 4
        expect(m["allreduce_bytes_per_step"][r] == want, f"rank {r}: all-reduce per step {m['allreduce_bytes_per_step'][r]}, plan {want}")
        expect(m["allreduce_bytes_per_batch"][r] == want, f"rank {r}: a step every batch (nbs = batch)")
    else:
        expect(m["allreduce_bytes_per_batch"][r] == 0 and m["allreduce_bytes_per_step"][r] == 0, f"rank {r}: no replicas, no all-reduce")
if m["trace"] is not None:
    expect("traceEvents" in json.load(open(m["trace"])), "the trace parses")
for e in errors:
    print("  " + e)
sys.exit(1 if errors else 0)
PY
}

run pipeline --set parallel.stages=2 --set parallel.micro_batches=2 --set output.trace=true && check pipeline
grep -q '"trace": "' runs/pipeline/measured.json || { echo "FAIL pipeline: no trace path with output.trace"; failures=$((failures + 1)); }
run replicas --set parallel.replicas=2 && check replicas
grep -q '"trace": null' runs/replicas/measured.json || { echo "FAIL replicas: a trace path without output.trace"; failures=$((failures + 1)); }
[ $failures = 0 ] && echo "ok: measured.json as planned"
exit $((failures > 0))
