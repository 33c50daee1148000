#!/usr/bin/env bash
# The run directory's figures: `yolopipe_plot.py run` (the copy meson puts beside the binary) on
# fabricated run directories (detection: results.png, PR/F1/P/R curves, both confusion matrices,
# each a PNG that decodes to the size Ultralytics' figure has; classification: results.png and the
# confusion matrices only; bad or missing input: one line, exit 2), then `yolopipe train` itself:
# curves.csv and confusion_matrix.csv in the run directory and the figures drawn from them,
# output.plots=false writes none, and a binary without the script beside it says so once.
# Skipped (77) when Debian's python has no matplotlib.
# Usage: check-plot-run.sh SOURCE_ROOT YOLOPIPE
set -euo pipefail
root=$(realpath "$1")
yolopipe=$(realpath "$2")
python=${PLOT_RUN_PYTHON:-/usr/bin/python3}  # Debian's, with matplotlib: the one the trainer picks first
script=$(dirname "$yolopipe")/yolopipe_plot.py
[[ -r $script ]] || { echo "FAIL: $script is not beside the binary (meson copies it there)"; exit 1; }
if ! "$python" -c 'import matplotlib' 2> /dev/null; then
  echo "skipped: $python has no matplotlib (apt-get install python3-matplotlib)"
  exit 77
fi
tmp=$(mktemp -d)
[[ -n ${PLOT_RUN_KEEP:-} ]] || trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Fabricated run directories: a detection run of 3 classes over 6 epochs, a classification run.
"$python" - "$tmp" <<'PY'
import math, os, sys
tmp = sys.argv[1]
det, cls = os.path.join(tmp, "det"), os.path.join(tmp, "cls")
os.makedirs(det), os.makedirs(cls)
with open(os.path.join(det, "results.csv"), "w") as f:
    f.write("epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
            "metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2,"
            "images_per_s,train/skipped_steps\n")
    for e in range(1, 7):
        d = math.exp(-e / 3)
        f.write(f"{e},{10 * e},{1 + d},{2 + d},{1.2 + d / 2},{0.9 - d / 2},{0.8 - d / 2},{0.85 - d / 2},"
                f"{0.6 - d / 2},{1.1 + d},{2.1 + d},{1.3 + d},0.01,0.01,0.01,50,0\n")
names = ["circle", "square, big", "#triangle"]  # a comma and a leading '#' inside quotes
with open(os.path.join(det, "curves.csv"), "w") as f:
    f.write("# fabricated\nkind,class,name,ap50," + ",".join(f"y{i}" for i in range(1000)) + "\n")
    for kind in ("pr", "p", "r", "f1"):
        for c, name in enumerate(names):
            ys = []
            for i in range(1000):
                x = i / 999
                ys.append({"pr": 1 - x ** (4 + c), "p": x ** 0.5, "r": 1 - x ** 2, "f1": 4 * x * (1 - x)}[kind])
            f.write(f'{kind},{c},"{name}",{0.7 + 0.1 * c},' + ",".join(f"{y:.6g}" for y in ys) + "\n")
with open(os.path.join(det, "confusion_matrix.csv"), "w") as f:
    f.write('# fabricated\ndetect,"circle","square, big","#triangle","background"\n'
            '"circle",10,1,0,3\n"square, big",2,12,0,1\n"#triangle",0,0,9,2\n"background",1,2,3,0\n')
with open(os.path.join(cls, "results.csv"), "w") as f:
    f.write("epoch,time,train/loss,metrics/accuracy_top1,metrics/accuracy_top5,val/loss,lr/pg0,lr/pg1,lr/pg2,"
            "images_per_s,train/skipped_steps\n")
    for e in range(1, 4):
        f.write(f"{e},{e},{2 / e},{0.3 * e},{0.33 * e},{2.2 / e},0.01,0.01,0.01,80,0\n")
with open(os.path.join(cls, "confusion_matrix.csv"), "w") as f:
    f.write('classify,"a","b"\n"a",5,1\n"b",2,7\n')
PY

# Checks that $1 holds exactly the PNGs $2 (space-separated), each decoding to its width x height in $3.
expect_pngs() {
  local dir=$1 expected=$2 sizes=$3 got
  got=$(cd "$dir" && ls -- *.png 2> /dev/null | sort | tr '\n' ' ' | sed 's/ $//') || true
  [[ $got == "$expected" ]] || fail "$dir: PNGs '$got', expected '$expected'"
  "$python" - "$dir" "$expected" "$sizes" <<'PY' || fail "$dir: a PNG does not decode to its size"
import sys
import matplotlib.image as mpimg
d, names, sizes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
for name, size in zip(names, sizes):
    img = mpimg.imread(f"{d}/{name}")
    w, h = (int(v) for v in size.split("x"))
    if img.shape[1] != w or img.shape[0] != h or img.std() == 0:
        sys.exit(f"{name}: {img.shape[1]}x{img.shape[0]}, expected {w}x{h} and not blank")
PY
}

