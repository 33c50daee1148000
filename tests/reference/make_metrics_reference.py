#!/usr/bin/env python3
"""Writes the reference that test_metrics compares yolopipe's validation metrics with, computed by
Ultralytics' own code: Detect's inference decode (DFL, dist2bbox, sigmoid), non_max_suppression
(with torchvision's NMS), DetectionValidator's postprocess / update_metrics / get_stats (matching,
ap_per_class, DetMetrics) and ClassificationValidator's top-1 / top-5.

Not run by the test suite (it needs PyTorch and Ultralytics): run it by hand from the repository root:

    python3 tests/reference/make_metrics_reference.py

The data are random but shaped like a real validation batch: ground-truth boxes, box distributions
that peak near the edges of the box an anchor sits in (with noise), class logits around the
confidence threshold with the true class raised inside its boxes. nc = 5: class 3 is predicted but
has no ground truth, class 4 has ground truth but is never predicted; image 4 has no ground truth,
image 5 no detections. Scores are checked to have no ties, so that every sort order is defined.

Output tests/reference/metrics.bin holds records as in make_forward_reference.py (u32 name length,
name, u32 element size, u64 count, little-endian data); integers are stored as float64.
  det:levels                  (h, w, stride) per level; det:shape = (N, nc, reg_max, img_h, img_w)
  det:raw                     Detect's training output (N, 4 reg_max + nc, A), float32
  det:pred                    Detect's inference output (N, 4 + nc, A): xywh pixels, sigmoid scores
  det:targets                 (T, 6): image, class, cx, cy, w, h (normalised), float32
  nms<k>:config               conf, iou, multi_label, max_det, max_nms, max_wh for NMS case k
  nms<k>:count, nms<k>:det    per image the kept count; all kept rows (x1 y1 x2 y2 score class) in order
  match:tp                    per kept detection of nms0 (in order), bit t set = correct at IoU 0.5+0.05t
  val:batches                 images per update_metrics call
  val:summary                 seen, instances, mp, mr, map50, map50-95, fitness
  val:classes, val:p, val:r, val:ap (nclasses, 10), val:nt_class, val:nt_image
  cls<k>:shape, cls<k>:logits, cls<k>:labels, cls<k>:result (top1 count, top5 count, top1, top5)
"""
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision  # noqa: F401  (non_max_suppression uses torchvision.ops.nms once it is imported)
from ultralytics.models.yolo.classify import ClassificationValidator
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.nn.modules.head import Detect
from ultralytics.utils.nms import non_max_suppression

N, NC, REG_MAX, IMG_H, IMG_W = 8, 5, 16, 64, 96
STRIDES = (8, 16, 32)
NMS_CASES = [  # conf, iou, multi_label, max_det, max_nms, max_wh
    (0.001, 0.7, True, 300, 30000, 7680),  # DetectionValidator's settings
    (0.001, 0.7, True, 20, 50, 7680),  # the max_nms and max_det cuts
    (0.25, 0.45, False, 300, 30000, 7680),  # best class only
    (0.001, 0.5, True, 300, 30000, 32),  # an offset smaller than the boxes: classes suppress each other
]
BATCHES = (3, 5)  # images per update_metrics call


def record(f, name, values, dtype):
    data = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
    f.write(struct.pack("<I", len(name)) + name.encode() + struct.pack("<IQ", data.itemsize, data.size))
    f.write(data.tobytes())


def make_targets(rng):
    rows = []
    for i in range(N):
        if i == 4:  # an image without ground truth
            continue
        for _ in range(rng.integers(2, 8)):
            w, h = rng.uniform(0.15, 0.6, 2)
            cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
            rows.append((i, rng.choice([0, 1, 2, 4]), cx, cy, w, h))
    return np.array(rows, dtype=np.float32)


