#!/bin/bash
# `yolopipe study` end to end on 2 cores: a measured and simulated study of 2 points (1 and 2 stages of
# the tiny experiment under mpirun), its points.csv columns and rows, summary.md, and the study's
# crash safety: a rerun without --resume is refused, --resume redoes nothing, --resume against a
# changed study is refused naming the key, a study killed with SIGKILL after its first point finishes
# the rest on --resume without redoing it, a point past its time limit is a `timeout` row,
# measure.takes runs a point more than once and keeps the fastest take, and cluster.calibrate plans
# with the layers timed inside training steps.
#
# usage: check-study-run.sh SOURCE_ROOT YOLOPIPE
set -u
src=$(realpath "$1") yolopipe=$(realpath "$2")
python=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# study NAME [EXTRA LINES]: a study file of the tiny experiment; the points sweep parallel.stages.
study() {
    cat >"$1.yaml" <<EOF
experiment: $src/tests/mpi/tiny.yaml
set:
  device.backend: cpu
  data: $work/data/tiny/data.yaml
  train.workers: 0
  parallel.micro_batches: 2
sweep:
  parallel.stages: [${STAGES:-1, 2}]
mode: both
measure:
  steps: 2
  warmup: 1
  launcher: $src/tests/mpi/mpirun.sh {world}
  time_limit: ${LIMIT:-120}
cluster:
  device: cpu
  gpus_per_node: 4
EOF
}

study two
if ! "$yolopipe" study two.yaml --out out >run1.log 2>&1; then fail "the study exited non-zero"; tail -20 run1.log; fi
grep -q "^\[2/2\]" run1.log || fail "no progress line [2/2]"
[[ -f out/summary.md ]] || fail "no summary.md"
$python - out/points.csv <<'PY' || fail "points.csv"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
want = ["index", "label", "parallel.stages", "world", "nodes_used", "status", "reason", "run_dir",
        "predicted_step_ms", "measured_step_ms", "error_pct", "measured_spread_pct", "predicted_images_per_s", "measured_images_per_s",
        "images_per_s", "images_per_s_per_gpu", "scaling_efficiency", "bubble_fraction",
        "predicted_peak_activation_bytes", "measured_peak_activation_bytes", "measured_peak_rss_bytes",
        "predicted_memory_bytes", "memory_bytes_per_gpu", "fits_memory", "p2p_bytes_per_step",
        "allreduce_bytes_per_step", "term_compute_ms", "term_bubble_ms", "term_p2p_ms", "term_allreduce_ms",
        "term_optimizer_ms", "term_loss_ms", "term_loader_ms", "time_to_train_h"]
header = next(csv.reader(open(sys.argv[1])))
assert header == want, f"columns {header}"
assert len(rows) == 2, f"{len(rows)} rows"
assert [r["parallel.stages"] for r in rows] == ["1", "2"], [r["parallel.stages"] for r in rows]
for r in rows:
    assert r["status"] == "ok", (r["status"], r["reason"])
    for col in ("predicted_step_ms", "measured_step_ms", "measured_images_per_s", "measured_peak_rss_bytes"):
        assert float(r[col]) > 0, (col, r[col])
    err = 100 * (float(r["predicted_step_ms"]) - float(r["measured_step_ms"])) / float(r["measured_step_ms"])
    assert abs(err - float(r["error_pct"])) < 0.01, (err, r["error_pct"])
    assert r["world"] == r["parallel.stages"]
assert float(rows[0]["scaling_efficiency"]) == 1.0
assert float(rows[1]["p2p_bytes_per_step"]) > 0 and float(rows[0]["p2p_bytes_per_step"]) == 0
assert all(r["measured_spread_pct"] == "" for r in rows), "a spread with one take"
PY
for i in 0 1; do
    $python -c "import json, sys; json.load(open(sys.argv[1]))" out/predicted/point-$i.json || fail "no simulated timeline for point $i"
done
echo "first run: $(grep -c '' out/points.csv) lines in points.csv"

# The same folder again: refused without --resume; with it, nothing is redone.
"$yolopipe" study two.yaml --out out >again.log 2>&1
[[ $? == 2 ]] && grep -q "points.csv exists from an earlier run" again.log || fail "a rerun without --resume: $(cat again.log)"
before=$(stat -c %Y out/runs/point-0/measured.json)
"$yolopipe" study two.yaml --out out --resume >resume.log 2>&1 || fail "--resume exited non-zero"
[[ $(grep -c "done earlier" resume.log) == 2 ]] || fail "--resume redid a point: $(cat resume.log)"
[[ $(stat -c %Y out/runs/point-0/measured.json) == "$before" ]] || fail "--resume reran point 0"
# A changed study is refused, naming what changed.
"$yolopipe" study two.yaml --out out --resume --set measure.steps=3 >changed.log 2>&1
[[ $? == 2 ]] && grep -q "measure.steps" changed.log || fail "--resume against a changed study: $(cat changed.log)"

# Killed after its first point: --resume runs only the others.
STAGES="1, 2, 4" study three
"$yolopipe" study three.yaml --out killed >killed.log 2>&1 &
pid=$!
for _ in $(seq 600); do
    [[ -f killed/points.csv && $(grep -c '' killed/points.csv) -ge 2 ]] && break
    sleep 0.2
done
kill -9 "$pid"
wait "$pid" 2>/dev/null
rows_at_kill=$(($(grep -c '' killed/points.csv) - 1))
first=$(sed -n 2p killed/points.csv)
"$yolopipe" study three.yaml --out killed --resume >killed-resume.log 2>&1 || fail "--resume after SIGKILL: $(tail -5 killed-resume.log)"
[[ $(grep -c "done earlier" killed-resume.log) == "$rows_at_kill" ]] || fail "after SIGKILL: $rows_at_kill rows, resume says $(grep -c 'done earlier' killed-resume.log) done"
[[ $(grep -c '' killed/points.csv) == 4 && $(sed -n 2p killed/points.csv) == "$first" ]] || fail "after SIGKILL: $(cat killed/points.csv)"
echo "killed after $rows_at_kill point(s); --resume finished the rest"

