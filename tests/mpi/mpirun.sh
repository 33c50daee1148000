#!/usr/bin/env bash
# Runs a program on NP ranks of this machine, for tests: mpirun -np NP PROGRAM ARGS...
# Usage: mpirun.sh NP PROGRAM [ARGS...]
# --oversubscribe because test machines have fewer cores than ranks; a hard time limit so that a
# hang fails the test instead of blocking CI (MPIRUN_TIME_LIMIT seconds, default 120).
set -euo pipefail
np=$1
shift
flags=(-np "$np" --oversubscribe)
if [[ $(id -u) == 0 ]]; then flags+=(--allow-run-as-root); fi
# Containers often forbid the cross-memory-attach calls of Open MPI's shared-memory transport.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMP_NUM_THREADS=1
# Sanitizer builds: Open MPI's own leaks are suppressed (lsan.supp). Its libraries have no frame
# pointers, so only the slow unwinder sees their frames in an allocation's stack.
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
exec timeout -k 5 "${MPIRUN_TIME_LIMIT:-120}" mpirun "${flags[@]}" "$@"
