#!/usr/bin/env python3
"""Writes the reference that test_curves compares yolopipe's curves and confusion matrices with,
computed by Ultralytics' own code: DetectionValidator's update_metrics / get_stats (matching,
ap_per_class: p, r, F1 curves against confidence and the precision envelope against recall),
ConfusionMatrix.process_batch at conf 0.25, IoU 0.45 and ConfusionMatrix.process_cls_preds on
ClassificationValidator's top-1.

Not run by the test suite (it needs PyTorch and Ultralytics): run it by hand from the repository root:

    python3 tests/reference/make_curves_reference.py

The detections are made directly (no network): per image, ground-truth boxes; detections are jittered
copies of them (sometimes with another class, sometimes two of one box, scores on both sides of 0.25)
plus random false positives. nc = 5: class 3 is predicted but has no ground truth, class 4 has ground
truth but is never predicted; image 4 has no ground truth, image 5 no detections. Scores are distinct
so that every sort order is defined.

Output tests/reference/curves.bin holds records as make_metrics_reference.py writes them
(u32 name length, name, u32 element size, u64 count, little-endian data); integers as float64.
  det:shape          N, nc, img_h, img_w
  det:targets        (T, 6): image, class, cx, cy, w, h (normalised), float32
  det:count          detections per image; det:det all detections (x1 y1 x2 y2 score class), float32
  curve:cls          the classes with ground truth (the curves' rows)
  curve:px           np.linspace(0, 1, 1000)
  curve:p, curve:r, curve:f1, curve:pr   (rows, 1000)
  cm:det             (nc + 1, nc + 1) [predicted][true]
  cls:shape, cls:logits, cls:labels, cm:cls (nc, nc)
"""
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from ultralytics.models.yolo.classify import ClassificationValidator
from ultralytics.utils.metrics import ConfusionMatrix

from make_metrics_reference import detection_validator, validation_batch  # beside this file

N, NC, IMG_H, IMG_W = 8, 5, 64, 96
BATCHES = (3, 5)


def record(f, name, values, dtype):
    data = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
    f.write(struct.pack("<I", len(name)) + name.encode() + struct.pack("<IQ", data.itemsize, data.size))
    f.write(data.tobytes())


def make_data(rng):
    targets, dets = [], []
    for i in range(N):
        gts = []
        if i != 4:
            for _ in range(rng.integers(2, 8)):
                w, h = rng.uniform(0.15, 0.6, 2)
                cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
                gts.append((i, rng.choice([0, 1, 2, 4]), cx, cy, w, h))
        targets += gts
        rows = []
        if i != 5:
            for _, c, cx, cy, w, h in gts:
                for _ in range(rng.integers(1, 3)):
                    jit = rng.normal(0, 0.08, 4) * (w, h, w, h)
                    x1, y1 = (cx - w / 2) * IMG_W + jit[0] * IMG_W, (cy - h / 2) * IMG_H + jit[1] * IMG_H
                    x2, y2 = (cx + w / 2) * IMG_W + jit[2] * IMG_W, (cy + h / 2) * IMG_H + jit[3] * IMG_H
                    dc = c if c != 4 else 0  # class 4 is never predicted
                    if rng.uniform() < 0.2:
                        dc = rng.choice([0, 1, 2, 3])
                    rows.append((x1, y1, x2, y2, rng.uniform(0.01, 0.95), dc))
            for _ in range(rng.integers(0, 4)):  # false positives anywhere
                x1, y1 = rng.uniform(0, IMG_W - 20), rng.uniform(0, IMG_H - 20)
                rows.append((x1, y1, x1 + rng.uniform(8, 30), y1 + rng.uniform(8, 30), rng.uniform(0.01, 0.9),
                             rng.choice([0, 1, 2, 3])))
        rows.sort(key=lambda r: -r[4])  # NMS output order
        dets.append(np.array(rows, dtype=np.float32).reshape(-1, 6))
    return np.array(targets, dtype=np.float32), dets


def detection(f, targets, dets, save_dir):
    v = detection_validator(save_dir, NC)
    cm = ConfusionMatrix(names=v.names, task="detect")
    first = 0
    for n in BATCHES:
        batch = validation_batch(targets, first, n, IMG_H, IMG_W)
        preds = []
        for k in range(n):
            d = torch.from_numpy(dets[first + k])
            preds.append({"bboxes": d[:, :4], "conf": d[:, 4], "cls": d[:, 5], "extra": d[:, 6:]})
        for si, p in enumerate(preds):
            cm.process_batch(p, v._prepare_batch(si, batch), conf=0.25, iou_thres=0.45)
        v.update_metrics(preds, batch)
        first += n
    v.get_stats()
    box = v.metrics.box
    record(f, "curve:cls", v.metrics.ap_class_index, np.float64)
    record(f, "curve:px", box.px, np.float64)
    record(f, "curve:p", box.p_curve, np.float64)
    record(f, "curve:r", box.r_curve, np.float64)
    record(f, "curve:f1", box.f1_curve, np.float64)
    record(f, "curve:pr", box.prec_values, np.float64)
    record(f, "cm:det", cm.matrix, np.float64)
    print("curve classes", v.metrics.ap_class_index, "ap50", box.ap50)
    print("confusion matrix (detect):\n", cm.matrix.astype(int))


def classification(f, rng, save_dir):
    n, nc = 60, 4
    logits = rng.normal(0, 2, (n, nc)).astype(np.float32)
    labels = rng.integers(0, nc, n)
    logits[np.arange(n), labels] += 1.5
    v = ClassificationValidator(save_dir=Path(save_dir), args=dict(plots=False))
    v.names = {c: str(c) for c in range(nc)}
    v.pred, v.targets = [], []
    v.update_metrics(torch.from_numpy(logits).softmax(1), {"cls": torch.from_numpy(labels)})
    cm = ConfusionMatrix(names=v.names, task="classify")
    cm.process_cls_preds(v.pred, v.targets)
    record(f, "cls:shape", [n, nc], np.float64)
    record(f, "cls:logits", logits, np.float32)
    record(f, "cls:labels", labels, np.float64)
    record(f, "cm:cls", cm.matrix, np.float64)
    print("confusion matrix (classify):\n", cm.matrix.astype(int))


def main():
    rng = np.random.default_rng(19)
    targets, dets = make_data(rng)
    scores = np.concatenate([d[:, 4] for d in dets])
    assert len(np.unique(scores)) == len(scores), "score ties: change the seed"
    out = Path(__file__).parent / "curves.bin"
    with open(out, "wb") as f, tempfile.TemporaryDirectory() as save_dir:
        record(f, "det:shape", [N, NC, IMG_H, IMG_W], np.float64)
        record(f, "det:targets", targets, np.float32)
        record(f, "det:count", [len(d) for d in dets], np.float64)
        record(f, "det:det", np.concatenate(dets), np.float32)
        detection(f, targets, dets, save_dir)
        classification(f, rng, save_dir)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
