#!/usr/bin/env bash
# `experiments/yolopipe_plot.py study` on fabricated points.csv files: each study draws exactly the figures its
# columns allow (valid PNG files), non-ok rows are left out and counted, a one-point study and a study
# with no ok point still succeed, and bad input is one line with exit code 2. Skipped (77) when
# Debian's python has no matplotlib. Set PLOT_STUDY_KEEP=DIR to keep the fabricated studies there.
# Usage: check-plot-study.sh SOURCE_ROOT
set -euo pipefail
root=$1
python=${PLOT_STUDY_PYTHON:-/usr/bin/python3}  # Debian's, with matplotlib
script=$root/experiments/yolopipe_plot.py
if ! "$python" -c 'import matplotlib' 2> /dev/null; then
  echo "skipped: $python has no matplotlib (apt-get install python3-matplotlib)"
  exit 77
fi
if [[ -n ${PLOT_STUDY_KEEP:-} ]]; then
  tmp=$PLOT_STUDY_KEEP
  mkdir -p "$tmp"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
fi

# Fabricated studies, shaped like the issue's shipped ones: numbers follow simple closed forms so
# the figures can be checked by eye (bubble = (S-1)/(m+S-1) for gpipe/1f1b, efficiency falling
# with nodes, activation memory growing with imgsz squared).
"$python" - "$tmp" <<'PY'
import csv, math, os, random, sys
tmp = sys.argv[1]
random.seed(15)
FIXED = ["predicted_step_ms", "measured_step_ms", "error_pct", "predicted_images_per_s", "measured_images_per_s",
         "images_per_s", "images_per_s_per_gpu", "scaling_efficiency", "bubble_fraction",
         "predicted_peak_activation_bytes", "measured_peak_activation_bytes", "measured_peak_rss_bytes",
         "memory_bytes_per_gpu", "fits_memory", "p2p_bytes_per_step", "allreduce_bytes_per_step",
         "term_compute_ms", "term_p2p_ms", "term_allreduce_ms", "term_optimizer_ms", "term_loss_ms",
         "term_loader_ms", "time_to_train_h"]