"$python" "$script" run "$tmp/det" > "$tmp/det.out" 2>&1 || fail "run det: $(cat "$tmp/det.out")"
# Ultralytics' sizes: results.png (10 panels) 12x6 in at 200 dpi, curves 9x6 at 250, matrices 12x9 at 250.
expect_pngs "$tmp/det" "F1_curve.png PR_curve.png P_curve.png R_curve.png confusion_matrix.png confusion_matrix_normalized.png results.png" \
  "2250x1500 2250x1500 2250x1500 2250x1500 3000x2250 3000x2250 2400x1200"
grep -qxF "wrote $tmp/det/PR_curve.png" "$tmp/det.out" || fail "no 'wrote' line for PR_curve.png"
[[ -z $(find "$tmp/det" -name '*.tmp') ]] || fail "a temporary file was left behind"
"$python" "$script" run "$tmp/cls" > "$tmp/cls.out" 2>&1 || fail "run cls: $(cat "$tmp/cls.out")"
# results.png with 4 panels: 6x6 in at 200 dpi.
expect_pngs "$tmp/cls" "confusion_matrix.png confusion_matrix_normalized.png results.png" "3000x2250 3000x2250 1200x1200"

# Bad input: one line on stderr naming the file, exit code 2.
expect_error() {
  local dir=$1 expected=$2 rc=0
  "$python" "$script" run "$dir" > /dev/null 2> "$tmp/bad.err" || rc=$?
  [[ $rc == 2 ]] || fail "$dir: exit $rc, expected 2; stderr: $(cat "$tmp/bad.err")"
  [[ $(wc -l < "$tmp/bad.err") == 1 ]] || fail "$dir: not one line: $(cat "$tmp/bad.err")"
  grep -qxF -- "$expected" "$tmp/bad.err" || fail "$dir: expected '$expected', got: $(cat "$tmp/bad.err")"
}
expect_error "$tmp/none" "yolopipe_plot.py: $tmp/none: no such directory"
mkdir "$tmp/bad" && cp "$tmp/det/"*.csv "$tmp/bad/"
sed -i '3s/,1.5/,fast/; 3s/^\([^,]*\),[^,]*,/\1,slow,/' "$tmp/bad/results.csv"
expect_error "$tmp/bad" "yolopipe_plot.py: $tmp/bad/results.csv:3: column 'time': 'slow' is not a number"
cp "$tmp/det/results.csv" "$tmp/bad/"
awk 'NR < 3 {print} NR == 3 {print substr($0, 1, 3000)}' "$tmp/det/curves.csv" > "$tmp/bad/curves.csv"  # a row cut short
expect_error "$tmp/bad" "yolopipe_plot.py: $tmp/bad/curves.csv:3: 361 fields, expected 1004"
rm "$tmp/bad/curves.csv"
expect_error "$tmp/bad" "yolopipe_plot.py: $tmp/bad/curves.csv: cannot read: No such file or directory"
printf 'segment,"a"\n"a",1\n' > "$tmp/bad/confusion_matrix.csv"
expect_error "$tmp/bad" "yolopipe_plot.py: $tmp/bad/confusion_matrix.csv:1: the header starts with 'segment', expected detect or classify"

# The trace subcommand through the same entry: a two-track trace draws; a file that is no trace is one line.
printf '{"traceEvents": [{"ph": "M", "name": "thread_name", "tid": 1, "args": {"name": "rank 0"}},
  {"ph": "X", "tid": 1, "ts": 0, "dur": 500, "cat": "fwd"}, {"ph": "X", "tid": 2, "ts": 500, "dur": 800, "cat": "bwd"}]}' \
  > "$tmp/trace.json"
