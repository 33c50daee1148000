# Sourced by the multi-rank tests that train tests/mpi/tiny.yaml on the CPU, with their arguments
# SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS: sets src, yolopipe, compare, a work folder (the working
# directory, removed at exit), failures and fail(), and `common`, the --set options every run takes.
export OMP_NUM_THREADS=1
src=$(realpath "$1") yolopipe=$(realpath "$2") compare=$(realpath "$3")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
failures=0
common=(--set device.backend=cpu --set "model=$src/experiments/models/yolov8.yaml" --set "data=$work/data/tiny/data.yaml"
        --set "output.dir=$work/runs" --set parallel.micro_batches=4)

fail() { echo "FAIL $*"; failures=$((failures + 1)); }