def write(name, swept, points, costs=()):
    os.makedirs(os.path.join(tmp, name), exist_ok=True)
    cols = ["index", "label"] + swept + ["world", "nodes_used", "status", "reason"] + FIXED + list(costs)
    with open(os.path.join(tmp, name, "points.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i, p in enumerate(points):
            p.setdefault("index", i)
            p.setdefault("label", " ".join(f"{k}={p[k]}" for k in swept))
            w.writerow(["" if p.get(c) is None else p[c] for c in cols])

# schedules-cpu: stages x schedule x micro-batches, one rank per stage, measured and simulated.
points = []
for s in (1, 2, 4):
    for sched in ("gpipe", "1f1b", "interleaved", "zb-h1"):
        for m in (2, 4, 8):
            p = {"parallel.stages": s, "parallel.schedule": sched, "parallel.micro_batches": m, "world": s,
                 "nodes_used": 1, "status": "ok"}
            if sched == "interleaved" and s == 1:
                points.append(dict(p, status="invalid", reason="interleaved needs 2 or more stages"))
                continue
            if (s, sched, m) == (4, "zb-h1", 8):
                points.append(dict(p, status="timeout", reason="killed at 600 s"))
                continue
            theory = (s - 1) / (m + s - 1)
            bubble = {"gpipe": theory, "1f1b": theory, "interleaved": (s - 1) / (2 * m + s - 1),
                      "zb-h1": theory / 3}[sched] + 0.01 * (s > 1)
            predicted = 900.0 / s / (1 - bubble)
            measured = predicted * (1 + random.uniform(-0.08, 0.08))
            p.update(predicted_step_ms=f"{predicted:.2f}", measured_step_ms=f"{measured:.2f}",
                     error_pct=f"{100 * (predicted - measured) / measured:.2f}", bubble_fraction=f"{bubble:.4f}",
                     predicted_images_per_s=f"{16000 / predicted:.2f}", measured_images_per_s=f"{16000 / measured:.2f}",
                     images_per_s=f"{16000 / measured:.2f}", images_per_s_per_gpu=f"{16000 / measured / s:.2f}",
                     predicted_peak_activation_bytes=int(4e8 / s), measured_peak_activation_bytes=int(4.2e8 / s))
            points.append(p)
write("schedules-cpu", ["parallel.stages", "parallel.schedule", "parallel.micro_batches"], points)

# cluster-h100: scale x stages x nodes of 8 GPUs, simulated, with time and cost to train COCO.
costs = ["cost_aws_on_demand", "cost_aws_spot", "cost_local"]
points = []
for scale, per_gpu in (("n", 1400.0), ("x", 160.0)):
    for s in (1, 4):
        for nodes in (1, 2, 4, 8, 16, 32, 64, 128):
            world = 8 * nodes
            p = {"scale": scale, "parallel.stages": s, "nodes": nodes, "world": world, "nodes_used": nodes,
                 "status": "ok"}
            if (scale, s, nodes) == ("x", 1, 128):
                points.append(dict(p, status="oom", reason="stage 0 needs 93 GiB, the GPU has 80"))
                continue
            eff = (0.97 if s == 1 else 0.9) / (1 + 0.06 * math.log2(nodes) * (1.5 if s == 1 else 0.7))
            ips = per_gpu * world * eff
            hours = 300 * 118287 / ips / 3600
            p.update(predicted_step_ms=f"{1000 * 16 * world / ips:.3f}", predicted_images_per_s=f"{ips:.1f}",
                     images_per_s=f"{ips:.1f}", images_per_s_per_gpu=f"{ips / world:.2f}",
                     scaling_efficiency=f"{eff / (0.97 if s == 1 else 0.9):.4f}", bubble_fraction=f"{0.1 * (s > 1):.3f}",
                     time_to_train_h=f"{hours:.3f}", cost_aws_on_demand=f"{hours * world * 6.88:.0f}",
                     cost_aws_spot=f"{hours * world * 2.9:.0f}", cost_local=f"{hours * world * 1.1:.0f}",
                     memory_bytes_per_gpu=80 * 2**30, fits_memory="false" if (scale, s, nodes) == ("x", 4, 4) else "true")
            points.append(p)
write("cluster-h100", ["scale", "parallel.stages", "nodes"], points, costs)

# input-size: scale x imgsz on one H100, simulated; the big inputs of m do not fit in 80 GiB.
points = []
for scale, gib640, ips640 in (("s", 22.0, 900.0), ("m", 48.0, 420.0)):
    for imgsz in (320, 480, 640, 960, 1280):
        act = gib640 * (imgsz / 640) ** 2 * 2**30
        ips = ips640 * (640 / imgsz) ** 2
        points.append({"scale": scale, "train.imgsz": imgsz, "world": 1, "nodes_used": 1, "status": "ok",
                       "predicted_step_ms": f"{16000 / ips:.2f}", "images_per_s": f"{ips:.1f}",
                       "predicted_images_per_s": f"{ips:.1f}", "images_per_s_per_gpu": f"{ips:.1f}",
                       "predicted_peak_activation_bytes": int(act), "memory_bytes_per_gpu": 80 * 2**30,
                       "fits_memory": "true" if act + 6 * 2**30 <= 80 * 2**30 else "false"})
write("input-size", ["scale", "train.imgsz"], points)

# One measured point, and a study whose every point failed.
write("one-point", ["parallel.schedule"], [{"parallel.schedule": "1f1b", "world": 2, "nodes_used": 1,
      "status": "ok", "predicted_step_ms": "410.5", "measured_step_ms": "432.0", "images_per_s": "37.0"}])
write("all-failed", ["parallel.stages"], [{"parallel.stages": s, "world": s, "status": "failed",
      "reason": "exit code 1"} for s in (1, 2)])
PY

fail() { echo "FAIL: $*"; exit 1; }

# Runs the script on study $1 and checks the PNGs it leaves are exactly $2 (space-separated), each a
# PNG file; the output is in $tmp/$1.out.
expect_figures() {
  local study=$1 expected=$2 rc=0
  "$python" "$script" study "$tmp/$study/points.csv" > "$tmp/$study.out" 2>&1 || rc=$?
  [[ $rc == 0 ]] || fail "$study: exit $rc: $(cat "$tmp/$study.out")"
  local got
  got=$(cd "$tmp/$study" && ls -- *.png 2> /dev/null | sort | tr '\n' ' ' | sed 's/ $//') || true
  [[ $got == "$expected" ]] || fail "$study: PNGs '$got', expected '$expected'; output: $(cat "$tmp/$study.out")"
  for png in $expected; do
    [[ $(head -c 8 "$tmp/$study/$png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] \
      || fail "$study/$png is not a PNG file"
    grep -qxF "wrote $tmp/$study/$png" "$tmp/$study.out" || fail "$study: no 'wrote' line for $png"
  done
}

expect_figures schedules-cpu "bubble.png fidelity.png scaling.png"
grep -qxF "left out 4 of 36 points not ok (3 invalid, 1 timeout)" "$tmp/schedules-cpu.out" \
  || fail "schedules-cpu: non-ok points not counted: $(cat "$tmp/schedules-cpu.out")"
grep -q "^skipped train_cost.png: " "$tmp/schedules-cpu.out" || fail "schedules-cpu: train_cost.png skip not said"
grep -q "^skipped input_size.png: train.imgsz is not swept" "$tmp/schedules-cpu.out" \
  || fail "schedules-cpu: input_size.png skip not said"

expect_figures cluster-h100 "scaling.png train_cost.png"
grep -q "^skipped bubble.png: parallel.micro_batches is not swept" "$tmp/cluster-h100.out" \
  || fail "cluster-h100: bubble.png skip not said"
grep -q "^skipped fidelity.png: no ok point has both" "$tmp/cluster-h100.out" \
  || fail "cluster-h100: fidelity.png skip not said"
expect_figures input-size "input_size.png"
expect_figures one-point "fidelity.png"
grep -q "^skipped scaling.png: needs at least 2 world sizes" "$tmp/one-point.out" || fail "one-point: scaling skip"
expect_figures all-failed ""
grep -qxF "skipped scaling.png: no ok point" "$tmp/all-failed.out" || fail "all-failed: no skip line"

# --out and --title: the figures go to another folder, created when missing.
"$python" "$script" study "$tmp/input-size/points.csv" --out "$tmp/elsewhere/figs" --title "input sizes" > /dev/null
[[ -s $tmp/elsewhere/figs/input_size.png ]] || fail "--out: no input_size.png in $tmp/elsewhere/figs"

# A last line cut short by a killed study is left out with a note; the rows before it are drawn.
mkdir -p "$tmp/cut"
head -c -40 "$tmp/input-size/points.csv" > "$tmp/cut/points.csv"
expect_figures cut "input_size.png"
grep -q "left out the last line, written only in part" "$tmp/cut.out" || fail "cut: no note for the cut line"

# Bad input: one line on stderr, exit code 2.
expect_error() {
  local csv=$1 expected=$2 rc=0
  "$python" "$script" study "$csv" --out "$tmp/bad-out" > "$tmp/bad.stdout" 2> "$tmp/bad.err" || rc=$?
  [[ $rc == 2 ]] || fail "$csv: exit $rc, expected 2; stderr: $(cat "$tmp/bad.err")"
  [[ $(wc -l < "$tmp/bad.err") == 1 ]] || fail "$csv: not one line: $(cat "$tmp/bad.err")"
  grep -qF -- "$expected" "$tmp/bad.err" || fail "$csv: expected '$expected', got: $(cat "$tmp/bad.err")"
}
expect_error "$tmp/missing/points.csv" "$tmp/missing/points.csv: cannot read: No such file or directory"
mkdir -p "$tmp/broken"
sed '1s/,world,/,gpus,/' "$tmp/cluster-h100/points.csv" > "$tmp/broken/points.csv"
expect_error "$tmp/broken/points.csv" "$tmp/broken/points.csv:1:1: no column 'world'"
printf 'index,label,scale,world,status,images_per_s\n0,scale=n,n,8,ok,120.5\n1,scale=s,s,16,ok,fast\n' \
  > "$tmp/broken/points.csv"
expect_error "$tmp/broken/points.csv" "$tmp/broken/points.csv:3:19: column 'images_per_s': 'fast' is not a number"
printf 'index,label,parallel.stages,world,status\n0,parallel.stages=four,four,4,ok\n' > "$tmp/broken/points.csv"
expect_error "$tmp/broken/points.csv" "$tmp/broken/points.csv:2:24: column 'parallel.stages': 'four' is not a number"
printf 'index,label,world,status\n0,a,1,ok\n1,b,2\n2,c,4,ok\n' > "$tmp/broken/points.csv"
expect_error "$tmp/broken/points.csv" "$tmp/broken/points.csv:3:1: 3 fields, the header has 4"
: > "$tmp/broken/points.csv"
expect_error "$tmp/broken/points.csv" "$tmp/broken/points.csv:1:1: empty file"
[[ ! -e $tmp/bad-out ]] || fail "bad input created the --out folder"
rc=0
"$python" "$script" study > /dev/null 2> "$tmp/bad.err" || rc=$?
[[ $rc == 2 ]] && grep -q "^yolopipe_plot.py: .*(see yolopipe_plot.py study --help)$" "$tmp/bad.err" \
  || fail "no argument: exit $rc: $(cat "$tmp/bad.err")"

echo "plot_study: all checks passed"
