#!/usr/bin/env bash
# Soak test (not in the suite: it runs for the better part of an hour). Trains the default
# experiment (2 stages x 2 replicas, a checkpoint at every epoch's end) twice:
#   reference  uninterrupted;
#   soak       SIGKILLed at random times, at least KILLS times, each time resumed with --resume.
# Kills alternate between the whole job (every process of its process group at once, as a power cut
# or `kill -9` of the launcher would) and one random rank (the runtime must end the others). The
# final weights (parameters and batch-norm buffers, weights/last) of both must be bit-identical.
#
# usage: tests/soak/soak.sh [--epochs E] [--kills K] [--build DIR] [--work DIR] [--seed S] [--reference RUN]
#   --epochs  epochs of each run (default 24: about 20 minutes a run on a quiet 2-core machine;
#             the script prints the reference's time, and a run under 20 minutes is reported)
#   --kills   how many SIGKILLs at least (default 10)
#   --build   the build directory with yolopipe and tests/compare_weights (default build)
#   --work    where both run directories go (default a new temporary directory, kept)
#   --seed    seeds the kill times (default: the current time), printed so that a run can be repeated
#   --reference  an uninterrupted run directory of the same experiment and epochs to compare with
#             (e.g. an earlier soak's WORK/runs/reference) instead of training one
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
epochs=24 kills=10 build=build work="" seed=$(date +%s) reference=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --epochs) epochs=$2; shift 2 ;;
        --kills) kills=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --reference) reference=$(realpath "$2"); shift 2 ;;
        *) echo "soak.sh: unknown argument '$1' (see the usage at the top of the script)" >&2; exit 2 ;;
    esac
done
build=$(cd "$src" && realpath "$build")
yolopipe=$build/yolopipe compare=$build/tests/compare_weights
for program in "$yolopipe" "$compare"; do
    [[ -x $program ]] || { echo "soak.sh: $program not found: build first (scripts/build.sh $build)" >&2; exit 2; }
done
work=${work:-$(mktemp -d /tmp/yolopipe-soak.XXXXXX)}
mkdir -p "$work"
cd "$work"
RANDOM=$seed
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
mpirun_flags=(-np 4 --oversubscribe)
[[ $(id -u) == 0 ]] && mpirun_flags+=(--allow-run-as-root)
echo "soak: $epochs epochs, at least $kills kills, seed $seed, work in $work"

# train NAME [--resume]: starts the default experiment as its own process group, in the background.
train() {
    local name=$1
    shift
    setsid mpirun "${mpirun_flags[@]}" "$yolopipe" train "$src/experiments/default.yaml" \
        --set "data=$src/data/shapes/data.yaml" --set "output.dir=$work/runs" --set "name=$name" \
        --set "train.epochs=$epochs" "$@" >>"$work/$name.log" 2>&1 &
    job=$!
}

if [[ -z $reference ]]; then
    start=$(date +%s)
    train reference
    wait $job || { echo "soak: the reference run failed (see $work/reference.log)"; exit 1; }
    reference_s=$(($(date +%s) - start))
    reference=$work/runs/reference
else  # its results.csv: the last row's time column is the run's training time
    reference_s=$(awk -F, 'END { printf "%d", $2 }' "$reference/results.csv")
    [[ -d $reference/weights/last ]] || { echo "soak: $reference has no weights/last" >&2; exit 2; }
fi
echo "reference: $reference_s s uninterrupted ($reference)"
((reference_s >= 1200)) || echo "soak: note: the reference ran under 20 minutes; give more --epochs for a full soak"

# Kill times: uniform in [20 s, the reference's time per epoch x 2], so that a kill lands in
# training, validation and checkpoint writing alike and most restarts make some progress.
per_epoch_s=$((reference_s / epochs))
max_wait=$((per_epoch_s * 2 > 30 ? per_epoch_s * 2 : 30))
start=$(date +%s) n_kills=0 n_starts=0 resume=()
while :; do
    train soak "${resume[@]}"
    n_starts=$((n_starts + 1))
    resume=(--resume)
    if ((n_kills < kills)); then
        wait_s=$((20 + RANDOM % (max_wait - 19)))
        for ((i = 0; i < wait_s; i++)); do kill -0 $job 2>/dev/null || break; sleep 1; done
        if kill -0 $job 2>/dev/null; then
            n_kills=$((n_kills + 1))
            if ((n_kills % 2)); then
                echo "kill $n_kills: the whole job after $wait_s s"
                kill -9 -- -$job 2>/dev/null || true
            else
                ranks=($(pgrep -P $job -f yolopipe || true))  # mpirun starts this host's ranks itself
                if ((${#ranks[@]})); then
                    victim=${ranks[RANDOM % ${#ranks[@]}]}
                    echo "kill $n_kills: rank pid $victim of ${#ranks[@]} after $wait_s s"
                    kill -9 "$victim" 2>/dev/null || true
                else
                    echo "kill $n_kills: no rank found; the whole job after $wait_s s"
                    kill -9 -- -$job 2>/dev/null || true
                fi
            fi
            # Every process of the job must be gone within the runtime's bound for a lost rank.
            for ((i = 0; i < 60; i++)); do pgrep -f -- "--set name=soak" >/dev/null || break; sleep 1; done
            if pgrep -f -- "--set name=soak" >/dev/null; then
                echo "soak: FAIL: processes of the killed job still run after 60 s"; kill -9 -- -$job; exit 1
            fi
            wait $job 2>/dev/null || true
            # Killed before the first checkpoint: start afresh in the same run directory.
            [[ -d $work/runs/soak/weights/last ]] || { resume=(); rm -rf "$work/runs/soak"; }
            continue
        fi
    fi
    if wait $job; then break; fi
    echo "soak: FAIL: a run that was not killed failed (see $work/soak.log)"; exit 1
done
soak_s=$(($(date +%s) - start))
echo "soak: $n_kills kills, $n_starts starts, $soak_s s"
if "$compare" "$reference/weights/last" "$work/runs/soak/weights/last" 0 buffers; then
    echo "soak: PASS: the final weights are bit-identical to the uninterrupted run's"
else
    echo "soak: FAIL: the final weights differ from the uninterrupted run's"; exit 1
fi
