#!/usr/bin/env bash
# The heads yolopipe describes but cannot train yet (issue 17; issue 18 trains them): YOLO26's Detect
# (end2end: True, reg_max: 1), v10Detect, and a reg_max 1 Detect. On tiny models made of existing
# modules plus those keys:
#   - info, plan and profile succeed (info shows the head; Ultralytics' counts are checked by the
#     reference tables);
#   - train exits 2 with exactly one line on stderr naming the head's row, nothing on stdout, and
#     before it generates data or allocates anything.
# Usage: check-end2end.sh YOLOPIPE
set -euo pipefail
yolopipe=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

run() {
  set +e
  "$yolopipe" "$@" > "$tmp/out" 2> "$tmp/err"
  rc=$?
  set -e
}

# model NAME KEYS HEAD: a model file with header KEYS and HEAD as its last row (line 11 + KEYS' lines).
model() {
  { echo "nc: 3"; printf '%b' "$2"
    cat <<EOF
backbone:
  - [-1, 1, Conv, [8, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, Conv, [32, 3, 2]]
  - [-1, 1, Conv, [32, 3, 2]]
head:
  - [[2, 3, 4], 1, $3, [nc]]
EOF
  } > "$tmp/$1.yaml"
  cat > "$tmp/exp-$1.yaml" <<EOF
name: $1
model: $1.yaml
data: data/$1/data.yaml
synth: {train: 8, val: 4, imgsz: 64, classes: 3, seed: 1}
train: {epochs: 1, batch: 4, imgsz: 64, nbs: 4, warmup_epochs: 0, close_mosaic: 0, workers: 1}
parallel: {micro_batches: 2}
output: {dir: runs}
EOF
}

e2e="end-to-end heads (end2end: True / v10Detect) cannot be trained yet; info, plan and profile work"
r1="Detect with reg_max 1 (no DFL) cannot be trained yet: its box loss is not implemented; info, plan and profile work"
model yolo26 'end2end: True\nreg_max: 1\n' Detect
model yolov10 '' v10Detect
model detect16 'end2end: true\n' Detect
model reg1 'reg_max: 1\n' Detect
declare -A line=([yolo26]=11 [yolov10]=9 [detect16]=10 [reg1]=10)
declare -A message=([yolo26]=$e2e [yolov10]=$e2e [detect16]=$e2e [reg1]=$r1)

for m in yolo26 yolov10 detect16 reg1; do
  run info "$tmp/$m.yaml"
  [[ $rc == 0 ]] || fail "info $m: exit $rc: $(cat "$tmp/err")"
  run plan "$tmp/exp-$m.yaml"
  [[ $rc == 0 ]] || fail "plan $m: exit $rc: $(cat "$tmp/err")"
  run train "$tmp/exp-$m.yaml"
  [[ $rc == 2 ]] || fail "train $m: exit $rc, expected 2: $(cat "$tmp/err")"
  [[ ! -s $tmp/out ]] || fail "train $m: stdout not empty: $(head -3 "$tmp/out")"
  want="$tmp/$m.yaml:${line[$m]}:20: ${message[$m]}"
  printf '%s\n' "$want" | cmp -s - "$tmp/err" || fail "train $m: stderr
  expected: $want
  got:      $(cat "$tmp/err")"
  [[ ! -e $tmp/data/$m ]] || fail "train $m: generated data before refusing"
  run profile "$tmp/exp-$m.yaml" --repeats 1 --out "$tmp/$m.csv"
  [[ $rc == 0 && -s $tmp/$m.csv ]] || fail "profile $m: exit $rc: $(cat "$tmp/err")"
done
# The heads' output and branches as info shows them: reg_max 1 gives 4 + nc channels.
run info "$tmp/yolo26.yaml" --imgsz 64
grep -q ' Detect  *\[3, 1, \[16, 32, 32\]\]  *7x84x1 ' "$tmp/out" || fail "info yolo26: $(tail -2 "$tmp/out")"
run info "$tmp/yolov10.yaml" --imgsz 64
grep -q ' v10Detect  *\[3, 16, \[16, 32, 32\]\]  *67x84x1 ' "$tmp/out" || fail "info yolov10: $(tail -2 "$tmp/out")"
echo "end2end checks passed"
