#!/usr/bin/env python3
"""Ultralytics' own model.predict on weights that `yolopipe export` wrote: the independent reference
for `yolopipe predict` (tests/cli/check-predict-reference.sh compares the two).

Builds Ultralytics' DetectionModel from the model YAML, scale and nc that the export records in its
metadata, loads the weights with strict=True (every name and shape), and runs
YOLO.predict(imgsz, conf, iou, device="cpu") on each SOURCE image. Prints one JSON object in the
layout of yolopipe's predictions.json: {"images": [{"path", "width", "height", "detections":
[{"class", "name", "confidence", "box": [x1, y1, x2, y2]}]}]}.

    python3 tests/reference/ultralytics_predict.py m.safetensors bus.jpg ... --imgsz 640 --conf 0.25 --iou 0.7
"""
import argparse
import contextlib
import io
import json
import os
import tempfile

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from ultralytics import YOLO


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", help="safetensors file from `yolopipe export`")
    ap.add_argument("sources", nargs="+", help="image files")
    ap.add_argument("--imgsz", type=int, required=True)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.7)
    args = ap.parse_args()

    with safe_open(args.weights, "pt") as f:
        meta = f.metadata()
    cfg = yaml.safe_load(meta["yolopipe.model_yaml"])
    cfg["scale"] = meta["yolopipe.scale"]
    cfg["nc"] = int(meta["yolopipe.nc"])
    names = json.loads(meta["yolopipe.names"])
    with tempfile.TemporaryDirectory() as tmp:
        # YOLO() takes a file and guesses the scale from its name (yolov8n.yaml), whatever the YAML says,
        # after reading the unscaled name (yolov8.yaml) when that exists: write both.
        path = os.path.join(tmp, f"yolov8{cfg['scale']}.yaml")
        for name in (path, os.path.join(tmp, "yolov8.yaml")):
            with open(name, "w") as out:
                yaml.safe_dump(cfg, out)
        with contextlib.redirect_stdout(io.StringIO()):
            yolo = YOLO(path, task="detect")
    state = load_file(args.weights)
    yolo.model.load_state_dict(state, strict=True)  # raises on any missing, unexpected or reshaped tensor
    yolo.model.names = dict(enumerate(names))
    yolo.model.float().eval()
    images = []
    with torch.no_grad():
        for source in args.sources:
            (r,) = yolo.predict(source, imgsz=args.imgsz, conf=args.conf, iou=args.iou, device="cpu", verbose=False,
                                save=False)
            h, w = r.orig_shape
            dets = [{"class": int(c), "name": names[int(c)], "confidence": float(s), "box": [float(v) for v in b]}
                    for b, s, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist())]
            images.append({"path": source, "width": w, "height": h, "detections": dets})
    json.dump({"images": images}, __import__("sys").stdout)


if __name__ == "__main__":
    main()