def make_raw(rng, targets):
    """Training-mode Detect output (N, 4 reg_max + nc, A) with structure: see the module docstring."""
    centres, strides = [], []
    for s in STRIDES:
        h, w = IMG_H // s, IMG_W // s
        ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
        centres.append(np.stack([xs.ravel(), ys.ravel()], 1) * s)
        strides.append(np.full(h * w, s))
    centres, strides = np.concatenate(centres), np.concatenate(strides)
    a_total = len(centres)
    raw = np.zeros((N, 4 * REG_MAX + NC, a_total), np.float32)
    bins = np.arange(REG_MAX)
    for i in range(N):
        cls_logits = rng.normal(-8.5, 1.5, (NC, a_total))
        dist = rng.uniform(0.5, 6.0, (a_total, 4))
        for t in targets[targets[:, 0] == i]:
            c, cx, cy, w, h = int(t[1]), t[2] * IMG_W, t[3] * IMG_H, t[4] * IMG_W, t[5] * IMG_H
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            inside = (centres[:, 0] > x1) & (centres[:, 0] < x2) & (centres[:, 1] > y1) & (centres[:, 1] < y2)
            edges = np.stack([centres[:, 0] - x1, centres[:, 1] - y1, x2 - centres[:, 0], y2 - centres[:, 1]], 1)
            noisy = edges / strides[:, None] + rng.normal(0, 0.4, edges.shape)
            dist[inside] = np.clip(noisy[inside], 0.1, REG_MAX - 1.1)
            cls_logits[c, inside] += rng.normal(6.0, 2.0, inside.sum())
            other = rng.integers(0, NC - 1)  # sometimes a wrong class too
            cls_logits[other, inside & (rng.uniform(size=a_total) < 0.15)] += 5.0
        cls_logits[4] = -20.0  # class 4 is never predicted
        if i == 5:  # an image without detections
            cls_logits[:] = -20.0
        box_logits = -0.5 * ((bins[None, None, :] - dist[:, :, None]) / 0.8) ** 2 + rng.normal(0, 0.3, (a_total, 4, REG_MAX))
        raw[i, : 4 * REG_MAX] = box_logits.transpose(1, 2, 0).reshape(4 * REG_MAX, a_total)
        raw[i, 4 * REG_MAX :] = cls_logits
    return raw


