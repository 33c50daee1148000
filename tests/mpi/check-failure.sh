#!/usr/bin/env bash
# A failing rank ends the whole job, with a message, within a bound (no hang): a receive that times
# out, a rank killed by SIGKILL, an internal error and a user error found on one rank only; then,
# with yolopipe itself, a stage stopped in the middle of validation through a pipeline: its peer
# times out naming it by world rank and host.
# Usage: check-failure.sh MPIRUN_SH FAILURE_PROBE SOURCE_ROOT YOLOPIPE
# The 30 s bound is a behaviour bound (the job ends instead of hanging), not a performance check:
# each case normally ends in 1-5 s.
set -uo pipefail
mpirun_sh=$1 probe=$2 src=$(realpath "$3") yolopipe=$(realpath "$4")
tmp=$(mktemp -d)
job=
trap '[[ -n $job ]] && kill -9 $job 2>/dev/null; rm -rf "$tmp"' EXIT
bound_s=30
export MPIRUN_TIME_LIMIT=60

fail() {
  echo "FAIL: $*" >&2
  echo "---- output ----" >&2
  cat "$tmp/out" >&2
  exit 1
}

# Runs the probe on NP ranks, output in $tmp/out, exit code in $rc, elapsed seconds in $elapsed.
run_probe() {
  local np=$1
  shift
  local start=$SECONDS
  "$mpirun_sh" "$np" "$probe" "$@" > "$tmp/out" 2>&1
  rc=$?
  elapsed=$((SECONDS - start))
}

expect_line() {
  grep -qF -- "$1" "$tmp/out" || fail "$2: no line with: $1"
}

# (1) A rank waits for a message that is never sent: it times out after 2 s and ends the job.
run_probe 2 timeout 2 1
[[ $rc != 0 ]] || fail "timeout: job exited 0"
((elapsed < bound_s)) || fail "timeout: job took ${elapsed}s"
expect_line "yolopipe: rank 1 (pipeline rank 1, replica 0): timed out after 2 s waiting for the activation of layer 4 (cut 2) for micro-batch 3 from pipeline rank 0 (world rank 0)" timeout
echo "ok timeout (exit $rc, ${elapsed}s)"

# (2) SIGKILL of world rank 2 of 4 (2 stages x 2 replicas) while every rank waits: the launcher
# notices, the survivors are stopped by a signal and say what they were doing.
start=$SECONDS
"$mpirun_sh" 4 "$probe" kill 2 2 > "$tmp/out" 2>&1 &
job=$!
victim=
for _ in $(seq 200); do
  if [[ $(grep -c '^ready ' "$tmp/out") == 4 ]]; then
    victim=$(awk '$1 == "ready" && $2 == 2 {print $3}' "$tmp/out")
    break
  fi
  sleep 0.1
done
[[ -n $victim ]] || { kill "$job"; fail "kill: the ranks did not all start"; }
kill -KILL "$victim"
wait "$job"
rc=$?
elapsed=$((SECONDS - start))
[[ $rc != 0 ]] || fail "kill: job exited 0"
((elapsed < bound_s)) || fail "kill: job took ${elapsed}s"
grep -qE "process rank 2 .*(signal 9|Killed)" "$tmp/out" || fail "kill: no launcher line naming rank 2"
expect_line "stopped by signal 15 (the launcher ends the job after another rank failed) while step 3, RECV_ACT micro-batch 1 of cut 0 from pipeline rank" kill
echo "ok kill (exit $rc, ${elapsed}s)"

# (3) An internal error on one rank ends the job (the MPI transport's abort), the message naming rank and activity.
run_probe 2 fatal 2 1
[[ $rc != 0 ]] || fail "fatal: job exited 0"
((elapsed < bound_s)) || fail "fatal: job took ${elapsed}s"
expect_line "yolopipe: rank 1 (pipeline rank 1, replica 0) while step 5, BWD micro-batch 2 of chunk 0: internal error at" fatal
expect_line "the probe's internal error" fatal
echo "ok fatal (exit $rc, ${elapsed}s)"

