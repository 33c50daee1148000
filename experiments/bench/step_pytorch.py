#!/usr/bin/env python3
"""One YOLOv8 training step in PyTorch with Ultralytics' own classes, timed: the baseline that
train_step.sh sets beside yolopipe's step (README.md beside this file).

The step is the one Ultralytics' trainer runs (ultralytics/engine/trainer.py, 8.4.190): forward and
v8DetectionLoss through DetectionModel.loss under autocast, backward of the summed loss, gradient
clipping at norm 10, the optimizer step (AdamW built by Ultralytics' own build_optimizer: fused on
CUDA), zero_grad and the EMA update. The model is channels-last on CUDA. The batch is synthetic and
fixed: B images in [0, 1] and the same random boxes every step, so no data loading is timed.

Prints one line per run and, with --csv, appends one row (header first when the file is new). With
--layers-csv it then profiles a few more steps with PyTorch's autograd profiler and writes each layer's
forward and backward time in the columns of yolopipe's profile.csv (train_step.sh --profiles sets the two
side by side).
"""

import argparse
import collections
import csv
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

# Read when ultralytics is imported: its info logs would bury the result line, and its online check
# (DNS look-ups) has nothing to do on a machine that reaches nothing.
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_OFFLINE", "True")
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import DEFAULT_CFG_DICT, IterableSimpleNamespace
from ultralytics.utils.torch_utils import ModelEMA, init_seeds

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL_YAML = HERE.parent / "models" / "yolov8.yaml"
CSV_FIELDS = ["device", "model", "imgsz", "batch", "framework", "precision", "steps", "median_ms", "images_per_s",
              "peak_allocated_mib", "peak_reserved_mib"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["n", "s", "m", "l", "x"], default="s", help="YOLOv8 scale (default s)")
    p.add_argument("--model-yaml", type=Path, default=DEFAULT_MODEL_YAML,
                   help="Ultralytics-format model YAML (default experiments/models/yolov8.yaml)")
    p.add_argument("--nc", type=int, default=80, help="classes (default 80, as COCO)")
    p.add_argument("--batch", type=int, default=16, help="images per step (default 16)")
    p.add_argument("--imgsz", type=int, default=640, help="input side, a multiple of 32 (default 640)")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="bf16",
                   help="fp32: IEEE fp32, TF32 off; tf32: fp32 with TF32 convolutions and matmuls; "
                        "bf16: autocast to bfloat16 (default)")
    p.add_argument("--boxes", type=int, default=6,
                   help="ground-truth boxes per image (default 6: the most yolopipe synth draws, so the "
                        "loss pads to the same count as yolopipe's batches)")
    p.add_argument("--steps", type=int, default=50, help="timed steps (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--deterministic", action="store_true",
                   help="Ultralytics' default deterministic=True (deterministic cuDNN algorithms, no autotuning); "
                        "without it cuDNN autotunes (cudnn.benchmark), the fastest eager PyTorch")
    p.add_argument("--seed", type=int, default=0, help="seeds weights and the synthetic batch (default 0)")
    p.add_argument("--csv", type=Path, help="append the result to this CSV file")
    p.add_argument("--layers-csv", type=Path,
                   help="profile --profile-steps more steps and write per-layer forward and backward seconds here")
    p.add_argument("--profile-steps", type=int, default=3, help="steps the per-layer profile averages (default 3)")
    a = p.parse_args(argv)
    if a.imgsz % 32 or a.imgsz < 32:
        p.error(f"--imgsz must be a positive multiple of 32, found {a.imgsz}")
    for name in ("batch", "steps", "boxes", "nc", "profile_steps"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1, found {getattr(a, name)}")
    if a.warmup < 0:
        p.error(f"--warmup must be at least 0, found {a.warmup}")
    return a


def set_fp32_mode(tf32):
    """TF32 for fp32 convolutions and matmuls on or off (PyTorch >= 2.9 has one switch; older ones two)."""
    if hasattr(torch.backends, "fp32_precision"):
        torch.backends.fp32_precision = "tf32" if tf32 else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def build_model(a, device):
    """DetectionModel from the YAML at scale a.model with a.nc classes, and the hyperparameters its loss reads."""
    cfg = yaml.safe_load(a.model_yaml.read_text())
    cfg["scale"] = a.model
    cfg["yaml_file"] = str(a.model_yaml)
    model = DetectionModel(cfg, nc=a.nc, verbose=False)  # verbose would count FLOPs with thop
    model.args = IterableSimpleNamespace(**DEFAULT_CFG_DICT)  # box 7.5, cls 0.5, dfl 1.5, as the trainer sets
    model.nc = a.nc
    model = model.to(device).train()
    if device.type == "cuda":  # the trainer's default on CUDA (channels_last=None)
        model = model.to(memory_format=torch.channels_last)
    return model


def synthetic_batch(a, device):
    """B images in [0, 1] and a.boxes random boxes per image, in the layout Ultralytics' collate gives."""
    g = torch.Generator().manual_seed(a.seed)
    img = torch.rand(a.batch, 3, a.imgsz, a.imgsz, generator=g)
    n = a.batch * a.boxes
    wh = 0.05 + 0.25 * torch.rand(n, 2, generator=g)  # normalized width, height
    xy = wh / 2 + (1 - wh) * torch.rand(n, 2, generator=g)  # centres that keep the box inside the image
    batch = {
        "img": img.to(device),  # NCHW, as the trainer's batch; the channels-last weights make the outputs NHWC
        "batch_idx": torch.arange(a.batch).repeat_interleave(a.boxes).float().to(device),
        "cls": torch.randint(0, a.nc, (n, 1), generator=g).float().to(device),
        "bboxes": torch.cat([xy, wh], 1).to(device),  # normalized xywh
    }
    return batch


def layer_times(model, step, steps):
    """Per top-level layer (model.model[i]) forward and backward seconds per step, from PyTorch's autograd
    profiler: each layer's forward runs inside record_function("layer:i"), and a backward node is charged
    to the layer whose forward op recorded it (the profiler gives both the same sequence number). The loss,
    the optimizer and the EMA are no layer's. Also returns the profiled step's mean seconds: the profiler
    slows the step, so its per-layer times are above an unprofiled step's."""
    scopes = {}

    def enter(i):
        def hook(module, inputs):
            scopes[i] = torch.autograd.profiler.record_function(f"layer:{i}")
            scopes[i].__enter__()
        return hook

    def leave(i):
        def hook(module, inputs, output):
            scopes.pop(i).__exit__(None, None, None)
        return hook

    handles = []
    for i, m in enumerate(model.model):
        handles += [m.register_forward_pre_hook(enter(i)), m.register_forward_hook(leave(i))]
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    step_s = (time.perf_counter() - t0) / steps
    for h in handles:
        h.remove()

    def layer_of_scope(event):  # the index of the innermost "layer:i" scope around event, else None
        while event is not None and not event.name.startswith("layer:"):
            event = event.cpu_parent
        return None if event is None else int(event.name[6:])

    events = prof.events()
    fwd_us, bwd_us, layer_of_seq = collections.Counter(), collections.Counter(), {}
    for e in events:
        if e.name.startswith("layer:"):
            fwd_us[int(e.name[6:])] += e.cpu_time_total
        elif e.sequence_nr >= 0 and not e.name.startswith("autograd::"):
            i = layer_of_scope(e)
            if i is not None:
                layer_of_seq[e.sequence_nr] = i
    for e in events:
        if e.name.startswith("autograd::engine::evaluate_function") and e.sequence_nr in layer_of_seq:
            bwd_us[layer_of_seq[e.sequence_nr]] += e.cpu_time_total
    return [(fwd_us[i] / 1e6 / steps, bwd_us[i] / 1e6 / steps) for i in range(len(model.model))], step_s


def write_layers_csv(path, a, times, step_s):
    """The columns of yolopipe's profile.csv (layer, module, fwd_s, bwd_s, batch, imgsz), then the profiled step."""
    cfg = yaml.safe_load(a.model_yaml.read_text())
    rows = cfg["backbone"] + cfg["head"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["layer", "module", "fwd_s", "bwd_s", "batch", "imgsz", "profiled_step_s"])
        for i, (fwd, bwd) in enumerate(times):
            w.writerow([i, rows[i][2], f"{fwd:.9f}", f"{bwd:.9f}", a.batch, a.imgsz, f"{step_s:.6f}"])


def main(argv):
    a = parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("step_pytorch.py: --device cuda, but PyTorch sees no CUDA device (use --device cpu)")
    init_seeds(a.seed, deterministic=a.deterministic)
    torch.backends.cudnn.benchmark = not a.deterministic
    set_fp32_mode(a.precision == "tf32")

    model = build_model(a, device)
    # Ultralytics' own optimizer construction (3 parameter groups, fused AdamW on CUDA); with a name other
    # than 'auto' it reads nothing from the trainer. Learning rates do not change the step's cost.
    optimizer = BaseTrainer.build_optimizer(SimpleNamespace(), model, name="AdamW", lr=0.001, momentum=0.937,
                                            decay=5e-4)
    ema = ModelEMA(model)
    batch = synthetic_batch(a, device)
    # Ultralytics' GradScaler is disabled for bf16 and fp32 (it only scales fp16), so the step omits it.
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16")

    def step():
        with autocast:
            loss, _ = model(batch)  # DetectionModel.loss: forward, then v8DetectionLoss (sum x batch size)
        loss.sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        optimizer.step()
        optimizer.zero_grad()
        ema.update(model)

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(a.warmup):
        step()
    times_ms = []
    for _ in range(a.steps):
        # Each step ends synchronized, as in Ultralytics' trainer (its progress bar reads the losses) and
        # in yolopipe's (it reduces the losses every batch), so steps never overlap.
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times_ms.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times_ms.append(1e3 * (time.perf_counter() - t0))

    median_ms = statistics.median(times_ms)
    mib = 1 << 20
    row = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "model": f"yolov8{a.model}",
        "imgsz": a.imgsz,
        "batch": a.batch,
        "framework": "pytorch",
        "precision": a.precision,
        "steps": a.steps,
        "median_ms": f"{median_ms:.2f}",
        "images_per_s": f"{a.batch / median_ms * 1e3:.1f}",
        "peak_allocated_mib": f"{torch.cuda.max_memory_allocated(device) / mib:.0f}" if cuda else "",
        "peak_reserved_mib": f"{torch.cuda.max_memory_reserved(device) / mib:.0f}" if cuda else "",
    }
    print(f"pytorch {torch.__version__} {row['model']} {a.imgsz} batch {a.batch} {a.precision} on {row['device']}: "
          f"median {row['median_ms']} ms over {a.steps} steps ({row['images_per_s']} images/s), "
          f"min {min(times_ms):.2f} ms, max {max(times_ms):.2f} ms; peak allocated "
          f"{row['peak_allocated_mib'] or '-'} MiB, reserved {row['peak_reserved_mib'] or '-'} MiB")
    if a.layers_csv:
        times, step_s = layer_times(model, step, a.profile_steps)
        write_layers_csv(a.layers_csv, a, times, step_s)
        print(f"per-layer times of {a.profile_steps} profiled steps ({1e3 * step_s:.1f} ms each under the profiler) "
              f"written to {a.layers_csv}")
    if a.csv:
        new = not a.csv.exists() or a.csv.stat().st_size == 0
        a.csv.parent.mkdir(parents=True, exist_ok=True)
        with a.csv.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator="\n")
            if new:
                w.writeheader()
            w.writerow(row)


if __name__ == "__main__":
    main(sys.argv[1:])
