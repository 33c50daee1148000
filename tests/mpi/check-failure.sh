#!/usr/bin/env bash
# A failing rank ends the whole job, with a message, within a bound (no hang): a receive that times
# out, a rank killed by SIGKILL, an internal error and a user error found on one rank only.
# Usage: check-failure.sh MPIRUN_SH FAILURE_PROBE
# The 30 s bound is a behaviour bound (the job ends instead of hanging), not a performance check:
# each case normally ends in 1-5 s.
set -uo pipefail
mpirun_sh=$1 probe=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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

# (3) An internal error on one rank ends the job through MPI_Abort, the message naming rank and activity.
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
