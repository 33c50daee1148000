#!/bin/bash
# A rank killed with SIGKILL in the middle of training ends the whole job within 30 s, never a hang:
# the launcher names the killed rank, and every survivor says what it was doing when it was stopped.
# (30 s is the bound the runtime promises for a lost rank, not a performance figure.)
#
# usage: check-kill.sh SOURCE_ROOT YOLOPIPE
set -u
src=$(realpath "$1") yolopipe=$(realpath "$2")
work=$(mktemp -d)
trap 'kill -9 $job 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
"$src/tests/mpi/mpirun.sh" 4 "$yolopipe" train "$src/tests/mpi/tiny.yaml" \
    --set "model=$src/experiments/models/yolov8.yaml" --set "data=$work/data/tiny/data.yaml" \
    --set "output.dir=$work/runs" --set name=victim --set train.epochs=200 --set parallel.stages=2 \
    --set parallel.replicas=2 --set parallel.micro_batches=2 >job.log 2>&1 &
job=$!
for _ in $(seq 1 240); do
    grep -q "run directory" job.log && break
    kill -0 $job 2>/dev/null || { echo "FAIL: the job ended before training"; cat job.log; exit 1; }
    sleep 0.5
done
sleep 3  # well inside training steps
victim=""
for pid in $(pgrep -f -- "--set name=victim"); do
    [ -r /proc/$pid/environ ] || continue
    if tr '\0' '\n' </proc/$pid/environ | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$pid; fi
done
if [ -z "$victim" ]; then echo "FAIL: rank 1 not found"; cat job.log; exit 1; fi
start=$(date +%s%N)
kill -9 "$victim"
wait $job
rc=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "job exited with $rc, $elapsed_ms ms after SIGKILL of rank 1 (pid $victim)"
grep -E "rank 1|signal|stopped" job.log | head -8
status=0
if [ $rc = 0 ]; then echo "FAIL: the job exited 0"; status=1; fi
if [ $elapsed_ms -gt 30000 ]; then echo "FAIL: took more than 30 s"; status=1; fi
if ! grep -qE "rank 1 .*(signal 9|Killed)" job.log; then echo "FAIL: no message names the killed rank 1"; status=1; fi
if ! grep -q "stopped by signal" job.log; then echo "FAIL: no survivor said what it was doing"; status=1; fi
if pgrep -f -- "--set name=victim" >/dev/null; then echo "FAIL: ranks left running"; status=1; fi
[ $status = 0 ] && echo "ok: every rank ended"
exit $status