# (4) A user error found on one rank only: its line, and the job exits 2.
run_probe 2 user-error 1 2
[[ $rc == 2 ]] || fail "user-error: job exited $rc, expected 2"
((elapsed < bound_s)) || fail "user-error: job took ${elapsed}s"
expect_line "probe.yaml:3:5: a user error only this rank found" user-error
echo "ok user-error (exit $rc, ${elapsed}s)"

# (5) Validation through 2 stages (yolopipe val, parallel.recv_timeout 2 s, 4000 images: about
# 10 s of validation on an idle 2-core machine, so that it is still running when one stage is
# stopped; 400 images finished within the second before the stop when the machine was idle) with
# one stage stopped by SIGSTOP a second in: stopping stage 0 leaves
# stage 1 waiting for an activation, stopping stage 1 leaves stage 0's sends unreceived. Each wait
# times out naming the stopped peer by pipeline rank, world rank and host.
host=$(hostname)
name=val-stop-$$
exp=("$src/tests/mpi/tiny.yaml" --set "model=$src/experiments/models/yolov8.yaml" --set "data=$tmp/val/data.yaml"
     --set "output.dir=$tmp/runs" --set "name=$name" --set parallel.recv_timeout=2)
"$yolopipe" synth --out "$tmp/val" --train 8 --val 4000 --imgsz 64 --classes 3 --seed 1 > "$tmp/out" 2>&1 || fail "synth"
OMP_NUM_THREADS=1 "$yolopipe" train "${exp[@]}" --set train.max_steps=1 > "$tmp/out" 2>&1 || fail "val: training weights"

# Runs the validation with world rank $1 stopped a second after setup (the "pipeline:" line).
val_with_stopped_rank() {
  local stopped=$1 start=$SECONDS pid=
  rm -f "$tmp/out"  # the previous run's log must not be mistaken for this one's
  "$mpirun_sh" 2 "$yolopipe" val "${exp[@]}" --set parallel.stages=2 --weights "$tmp/runs/$name/weights/last" \
    > "$tmp/out" 2>&1 &
  job=$!
  for _ in $(seq 600); do grep -qs '^pipeline:' "$tmp/out" && break; sleep 0.1; done
  sleep 1
  for _ in $(seq 100); do
    for p in $(pgrep -f -- "--set name=$name"); do
      # grep reads the whole environment (no -q): under pipefail, tr killed by SIGPIPE after an early
      # match would fail the pipeline and the rank would go unseen.
      tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -x "OMPI_COMM_WORLD_RANK=$stopped" > /dev/null && pid=$p
    done
    [[ -n $pid ]] && break
    sleep 0.1
  done
  [[ -n $pid ]] || fail "val: world rank $stopped not found"
  kill -STOP "$pid"
  wait "$job"
  rc=$?
  job=
  elapsed=$((SECONDS - start))
  [[ $rc != 0 ]] || fail "val, rank $stopped stopped: job exited 0"
  ((elapsed < bound_s)) || fail "val, rank $stopped stopped: job took ${elapsed}s"
}

val_with_stopped_rank 0
expect_line "yolopipe: rank 1 (pipeline rank 1, replica 0): timed out after 2 s waiting for the validation activation of layer" val-recv
expect_line "from pipeline rank 0 (world rank 0 on $host)" val-recv
echo "ok val-recv (exit $rc, ${elapsed}s): $(grep -m1 "timed out" "$tmp/out")"

val_with_stopped_rank 1
expect_line "yolopipe: rank 0 (pipeline rank 0, replica 0): timed out after 2 s waiting for a send of layer" val-send
expect_line "to pipeline rank 1 (world rank 1 on $host) to be received" val-send
echo "ok val-send (exit $rc, ${elapsed}s): $(grep -m1 "timed out" "$tmp/out")"