def detect_inference(raw):
    """Detect's own inference path: DFL, make_anchors, dist2bbox (xywh), x stride, sigmoid."""
    head = Detect(nc=NC, reg_max=REG_MAX, ch=(16, 16, 16))
    head.stride = torch.tensor(STRIDES, dtype=torch.float32)
    feats = [torch.zeros(N, 16, IMG_H // s, IMG_W // s) for s in STRIDES]
    x = torch.from_numpy(raw)
    with torch.no_grad():
        return head._inference({"boxes": x[:, : 4 * REG_MAX], "scores": x[:, 4 * REG_MAX :], "feats": feats})


def detection_validator(save_dir, nc):
    """A DetectionValidator set up as its training-time validation is, without a model or a dataloader."""
    v = DetectionValidator(save_dir=Path(save_dir), args=dict(plots=False, conf=0.001))
    v.device = torch.device("cpu")
    v.names = {c: f"class{c}" for c in range(nc)}
    v.nc, v.seen, v.jdict, v.end2end = nc, 0, [], False
    v.is_custom_json, v.build_gdict = False, False
    v.metrics.names = v.names
    v.metrics.clear_stats()
    v.metrics.clear_image_metrics()
    return v


def validation_batch(targets, first, n, img_h, img_w):
    """Images first .. first + n - 1 as a validation batch: their targets (image, class, cx, cy, w, h)."""
    sel = (targets[:, 0] >= first) & (targets[:, 0] < first + n)
    t = torch.from_numpy(targets[sel])
    return {
        "img": torch.zeros(n, 3, img_h, img_w),
        "batch_idx": t[:, 0] - first,
        "cls": t[:, 1:2],
        "bboxes": t[:, 2:6],
        "ori_shape": [(img_h, img_w)] * n,
        "ratio_pad": [((1.0, 1.0), (0.0, 0.0))] * n,
        "im_file": [f"im{first + k}.jpg" for k in range(n)],
    }


def detection_validation(f, pred, targets, save_dir):
    """Runs DetectionValidator's postprocess, update_metrics and get_stats batch by batch."""
    v = detection_validator(save_dir, NC)
    tps, first = [], 0
    for n in BATCHES:
        batch = validation_batch(targets, first, n, IMG_H, IMG_W)
        preds = v.postprocess(pred[first : first + n])
        for si, p in enumerate(preds):
            tps.append(v._process_batch(p, v._prepare_batch(si, batch))["tp"])
        v.update_metrics(preds, batch)
        first += n
    stats = v.get_stats()
    m = v.metrics
    tp = np.concatenate(tps)
    record(f, "match:tp", (tp * (1 << np.arange(tp.shape[1]))).sum(1), np.float64)
    record(f, "val:batches", BATCHES, np.float64)
    summary = [v.seen, m.nt_per_class.sum(), *m.mean_results(), stats["fitness"]]
    record(f, "val:summary", summary, np.float64)
    record(f, "val:classes", m.ap_class_index, np.float64)
    record(f, "val:p", m.box.p, np.float64)
    record(f, "val:r", m.box.r, np.float64)
    record(f, "val:ap", m.box.all_ap, np.float64)
    record(f, "val:nt_class", m.nt_per_class, np.float64)
    record(f, "val:nt_image", m.nt_per_image, np.float64)
    print("detection:", dict(zip(["seen", "instances", "P", "R", "mAP50", "mAP50-95", "fitness"], summary)))
    print("  classes", m.ap_class_index, "ap50", m.box.ap50)


def classification(f, k, n, nc, rng, save_dir):
    logits = rng.normal(0, 2, (n, nc)).astype(np.float32)
    labels = rng.integers(0, nc, n)
    logits[np.arange(n), labels] += 2.0  # a model that has learnt something
    v = ClassificationValidator(save_dir=Path(save_dir), args=dict(plots=False))
    v.names = {c: str(c) for c in range(nc)}
    v.pred, v.targets = [], []
    half = n // 2  # two batches
    for lo, hi in ((0, half), (half, n)):
        probs = torch.from_numpy(logits[lo:hi]).softmax(1)  # Classify's eval output
        v.update_metrics(probs, {"cls": torch.from_numpy(labels[lo:hi])})
    stats = v.get_stats()
    pred, target = torch.cat(v.pred), torch.cat(v.targets)
    correct = target[:, None] == pred
    result = [correct[:, 0].sum().item(), correct.any(1).sum().item(), stats["metrics/accuracy_top1"], stats["metrics/accuracy_top5"]]
    record(f, f"cls{k}:shape", [n, nc], np.float64)
    record(f, f"cls{k}:logits", logits, np.float32)
    record(f, f"cls{k}:labels", labels, np.float64)
    record(f, f"cls{k}:result", result, np.float64)
    print(f"classification nc={nc}: top1 {result[0]}/{n}, top5 {result[1]}/{n}")


def main():
    rng = np.random.default_rng(2024)
    targets = make_targets(rng)
    raw = make_raw(rng, targets)
    pred = detect_inference(raw)
    for i in range(N):  # no ties among candidate scores, so every sort order is defined
        s = pred[i, 4:][pred[i, 4:] > 0.001]
        assert len(torch.unique(s)) == len(s), f"score ties in image {i}: change the seed"
    out = Path(__file__).parent / "metrics.bin"
    with open(out, "wb") as f, tempfile.TemporaryDirectory() as save_dir:
        levels = [(IMG_H // s, IMG_W // s, s) for s in STRIDES]
        record(f, "det:levels", levels, np.float64)
        record(f, "det:shape", [N, NC, REG_MAX, IMG_H, IMG_W], np.float64)
        record(f, "det:raw", raw, np.float32)
        record(f, "det:pred", pred.numpy(), np.float32)
        record(f, "det:targets", targets, np.float32)
        for k, (conf, iou, multi_label, max_det, max_nms, max_wh) in enumerate(NMS_CASES):
            out_k = non_max_suppression(
                pred, conf, iou, multi_label=multi_label, max_det=max_det, max_nms=max_nms, max_wh=max_wh
            )
            record(f, f"nms{k}:config", [conf, iou, multi_label, max_det, max_nms, max_wh], np.float64)
            record(f, f"nms{k}:count", [len(o) for o in out_k], np.float64)
            record(f, f"nms{k}:det", torch.cat(out_k).numpy(), np.float32)
            print(f"nms case {k}: kept per image {[len(o) for o in out_k]}")
        detection_validation(f, pred, targets, save_dir)
        classification(f, 0, 40, 3, rng, save_dir)  # nc < 5: "top-5" is top-3
        classification(f, 1, 60, 12, rng, save_dir)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
