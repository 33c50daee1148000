#!/usr/bin/env python3
"""Scores weights that yolopipe exported with Ultralytics' own model and validator: the independent
check that an export is an Ultralytics model and that yolopipe's mAP is Ultralytics' mAP.

Not run by the test suite (it needs PyTorch and Ultralytics); run it by hand with
`pip install ultralytics` (8.4.190 is what README's figures were made with):

    yolopipe export runs/default --out m.safetensors
    python3 tests/reference/ultralytics_val.py m.safetensors yolo11n.yaml data/shapes/data.yaml --imgsz 160

MODEL is an Ultralytics model name with its scale (`yolo11n.yaml`, `yolov8n.yaml`): Ultralytics builds
it from its own copy of the YAML, with nc from the dataset, and the weights must load with
strict=True (every name and shape). Prints the state dict's size, then mAP@0.5 and mAP@0.5:0.95 of
Ultralytics' DetectionValidator on the dataset's val split.
"""
import argparse
import contextlib
import io
import os
import tempfile

import torch
import yaml
from safetensors.torch import load_file
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", help="safetensors file from `yolopipe export`")
    ap.add_argument("model", help="Ultralytics model name with scale, e.g. yolo11n.yaml")
    ap.add_argument("data", help="dataset YAML (the one yolopipe trained on)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()

    data = yaml.safe_load(open(args.data))
    # yolopipe resolves a relative `path` from the YAML's folder, Ultralytics from its datasets
    # directory: hand Ultralytics an absolute one.
    data["path"] = os.path.join(os.path.dirname(os.path.abspath(args.data)), data.get("path") or ".")
    data_file = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump(data, data_file)
    data_file.close()
    names = data["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): v for k, v in names.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        model = DetectionModel(args.model, nc=len(names), verbose=False)
    state = load_file(args.weights)
    model.load_state_dict(state, strict=True)  # raises on any missing, unexpected or reshaped tensor
    print(f"{args.weights}: {len(state)} tensors loaded into DetectionModel('{args.model}', nc={len(names)}) "
          f"with strict=True")
    model.names = names
    yolo = YOLO(args.model, task="detect")
    yolo.model = model.float().eval()
    with torch.no_grad():
        metrics = yolo.val(data=data_file.name, imgsz=args.imgsz, batch=args.batch, device="cpu", plots=False,
                           verbose=False)
    os.unlink(data_file.name)
    print(f"Ultralytics validator: mAP@0.5 {metrics.box.map50:.3f}, mAP@0.5:0.95 {metrics.box.map:.3f}")


if __name__ == "__main__":
    main()