# A point that cannot finish in its time limit becomes a timeout row; the study goes on.
STAGES="1" LIMIT=0.2 study slow
"$yolopipe" study slow.yaml --out slow >slow.log 2>&1 || fail "a timed-out point failed the study"
grep -q ",timeout," slow/points.csv || fail "no timeout row: $(cat slow/points.csv)"

# Two takes of a point: both run, the faster is kept, and the spread says by how much they differ.
STAGES="1" study takes
"$yolopipe" study takes.yaml --out takes --set measure.takes=2 >takes.log 2>&1 || fail "measure.takes=2: $(tail -5 takes.log)"
grep -q "the fastest of 2 takes" takes.log || fail "no takes in the progress line: $(cat takes.log)"
$python - takes <<'PY' || fail "measure.takes=2"
import csv, json, statistics, sys
row = next(csv.DictReader(open(sys.argv[1] + "/points.csv")))
def median_ms(run):  # the study's measured step: the median batch after the warm-up batch
    return 1e3 * statistics.median(json.load(open(run + "/measured.json"))["batch_s"][1:])
takes = [median_ms(sys.argv[1] + "/runs/point-0"), median_ms(sys.argv[1] + "/runs/point-0-take-2")]
assert abs(float(row["measured_step_ms"]) - min(takes)) < 1e-3 * min(takes), (row["measured_step_ms"], takes)
assert abs(float(row["measured_spread_pct"]) - 100 * (max(takes) / min(takes) - 1)) < 0.01, (row["measured_spread_pct"], takes)
assert row["run_dir"].endswith("point-0" if takes[0] <= takes[1] else "point-0-take-2"), row["run_dir"]
PY
grep -q "^Noise: the slowest of a point's 2 takes" takes/summary.md || fail "summary.md says nothing of the takes"
grep -q "take 1: measured" takes.log || fail "no line for the first round's take: $(cat takes.log)"
# Killed before its first row: --resume reads the takes that finished instead of running them again.
rm takes/points.csv
before=$(stat -c %Y takes/runs/point-0-take-2/measured.json)
"$yolopipe" study takes.yaml --out takes --set measure.takes=2 --resume >takes-resume.log 2>&1 || fail "--resume of takes: $(tail -5 takes-resume.log)"
[[ $(stat -c %Y takes/runs/point-0-take-2/measured.json) == "$before" && $(grep -c '' takes/points.csv) == 2 ]] ||
    fail "--resume ran a finished take again: $(cat takes-resume.log)"

# cluster.calibrate: the layers are timed alone (yolopipe profile) and inside training steps on one
# rank; the point is planned with the in-step times and optimizer step, the profile's W shares, loss
# and loader.
STAGES="2" study cal
echo "  calibrate: true" >>cal.yaml
"$yolopipe" study cal.yaml --out cal >cal.log 2>&1 || fail "cluster.calibrate: $(tail -5 cal.log)"
grep -q "calibration: inside training steps the layers take .* planning with .*profile-0-in-steps.csv" cal.log ||
    fail "no in-step calibration line: $(grep calibration cal.log)"
$python - cal/profiles <<'PY' || fail "the in-step profile"
import csv, json, statistics, sys
d = sys.argv[1]
def read(path):
    layers, steps = {}, {}
    for row in csv.reader(open(path)):
        if row[0].isdigit(): layers[int(row[0])] = [float(x) if x else 0.0 for x in row[2:4] + row[6:7]]
        elif row[0] == "step": steps[row[1]] = float(row[2])
    return layers, steps
def total(layers): return sum(f + b for f, b, _ in layers.values())
merged, merged_steps = read(f"{d}/profile-0-in-steps.csv")
runs = {n: read(f"{d}/in-steps/{n}/profile.csv")[0] for n in ("profile-0", "profile-0-again")}
faster = min(runs, key=lambda n: total(runs[n]))
inside = runs[faster]
alone = [read(f"{d}/{n}.csv") for n in ("profile-0", "profile-0-again")]
alone_layers, alone_steps = min(alone, key=lambda a: total(a[0]))
m = json.load(open(f"{d}/in-steps/{faster}/measured.json"))
optimizer_s = statistics.median([v for v in m["optimizer_s"][1:] if v > 0])  # after the warm-up batch
scale = optimizer_s / ((alone_steps["optimizer"] + alone_steps["ema"]) * m["param_bytes"][0])
for key in ("loss", "loader"):
    assert merged_steps[key] == alone_steps[key], (key, merged_steps, alone_steps)
for key in ("optimizer", "ema"):
    assert abs(merged_steps[key] - scale * alone_steps[key]) <= 1e-6 * merged_steps[key], (key, scale, merged_steps, alone_steps)
assert len(merged) == len(inside) == len(alone_layers) > 0
for i, (f, b, w) in merged.items():
    assert abs(f - inside[i][0]) <= 1e-6 * f and abs(b - inside[i][1]) <= 1e-6 * b, (i, merged[i], inside[i])
    share = alone_layers[i][2] / alone_layers[i][1] if alone_layers[i][1] > 0 else 0
    assert abs(w - share * b) <= 1e-6 * b + 1e-15, (i, w, share, b)
PY

if [[ $failures -gt 0 ]]; then echo "$failures check(s) failed"; exit 1; fi
echo "study run checks passed"
