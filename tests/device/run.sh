#!/bin/bash
# Everything that needs a GPU, in one call on the device machine (see README "GPU"):
#   1. the CUDA-vs-CPU comparison of every backend slot, module and the loss (test_backend_compare),
#      the optimizer's (test_cuda_optim) and the NCCL transport's unit tests on one rank;
#   2. GPU training: one rank, then the multi-rank equivalence test with every rank on the one GPU;
#   3. the training-step benchmark against PyTorch/Ultralytics (experiments/bench/train_step.sh).
# It expects a build made on the development machine with CUDA for sm_90 (scripts/build.sh
# build-cuda -Dcuda=enabled -Dgpu_arch=90), the runtime .deb files in .devdeps
# (shared/device/fetch-debs.sh) and the Ultralytics wheel in .whl, all carried with the call.
# The logs go to $OUT/logs.tgz (default ./device-out), packed again after every step so that a call
# stopped at its time limit still brings back what ran (the device tool returns at most 8 files);
# each step is stopped after STEP_TIMEOUT seconds (default 400). The last lines printed are the
# summary table.
#
# usage: YP_COMMIT=$(git rev-parse --short HEAD) tests/device/run.sh [all | tests smoke equivalence bench]...   (parts run in the order given;
#        BENCH_ARGS passes options to train_step.sh, e.g. BENCH_ARGS="--models s --steps 20")
set -uo pipefail
cd "$(dirname "$0")/../.."
src=$(pwd)
out=${OUT:-$src/device-out}
build=${BUILD:-build-cuda}
logs=$(mktemp -d)
mkdir -p "$out"
parts=${*:-all}

eval "$(bash .devdeps/unpack.sh .devdeps)"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export YP_SOURCE_ROOT=$src OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=1000
# The machine's copy of the checkout may carry an older .git: the caller names the commit (YP_COMMIT).
export YP_COMMIT=${YP_COMMIT:-unknown}

summary=()
step() {  # step NAME LOG COMMAND...: runs and records PASS/FAIL with the time taken
  local name=$1 log=$2
  shift 2
  local t0=$SECONDS
  timeout -k 10 "${STEP_TIMEOUT:-400}" "$@" >"$logs/$log" 2>&1
  local rc=$?
  local verdict=PASS
  [ $rc = 77 ] && verdict=SKIP
  [ $rc = 124 ] && verdict=TIMEOUT
  [ $rc != 0 ] && [ $rc != 77 ] && [ $rc != 124 ] && verdict="FAIL($rc)"
  summary+=("$(printf '%-28s %-9s %4ds  %s' "$name" "$verdict" $((SECONDS - t0)) "$log")")
  printf '%s\n' "${summary[@]}" >"$logs/summary.txt"
  tar czf "$out/logs.tgz" -C "$logs" .
  tail -n 4 "$logs/$log"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$build/yolopipe" --version
  ldd "$build/yolopipe" | grep -E "cud|nccl|blas|mpi" || true
} 2>&1 | tee "$logs/device.txt"

run_part() {
  case $1 in
  tests)
    step "backend compare" compare.log "$build/tests/device/test_backend_compare"
    step "optimizer compare" optim.log "$build/tests/device/test_cuda_optim"
    step "nccl transport (1 rank)" nccl.log tests/mpi/mpirun.sh 1 "$build/tests/device/test_transport_nccl" ;;
  smoke)
    step "train tiny on GPU (1 rank)" train1.log tests/device/train-smoke.sh "$src" "$build/yolopipe" ;;
  equivalence)
    step "multi-rank equivalence" equivalence.log tests/mpi/check-equivalence.sh "$src" "$build/yolopipe" \
      "$build/tests/compare_weights" ;;
  bench)
    # shellcheck disable=SC2086  # BENCH_ARGS holds several options
    step "train step vs PyTorch" bench.log experiments/bench/train_step.sh --yolopipe "$build/yolopipe" \
      --csv "$out/train_step.csv" --profiles "$logs" ${BENCH_ARGS:-}
    grep -A20 "^model" "$logs/bench.log" | head -20 ;;
  *) echo "unknown part $1" >&2; exit 2 ;;
  esac
}

for part in $parts; do
  if [ "$part" = all ]; then for p in tests smoke equivalence bench; do run_part $p; done
  else run_part "$part"; fi
done

printf '%s\n' "${summary[@]}"
