#!/usr/bin/env python3
"""Writes the end-to-end reference that test_forward_reference compares yolopipe with: the tiny
models in tests/reference/models/ run through Ultralytics' own modules in PyTorch (float64), one
training-mode forward and backward of L = sum(output * R).

Not run by the test suite (it needs PyTorch and Ultralytics): run it by hand with
`pip install ultralytics`, from the repository root:

    python3 tests/reference/make_forward_reference.py

Each output file holds records: u32 name length, name, u32 element size (4 or 8), u64 count, data
(little-endian). Inputs and parameters are float32 (exactly what yolopipe loads); results are
float64 computed from those same float32 values:
  input, r                 the batch (N, 3, H, W) and the projection weights (shape of the output)
  param:<name>             every parameter, named as in the state dict
  output                   Detect: boxes and scores concatenated on channels (N, 4 reg_max + nc, A);
                           Classify: logits (N, nc)
  grad:<name>              dL/d parameter
  buffer:<name>            batch-norm running statistics after the forward (momentum 0.03)
  grad:input               dL/d input (written last, so the records before it do not move)
Detect models take 2 x 3 x 32 x 64 images (feature maps of 4x8 and 2x4 at strides 8 and 16: area
attention's 4 areas divide 8 tokens), small enough that input and grad:input stay ~150 KB.
"""
import contextlib
import io
import struct
import sys
from pathlib import Path

import torch
import yaml
from ultralytics.nn.tasks import ClassificationModel, DetectionModel

CASES = [("tiny-detect", DetectionModel, (2, 3, 64, 96)), ("tiny-classify", ClassificationModel, (2, 3, 48, 40)),
         ("tiny-yolo11", DetectionModel, (2, 3, 32, 64)), ("tiny-yolo12", DetectionModel, (2, 3, 32, 64)),
         ("tiny-yolo26", DetectionModel, (2, 3, 32, 64)), ("tiny-v9", DetectionModel, (2, 3, 32, 64)),
         ("tiny-v10", DetectionModel, (2, 3, 32, 64)), ("tiny-misc", DetectionModel, (2, 3, 32, 64)),
         ("tiny-resnet-cls", ClassificationModel, (2, 3, 40, 56))]


def record(f, name, tensor):
    data = tensor.detach().contiguous().cpu()
    raw = data.numpy().tobytes()
    f.write(struct.pack("<I", len(name)) + name.encode() + struct.pack("<IQ", data.element_size(), data.numel()) + raw)


def main(only=()):
    here = Path(__file__).parent
    for name, cls, shape in CASES:
        if only and name not in only:
            continue
        torch.manual_seed(0)
        with contextlib.redirect_stdout(io.StringIO()):
            model = cls(yaml.safe_load(open(here / "models" / f"{name}.yaml")), verbose=False)
        # Batch-norm affine parameters away from their 1/0 defaults, so that they matter.
        for pname, p in model.named_parameters():
            if ".bn." in pname:
                with torch.no_grad():
                    p.uniform_(0.5, 1.5) if pname.endswith("weight") else p.uniform_(-0.2, 0.2)
        x = torch.rand(shape)
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        model = model.double().train()
        xd = x.double().requires_grad_()
        out = model(xd)
        if isinstance(out, dict):  # Detect in training mode: named tensors
            out = torch.cat([out["boxes"], out["scores"]], 1)
        r = torch.rand(out.shape) * 2 - 1
        (out * r.double()).sum().backward()
        with open(here / f"{name}.forward.bin", "wb") as f:
            record(f, "input", x)
            record(f, "r", r)
            for k, v in params.items():
                record(f, "param:" + k, v)
            record(f, "output", out)
            for k, p in model.named_parameters():
                if p.grad is not None:
                    record(f, "grad:" + k, p.grad)
            for k, b in model.named_buffers():
                if k.endswith(("running_mean", "running_var")):
                    record(f, "buffer:" + k, b)
            record(f, "grad:input", xd.grad)


if __name__ == "__main__":
    main(sys.argv[1:])  # case names: only those (default: all)
