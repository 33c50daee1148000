#!/usr/bin/env bash
# The NCCL transport ends the job with a message instead of hanging: on a receive that times out
# (through ncclCommAbort and the MPI transport's abort) and on a message whose size differs from its receive's (an
# internal error, through failure_install's hook). One rank on GPU 0; exits 77 (skipped) without one.
# Usage: check-nccl-failure.sh MPIRUN_SH TEST_TRANSPORT_NCCL
# The 30 s bound is a behaviour bound (the job ends instead of hanging), not a performance check.
set -uo pipefail
mpirun_sh=$1 program=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bound_s=30
export MPIRUN_TIME_LIMIT=60

fail() {
  echo "FAIL: $*" >&2
  echo "---- output ----" >&2
  cat "$out" >&2
  exit 1
}

# Runs one probe; exit code in $rc, elapsed seconds in $elapsed.
run_probe() {
  local start=$SECONDS
  "$mpirun_sh" 1 "$program" probe "$1" > "$out" 2>&1
  rc=$?
  elapsed=$((SECONDS - start))
  if [[ $rc == 77 ]]; then echo "no CUDA device: skipped"; exit 77; fi
  [[ $rc != 0 ]] || fail "$1: job exited 0"
  ((elapsed < bound_s)) || fail "$1: job took ${elapsed}s"
}

expect_line() {
  grep -qF -- "$1" "$out" || fail "$2: no line with: $1"
}

run_probe timeout
expect_line "yolopipe: rank 0 (pipeline rank 0, replica 0): timed out after 1 s waiting for a message to this rank that is never sent" timeout
echo "ok timeout (exit $rc, ${elapsed}s)"

run_probe mismatch
expect_line "pipeline rank 0 (world rank 0 on $(hostname)) sent 8 bytes with tag 3, but this rank's receive for that tag takes 4 bytes" mismatch
echo "ok mismatch (exit $rc, ${elapsed}s)"
