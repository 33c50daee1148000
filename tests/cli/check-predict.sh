#!/usr/bin/env bash
# `yolopipe predict` end to end on a one-step YOLOv8n run over a generated 8-image set: from the run
# directory, a checkpoint directory and an export, on a folder, a .txt list and single files. Checks
# what it writes (a drawn JPEG per image, labels/<stem>.txt in YOLO format "class cx cy w h conf"
# normalised to the image, predictions.json that parses and agrees with the labels), one stdout line
# per image, the same predictions from every kind of WEIGHTS, and that every bad input is one line on
# stderr: an unreadable image is skipped (exit 0), nothing left to predict, missing or wrong weights,
# an export without the recorded model and bad options exit 2.
# Usage: check-predict.sh SOURCE_ROOT YOLOPIPE
set -euo pipefail
root=$1 yolopipe=$(realpath "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$tmp"

cat > exp.yaml <<EOF2
name: pr
model: $root/experiments/models/yolov8.yaml
scale: n
data: data/pr/data.yaml
synth: {train: 8, val: 4, imgsz: 64, classes: 3, seed: 1}
train: {epochs: 1, batch: 4, imgsz: 64, nbs: 4, warmup_epochs: 0, close_mosaic: 0, workers: 1}
parallel: {micro_batches: 2}
output: {dir: runs, plots: false}
EOF2
"$yolopipe" train exp.yaml --set train.max_steps=1 > train.out 2>&1 || fail "training: $(tail -3 train.out)"
val=data/pr/images/val
ls "$val" | sed 's|^|images/val/|' > data/pr/list.txt
printf 'not an image' > broken.jpg

# A low --conf: a model one step old scores every class near its initial prior (about 0.004).
"$yolopipe" predict runs/pr "$val" data/pr/list.txt broken.jpg --conf 0.001 --max-det 5 --out out \
  > stdout 2> stderr || fail "predict: $(cat stderr)"
[[ "$(cat stderr)" == "broken.jpg: not a PNG or JPEG file (yolopipe reads those two formats), skipped" ]] ||
  fail "stderr: $(cat stderr)"
[[ $(grep -c '\.png: 64x64 .*, [0-9.]* ms$' stdout) == 8 ]] || fail "expected 8 image lines: $(cat stdout)"
grep -qx '8 images, results in out (drawn images, labels/, predictions.json)' stdout || fail "last line: $(tail -1 stdout)"
for i in 000000 000001 000002 000003; do
  [[ -s out/$i.jpg && -s out/labels/$i.txt ]] || fail "out/$i.jpg or out/labels/$i.txt missing"
  [[ "$(head -c 3 out/$i.jpg | od -An -tx1 | tr -d ' ')" == ffd8ff ]] || fail "out/$i.jpg is not a JPEG"
done
python3 - out/predictions.json out/labels <<'PY' || fail "predictions.json or labels"
import json, os, sys
d = json.load(open(sys.argv[1]))
assert len(d["images"]) == 8, len(d["images"])
for im in d["images"]:
    assert (im["width"], im["height"]) == (64, 64)
    dets = im["detections"]
    assert 1 <= len(dets) <= 5, len(dets)
    lines = open(os.path.join(sys.argv[2], os.path.basename(im["path"])[:-4] + ".txt")).read().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(dets), lines
    for det, line in zip(dets, lines):
        f = line.split(" ")
        assert len(f) == 6 and f[0] == str(det["class"]) and 0 <= det["class"] < 3, line
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 <= x2 <= 64 and 0 <= y1 <= y2 <= 64, det
        want = ((x1 + x2) / 128, (y1 + y2) / 128, (x2 - x1) / 64, (y2 - y1) / 64, det["confidence"])
        assert all(abs(float(v) - w) <= 1e-5 * max(1, w) for v, w in zip(f[1:], want)), (line, want)
        assert det["name"] in ("circle", "square", "triangle") and 0.001 < det["confidence"] <= 1, det
PY

# The same predictions from the checkpoint directory and from an export (predictions.json without
# its "weights" line).
same() { diff <(grep -v '"weights"' out/predictions.json) <(grep -v '"weights"' "$1/predictions.json") > /dev/null; }
"$yolopipe" predict runs/pr/weights/last "$val" --conf 0.001 --max-det 5 --out out-ck > /dev/null 2>&1 || fail "from weights/last"
"$yolopipe" export runs/pr --out m.safetensors > /dev/null
"$yolopipe" predict m.safetensors "$val" --conf=0.001 --max-det=5 --out out-ex > /dev/null 2>&1 || fail "from the export"
python3 - out/predictions.json out-ck/predictions.json out-ex/predictions.json <<'PY' || fail "predictions differ by WEIGHTS"
import json, sys
a, b, c = (json.load(open(p))["images"][:4] for p in sys.argv[1:])
assert a == b == c
PY
# Run directories are numbered: a second run into out goes to out2.
"$yolopipe" predict m.safetensors "$val/000000.png" --out out > stdout 2>&1
grep -qx '1 image, results in out2 (drawn images, labels/, predictions.json)' stdout || fail "out2: $(cat stdout)"

# expect LINE ARGS...: yolopipe ARGS exits 2 with exactly LINE on stderr.
expect() {
  local line=$1; shift
  set +e
  "$yolopipe" "$@" > out.txt 2> err.txt
  local rc=$?
  set -e
  [[ $rc == 2 ]] || fail "yolopipe $*: exit $rc, expected 2: $(cat err.txt)"
  [[ "$(cat err.txt)" == "$line" ]] || fail "yolopipe $*: stderr
  expected: $line
  got:      $(cat err.txt)"
}
mkdir empty
expect "yolopipe predict: nothing to predict: empty: no images (looked for .jpg, .png and Ultralytics' other image extensions)" \
  predict runs/pr empty
expect "yolopipe predict: nothing to predict: broken.jpg: not a PNG or JPEG file (yolopipe reads those two formats)" \
  predict runs/pr broken.jpg
expect "yolopipe predict: nothing to predict: nothere.png: no such file or folder (and 1 more skipped)" \
  predict runs/pr nothere.png empty
expect "nowhere: no such file or directory (WEIGHTS: a run directory, a checkpoint directory or an exported .safetensors file)" \
  predict nowhere "$val"
expect "runs/pr/weights: neither a run directory (no weights/best or weights/last) nor a checkpoint directory (no manifest.yaml)" \
  predict runs/pr/weights "$val"
expect "yolopipe predict: --conf expects a number from 0 to 1, found '1.5'" predict runs/pr "$val" --conf 1.5
expect "yolopipe predict: --iou expects a number from 0 to 1, found 'x'" predict runs/pr "$val" --iou=x
expect "yolopipe predict: --device must be cpu or cuda, found 'tpu'" predict runs/pr "$val" --device tpu
expect "yolopipe predict: missing SOURCE (see yolopipe predict --help)" predict runs/pr
# An export written before exports recorded their model: the same tensors without the metadata.
python3 - m.safetensors old.safetensors <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
head["__metadata__"] = {"format": "pt"}
text = json.dumps(head, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + raw[8 + n:])
PY
expect "old.safetensors: the file does not record its model (an export from an older yolopipe?): re-export it with \`yolopipe export RUN --out FILE.safetensors\`" \
  predict old.safetensors "$val"
echo "predict: all checks passed"
