#!/usr/bin/env python3
"""Writes the reference that test_optimizer compares yolopipe's optimizer, schedule and EMA with,
computed by Ultralytics' own trainer code and PyTorch's optimizers.

Not run by the test suite (it needs PyTorch, Ultralytics and safetensors). From the repository root:

    python3 tests/reference/make_optimizer_reference.py

Outputs (in tests/reference/):
  optimizer_groups.tsv
      model, scale, parameter name, Ultralytics' group (weight | bn | bias) as
      BaseTrainer.build_optimizer assigns it, requires_grad (0 for frozen tensors), for the
      reference model YAMLs in experiments/models/.
  optimizer_reference.safetensors
      train.*   a small model (Conv, Conv, Linear named as in Ultralytics) trained for 3 epochs of 5
                iterations with batch 24 (accumulate 3, ramped during an 8-iteration warm-up) by
                Ultralytics' loop: the warm-up block copied from BaseTrainer._do_train, the real
                build_optimizer / _setup_scheduler / _get_warmup_iterations, clip_grad_norm_(10),
                optimizer.step, ModelEMA.update (started at updates = 1000 so that its decay is
                far from 0). Gradients and batch-norm running statistics are given per iteration.
                Once with SGD (Nesterov) and once with AdamW: final parameters, optimizer state,
                EMA, gradient norms, and the lr/momentum/accumulate of every iteration.
      sched.*   lr per group, momentum and accumulate at sample iterations of several runs
                (linear and cosine, short and absent warm-up, optimizer=auto), from the same loop.
      auto.*    what optimizer=auto picks for (images, batch, nbs, epochs, nc).
      accum.*   accumulate and the scaled weight decay for (nbs, batch).
Group order everywhere is yolopipe's: 0 weight, 1 bn, 2 bias (Ultralytics' pg0, pg1, pg2).
"""
import contextlib
import copy
import io
import logging
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import ultralytics
import yaml
from safetensors.numpy import save_file
from torch import nn
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.nn.modules import Conv
from ultralytics.nn.tasks import ClassificationModel, DetectionModel
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import ModelEMA

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
GROUPS = {"weight": 0, "bn": 1, "bias": 2}
KINDS = {"SGD": 0, "MuSGD": 0, "AdamW": 1}  # yolopipe stands SGD in for MuSGD (see framework/train/optim.h)
DEFAULTS = dict(lr0=0.01, lrf=0.01, momentum=0.937, weight_decay=0.0005, warmup_epochs=3.0, warmup_momentum=0.8,
                warmup_bias_lr=0.1, cos_lr=False, nbs=64)


class Tiny(nn.Module):
    """Parameter names as in an Ultralytics model: model.0.conv.weight, model.0.bn.weight, ..."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(Conv(3, 4, 3), Conv(4, 8, 3, 2), nn.Linear(8, 3))


def fake_trainer(epochs, nc=10, **overrides):
    """The attributes of BaseTrainer that build_optimizer, _setup_scheduler and
    _get_warmup_iterations read."""
    return SimpleNamespace(args=SimpleNamespace(**{**DEFAULTS, **overrides}), epochs=epochs, data={"nc": nc})


def group_index(group):
    return GROUPS[group["param_group"]]


def build(trainer, model, name, batch, nb, n_images=None):
    """_build_train_pipeline's optimizer part, then _setup_scheduler; returns the nominal accumulate."""
    args = trainer.args
    accumulate = max(round(args.nbs / batch), 1)
    weight_decay = args.weight_decay * batch * accumulate / args.nbs
    accumulate = min(accumulate, nb * trainer.epochs)
    iterations = math.ceil((n_images or nb * batch) / max(batch, args.nbs)) * trainer.epochs
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.optimizer = BaseTrainer.build_optimizer(trainer, model, name=name, lr=args.lr0, momentum=args.momentum,
                                                        decay=weight_decay, iterations=iterations)
    BaseTrainer._setup_scheduler(trainer)
    trainer.scheduler.last_epoch = -1  # _setup_train: start_epoch - 1
    return accumulate, weight_decay