"$python" "$script" trace "$tmp/trace.json" "$tmp/trace.png" > /dev/null || fail "trace: not drawn"
[[ $(head -c 8 "$tmp/trace.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "trace.png is not a PNG"
rc=0
"$python" "$script" trace "$tmp/det/results.csv" "$tmp/no.png" 2> "$tmp/bad.err" || rc=$?
[[ $rc == 2 && $(wc -l < "$tmp/bad.err") == 1 ]] && grep -q "^yolopipe_plot.py: $tmp/det/results.csv: not JSON" "$tmp/bad.err" \
  || fail "trace of a CSV: exit $rc: $(cat "$tmp/bad.err")"

# yolopipe train writes the CSVs and draws them: a tiny detector on 8 generated images, 2 epochs
# (output.dir is relative to the working directory).
cd "$tmp"
cat > "$tmp/exp.yaml" <<EOF
name: plots
model: $root/tests/reference/models/tiny-detect.yaml
data: data/plots/data.yaml
synth: {train: 8, val: 4, imgsz: 64, classes: 3, seed: 1}
train: {epochs: 2, batch: 4, imgsz: 64, nbs: 4, warmup_epochs: 0, close_mosaic: 0, workers: 1}
parallel: {micro_batches: 2}
output: {dir: runs}
EOF
"$yolopipe" train "$tmp/exp.yaml" > "$tmp/train.out" 2>&1 || fail "train: $(cat "$tmp/train.out")"
run=$tmp/runs/plots
for f in curves.csv confusion_matrix.csv results.png PR_curve.png F1_curve.png P_curve.png R_curve.png \
    confusion_matrix.png confusion_matrix_normalized.png; do
  [[ -s $run/$f ]] || fail "train: no $f in the run directory: $(ls "$run"); $(cat "$run/plots.log" 2> /dev/null)"
done
grep -q '^detect,"circle","square","triangle","background"$' "$run/confusion_matrix.csv" \
  || fail "train: confusion_matrix.csv header: $(grep -v '^#' "$run/confusion_matrix.csv" | head -1)"
# Every ground-truth box is counted once in the matrix's columns: the sum is the validation's instances.
instances=$(awk '$1 == "all" {print $3}' "$tmp/train.out" | tail -1)
counted=$(grep -v '^#' "$run/confusion_matrix.csv" | tail -n +2 | awk -F, '{for (i = 2; i < NF; i++) s += $i} END {print s}')
[[ $instances == "$counted" ]] || fail "train: the matrix counts $counted ground-truth boxes, validation saw $instances"
grep -q "^plots:" "$tmp/train.out" && fail "train: a plots notice with the script present: $(grep '^plots:' "$tmp/train.out")"

# Classification: the top-1 matrix (no curves); its counts add up to the validation images.
cat > "$tmp/cls.yaml" <<EOF
name: cls
task: classify
model: $root/tests/reference/models/tiny-classify.yaml
data: data/cls
synth: {task: classify, train: 16, val: 8, imgsz: 32, classes: 3, seed: 0}
train: {epochs: 1, batch: 8, imgsz: 32, nbs: 8, warmup_epochs: 0, workers: 1}
parallel: {micro_batches: 2}
output: {dir: runs}
EOF
"$yolopipe" train "$tmp/cls.yaml" > "$tmp/cls-train.out" 2>&1 || fail "train cls: $(cat "$tmp/cls-train.out")"
grep -q '^classify,"circle","square","triangle"$' "$tmp/runs/cls/confusion_matrix.csv" \
  || fail "train cls: confusion_matrix.csv: $(cat "$tmp/runs/cls/confusion_matrix.csv")"
counted=$(grep -v '^#' "$tmp/runs/cls/confusion_matrix.csv" | tail -n +2 | awk -F, '{for (i = 2; i <= NF; i++) s += $i} END {print s}')
[[ $counted == 8 ]] || fail "train cls: the matrix counts $counted images, the validation has 8"
[[ -s $tmp/runs/cls/results.png && -s $tmp/runs/cls/confusion_matrix.png && ! -e $tmp/runs/cls/curves.csv ]] \
  || fail "train cls: $(ls "$tmp/runs/cls")"

"$yolopipe" train "$tmp/exp.yaml" --set name=off --set output.plots=false > "$tmp/off.out" 2>&1 || fail "train off: $(cat "$tmp/off.out")"
[[ -z $(cd "$tmp/runs/off" && ls -- *.png curves.csv confusion_matrix.csv 2> /dev/null) ]] \
  || fail "output.plots=false: $(ls "$tmp/runs/off")"

# A binary without the script beside it: one notice for the run, the CSVs still written.
mkdir "$tmp/bin" && cp "$yolopipe" "$tmp/bin/"
"$tmp/bin/yolopipe" train "$tmp/exp.yaml" --set name=alone > "$tmp/alone.out" 2>&1 || fail "alone: $(cat "$tmp/alone.out")"
[[ $(grep -c "^plots: .*yolopipe_plot.py is missing" "$tmp/alone.out") == 1 ]] \
  || fail "no script: expected one notice, got: $(grep '^plots' "$tmp/alone.out")"
[[ -s $tmp/runs/alone/curves.csv && ! -e $tmp/runs/alone/results.png ]] || fail "no script: $(ls "$tmp/runs/alone")"

echo "plot_run: all checks passed"