def run_loop(trainer, nb, acc0, on_iteration):
    """BaseTrainer._do_train's control flow for lr, momentum, accumulate and optimizer steps.
    on_iteration(ni, epoch, step) is called after the warm-up block; step says whether the
    optimizer steps at this iteration (the caller does the step)."""
    nw = BaseTrainer._get_warmup_iterations(trainer, nb)
    trainer.accumulate = acc0
    last_opt_step = -1
    for epoch in range(trainer.epochs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as _do_train: the scheduler steps before the optimizer
            trainer.scheduler.step()
        for i in range(nb):
            ni = i + nb * epoch
            # ---- copied from ultralytics 8.4 BaseTrainer._do_train ----
            if nw and ni <= nw:  # ni == nw lands accumulate, lr and momentum exactly on their targets
                xi = [0, nw]  # x interp
                trainer.accumulate = max(1, int(np.interp(ni, xi, [1, acc0]).round()))
                for x in trainer.optimizer.param_groups:
                    # Bias lr falls from 0.1 to lr0, all other lrs rise from 0.0 to lr0
                    x["lr"] = float(
                        np.interp(
                            ni,
                            xi,
                            [
                                trainer.args.warmup_bias_lr if x.get("param_group") == "bias" else 0.0,
                                x["initial_lr"] * trainer.lf(epoch),
                            ],
                        )
                    )
                    if "momentum" in x:
                        x["momentum"] = float(np.interp(ni, xi, [trainer.args.warmup_momentum, trainer.args.momentum]))
            # ---- end of the copy ----
            step = ni - last_opt_step >= trainer.accumulate
            on_iteration(ni, epoch, step)
            if step:
                last_opt_step = ni
    return nw


def hyper_of(trainer):
    """(lr per yolopipe group, momentum or beta1) of the optimizer's current (non-empty) groups;
    MuSGD's muon group holds decayed weights."""
    lr = [0.0] * 3
    groups = [g for g in trainer.optimizer.param_groups if g["params"]]
    for g in groups:
        lr[GROUPS.get(g["param_group"], 0)] = g["lr"]
    g0 = groups[0]
    return lr, g0["momentum"] if "momentum" in g0 else g0["betas"][0]


# ---- parameter groups of the reference models ----------------------------------------------------

def write_groups():
    lines = [f"# generated by make_optimizer_reference.py with ultralytics {ultralytics.__version__}, "
             f"torch {torch.__version__}\n"]
    for name, cls in [("yolov8", DetectionModel), ("yolov5", DetectionModel), ("yolov8-cls", ClassificationModel)]:
        cfg = yaml.safe_load(open(ROOT / "experiments" / "models" / f"{name}.yaml"))
        cfg["scale"] = "n"
        with contextlib.redirect_stdout(io.StringIO()):
            model = cls(copy.deepcopy(cfg), verbose=False)
        trainer = fake_trainer(epochs=10)
        build(trainer, model, "SGD", batch=16, nb=10)
        group_of = {id(p): g["param_group"] for g in trainer.optimizer.param_groups for p in g["params"]}
        for pname, p in model.named_parameters():
            lines.append(f"{name}\tn\t{pname}\t{group_of[id(p)]}\t{int(p.requires_grad)}\n")
    (HERE / "optimizer_groups.tsv").write_text("".join(lines))


# ---- training runs ------------------------------------------------------------------------------

TRAIN = dict(epochs=3, nb=5, batch=24, warmup_epochs=1.5, weight_decay=0.05, ema_updates0=1000)


def train_inputs():
    """Initial parameters and buffers, and per-iteration gradients and running statistics."""
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            p.uniform_(0.5, 1.5) if pname.endswith("bn.weight") else p.uniform_(-0.5, 0.5)
    n_iters = TRAIN["epochs"] * TRAIN["nb"]
    n_params = sum(p.numel() for p in model.parameters())
    n_buffers = sum(b.numel() for k, b in model.named_buffers() if b.dtype.is_floating_point)
    g = torch.Generator().manual_seed(1)
    # Gradient scales chosen so that clip_grad_norm_(10) clips some steps and not others.
    scales = torch.tensor([1.0, 0.1, 0.2, 0.15, 0.3, 0.1, 1.0, 0.05, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1, 2.0])
    grads = torch.randn(n_iters, n_params, generator=g) * scales[:, None]
    buffers = torch.rand(n_iters, n_buffers, generator=g) + 0.5
    return model, grads, buffers


def unflatten(flat, tensors):
    out, i = [], 0
    for t in tensors:
        out.append(flat[i:i + t.numel()].view_as(t))
        i += t.numel()
    return out


def train(kind, lr0, out):
    model, grads, buffers = train_inputs()
    params = list(model.parameters())
    float_buffers = [b for k, b in model.named_buffers() if b.dtype.is_floating_point]
    if kind == "SGD":
        out["train.init_params"] = torch.cat([p.detach().flatten() for p in params]).numpy()
        out["train.init_buffers"] = torch.cat([b.flatten() for b in float_buffers]).numpy()
        out["train.grads"] = grads.numpy()
        out["train.buffers"] = buffers.numpy()
        out["train.sizes"] = np.array([p.numel() for p in params], dtype=np.int64)
        out["train.buffer_sizes"] = np.array([b.numel() for b in float_buffers], dtype=np.int64)
    trainer = fake_trainer(epochs=TRAIN["epochs"], lr0=lr0, warmup_epochs=TRAIN["warmup_epochs"],
                           weight_decay=TRAIN["weight_decay"])
    acc0, weight_decay = build(trainer, model, kind, batch=TRAIN["batch"], nb=TRAIN["nb"])
    if kind == "SGD":
        out["train.groups"] = np.array([next(group_index(g) for g in trainer.optimizer.param_groups
                                             if any(q is p for q in g["params"])) for p in params], dtype=np.int64)
        out["train.weight_decay"] = np.array(weight_decay)
        out["train.accumulate"] = np.array(acc0, dtype=np.int64)
    ema = ModelEMA(model, updates=TRAIN["ema_updates0"])
    rec = {"lr": [], "momentum": [], "accumulate": [], "stepped": [], "grad_norm": []}

    def on_iteration(ni, epoch, step):
        lr, momentum = hyper_of(trainer)
        rec["lr"].append(lr)
        rec["momentum"].append(momentum)
        rec["accumulate"].append(trainer.accumulate)
        rec["stepped"].append(int(step))
        for p, g in zip(params, unflatten(grads[ni], params)):  # backward adds to the gradients
            p.grad = g.clone() if p.grad is None else p.grad + g
        with torch.no_grad():  # forward updates the running statistics
            for b, v in zip(float_buffers, unflatten(buffers[ni], float_buffers)):
                b.copy_(v)
        norm = -1.0
        if step:  # BaseTrainer.optimizer_step
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()
            ema.update(model)
        rec["grad_norm"].append(norm)

    nw = run_loop(trainer, TRAIN["nb"], acc0, on_iteration)
    norms = [n for n in rec["grad_norm"] if n >= 0]
    assert min(norms) < 10 < max(norms), f"clipping should happen at some steps only: {norms}"
    prefix = f"train.{kind.lower()}."
    out[prefix + "nw"] = np.array(nw, dtype=np.int64)
    out[prefix + "lr"] = np.array(rec["lr"], dtype=np.float64)
    out[prefix + "momentum"] = np.array(rec["momentum"], dtype=np.float64)
    out[prefix + "accumulate"] = np.array(rec["accumulate"], dtype=np.int64)
    out[prefix + "stepped"] = np.array(rec["stepped"], dtype=np.int64)
    out[prefix + "grad_norm"] = np.array(rec["grad_norm"], dtype=np.float64)
    out[prefix + "params"] = torch.cat([p.detach().flatten() for p in params]).numpy()
    state = trainer.optimizer.state
    for key in ["momentum_buffer"] if kind == "SGD" else ["exp_avg", "exp_avg_sq"]:
        out[prefix + key] = torch.cat([state[p][key].flatten() for p in params]).numpy()
    if kind == "AdamW":
        out[prefix + "step"] = np.array(int(state[params[0]]["step"]), dtype=np.int64)
    ema_sd = ema.ema.state_dict()
    names = [k for k, _ in model.named_parameters()] + [k for k, b in model.named_buffers() if b.dtype.is_floating_point]
    out[prefix + "ema"] = torch.cat([ema_sd[k].flatten() for k in names]).numpy()
    out[prefix + "ema_updates"] = np.array(ema.updates, dtype=np.int64)
    return names


# ---- schedules, auto, accumulate ------------------------------------------------------------------

SCHED_CASES = [
    # name, epochs, nb, batch, overrides
    ("SGD", 10, 50, 16, dict()),
    ("SGD", 10, 50, 16, dict(cos_lr=True, lrf=0.05)),
    ("AdamW", 1, 20, 16, dict(lr0=0.002)),  # a single epoch: no warm-up
    ("SGD", 4, 5, 128, dict(warmup_epochs=0.5)),  # nw = round(2.5) = 2, accumulate 1
    ("auto", 3, 7, 16, dict()),  # warm-up capped at epochs - 1
    ("SGD", 5, 10, 40, dict(warmup_epochs=0.0)),
    ("SGD", 1, 2, 24, dict()),  # accumulate capped at nb * epochs
    ("AdamW", 6, 9, 8, dict(cos_lr=True, warmup_epochs=1.3, lr0=0.001, momentum=0.9)),
]


def schedules(out):
    cfg_f, cfg_i, rows = [], [], []
    for case, (name, epochs, nb, batch, overrides) in enumerate(SCHED_CASES):
        trainer = fake_trainer(epochs=epochs, **overrides)
        # optimizer=auto with more than 10 000 iterations (MuSGD, which yolopipe replaces by SGD)
        acc0, _ = build(trainer, Tiny(), name, batch=batch, nb=nb, n_images=10**6 if name == "auto" else None)
        kind = KINDS[type(trainer.optimizer).__name__]
        _, initial_momentum = hyper_of(trainer)
        a = trainer.args
        cfg_f.append([a.lr0, a.lrf, a.momentum, a.warmup_momentum, a.warmup_bias_lr, initial_momentum,
                      a.warmup_epochs, float(a.cos_lr)])
        total = epochs * nb
        nw = BaseTrainer._get_warmup_iterations(trainer, nb)
        keep = set(range(4)) | set(range(nw - 2, nw + 3)) | set(range(0, total, 17)) | {total - 1}
        keep |= {e * nb + d for e in range(epochs) for d in (-1, 0)}

        def on_iteration(ni, epoch, step):
            if ni in keep:
                lr, momentum = hyper_of(trainer)
                rows.append((case, ni, epoch, lr, momentum, trainer.accumulate))

        nw = run_loop(trainer, nb, acc0, on_iteration)
        cfg_i.append([kind, epochs, nb, batch, a.nbs, nw, acc0])
    out["sched.config_f64"] = np.array(cfg_f, dtype=np.float64)
    out["sched.config_i64"] = np.array(cfg_i, dtype=np.int64)
    out["sched.points"] = np.array([r[:3] for r in rows], dtype=np.int64)
    out["sched.lr"] = np.array([r[3] for r in rows], dtype=np.float64)
    out["sched.momentum"] = np.array([r[4] for r in rows], dtype=np.float64)
    out["sched.accumulate"] = np.array([r[5] for r in rows], dtype=np.int64)


def auto(out):
    inputs, kinds, values = [], [], []
    cases = [(n, b, 64, e, nc) for n, b, e in [(1000, 16, 100), (128, 16, 3), (118287, 16, 100), (640000, 64, 1),
                                               (639999, 64, 1), (640001, 64, 1), (50000, 256, 60), (12800, 8, 50)]
             for nc in (1, 10, 80)]
    cases += [(500, 16, 10, 64, nc) for nc in range(1, 201)]  # AdamW's lr for every nc up to 200
    for n, batch, nbs, epochs, nc in cases:
        trainer = fake_trainer(epochs=epochs, nc=nc, nbs=nbs, optimizer="auto")
        build(trainer, Tiny(), "auto", batch=batch, nb=math.ceil(n / batch), n_images=n)
        _, momentum = hyper_of(trainer)
        inputs.append([n, batch, nbs, epochs, nc])
        kinds.append(KINDS[type(trainer.optimizer).__name__])
        values.append([trainer.args.lr0, momentum, trainer.args.warmup_bias_lr])
    out["auto.inputs"] = np.array(inputs, dtype=np.int64)
    out["auto.kind"] = np.array(kinds, dtype=np.int64)
    out["auto.values"] = np.array(values, dtype=np.float64)


def accum(out):
    inputs, acc, decay = [], [], []
    for nbs in (64, 100):
        for batch in (1, 2, 3, 7, 16, 24, 25, 26, 32, 40, 43, 64, 96, 127, 128, 129, 200, 256, 1000):
            a = max(round(nbs / batch), 1)  # _build_train_pipeline
            inputs.append([nbs, batch])
            acc.append(a)
            decay.append(0.0005 * batch * a / nbs)
    out["accum.inputs"] = np.array(inputs, dtype=np.int64)
    out["accum.accumulate"] = np.array(acc, dtype=np.int64)
    out["accum.decay"] = np.array(decay, dtype=np.float64)


def main():
    LOGGER.setLevel(logging.WARNING)  # build_optimizer's messages
    write_groups()
    out = {}
    names = train("SGD", 0.01, out)
    train("AdamW", 0.002, out)
    schedules(out)
    auto(out)
    accum(out)
    metadata = {"names": ",".join(names), "generator": f"ultralytics {ultralytics.__version__}, torch {torch.__version__}"}
    save_file(out, str(HERE / "optimizer_reference.safetensors"), metadata=metadata)


if __name__ == "__main__":
    main()
