#!/usr/bin/env python3
"""Writes tests/reference/loss.bin, the reference that test_loss compares yolopipe's losses with:
Ultralytics' own v8DetectionLoss and v8ClassificationLoss in float64 on float32 inputs.

Not run by the test suite (it needs PyTorch and Ultralytics): run it by hand, from the repository
root, with the Python that has them:

    python3 tests/reference/make_loss_reference.py

Records as in make_forward_reference.py: u32 name length, name, u32 element size (4 or 8), u64
count, data (little-endian). Per detection case <c>:
  <c>/config    float64 [batch, nc, reg_max, n_levels, then h, w, stride per level]
  <c>/targets   float32 (n, 6): image, class, cx, cy, w, h (normalised)
  <c>/pred      float32 (batch, 4 reg_max + nc, A): Detect's training output
  <c>/loss      float64 [total as back-propagated, box, cls, dfl (loss items), foreground anchors]
  <c>/grad      float32 d total / d pred (float64 rounded: 6e-8 relative, far inside the tests'
                tolerance, and half the file), same layout as pred
and for the classification case: cls/config [batch, nc], cls/logits float32 (batch, nc),
cls/labels float64, cls/loss float64 [loss], cls/grad float64 (batch, nc).

torch.topk leaves the order of equal values unspecified; yolopipe takes the lower anchor index
first. Each case is computed with Ultralytics' assigner as it is and with its top-k made stable
(lowest index first); the script fails unless loss and gradient agree, so the fixture does not
depend on the tie order. The foreground count is the stable variant's (it can differ: anchors
chosen on a tie carry a target score of 0 and change neither loss nor gradient).
"""
import struct
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from ultralytics.utils.loss import v8ClassificationLoss, v8DetectionLoss

torch.set_default_dtype(torch.float64)


def record(f, name, tensor):
    data = tensor.detach().contiguous().cpu()
    f.write(struct.pack("<I", len(name)) + name.encode() + struct.pack("<IQ", data.element_size(), data.numel()))
    f.write(data.numpy().tobytes())


class StandIn(torch.nn.Module):
    """What v8DetectionLoss reads from a model: a parameter (for the device), args and model[-1]."""

    def __init__(self, nc, reg_max, strides):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.args = types.SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
        self.model = [types.SimpleNamespace(stride=torch.tensor(strides, dtype=torch.float64), nc=nc, reg_max=reg_max)]


def stable_topk(self, metrics, topk_mask=None):
    """select_topk_candidates with ties broken towards the lower anchor index."""
    idx = torch.sort(metrics, dim=-1, descending=True, stable=True).indices[..., : self.topk]
    idx = idx.masked_fill(~topk_mask, 0)
    count = torch.zeros(metrics.shape, dtype=torch.int8)
    count.scatter_add_(-1, idx, torch.ones_like(idx, dtype=torch.int8))
    return count.masked_fill_(count > 1, 0)


def detection_loss(levels, strides, nc, reg_max, pred, targets, stable):
    crit = v8DetectionLoss(StandIn(nc, reg_max, strides))
    assigner = crit.assigner
    if stable:
        assigner.select_topk_candidates = types.MethodType(stable_topk, assigner)
    seen = {"conflicts": 0}
    highest = assigner.select_highest_overlaps

    def select_highest_overlaps(mask_pos, *args):
        seen["conflicts"] += int((mask_pos.sum(-2) > 1).sum())
        out = highest(mask_pos, *args)
        seen["fg"] = int(out[1].sum())
        return out

    assigner.select_highest_overlaps = select_highest_overlaps
    p = pred.double().requires_grad_(True)
    feats = [torch.zeros(p.shape[0], 1, h, w) for h, w in levels]
    preds = {"boxes": p[:, : 4 * reg_max], "scores": p[:, 4 * reg_max :], "feats": feats}
    batch = {"batch_idx": targets[:, 0].double(), "cls": targets[:, 1].double(), "bboxes": targets[:, 2:].double()}
    loss, items = crit(preds, batch)
    total = loss.sum()
    total.backward()
    return torch.tensor([total.item(), *[v.item() for v in items.values()], seen.get("fg", 0)]), p.grad, seen


def random_pred(gen, batch, nc, reg_max, n_anchors):
    # Distributions leaning to short distances (a few cells), so that predicted boxes overlap the
    # ground truths in varied amounts; class logits mostly negative, as after the bias init.
    box = torch.randn(batch, 4, reg_max, n_anchors, generator=gen) - 0.4 * torch.arange(reg_max).view(1, 1, -1, 1)
    cls = torch.randn(batch, nc, n_anchors, generator=gen) * 1.5 - 1.5
    return torch.cat([box.view(batch, 4 * reg_max, n_anchors), cls], 1).float()


CASES = [
    # name, batch, nc, reg_max, levels (h, w), strides, targets (image, class, cx, cy, w, h)
    ("square", 3, 5, 16, [(8, 8), (4, 4), (2, 2)], [8, 16, 32], [
        [0, 1, 0.50, 0.50, 0.60, 0.50],  # three overlapping boxes: anchors claimed twice
        [0, 2, 0.45, 0.55, 0.50, 0.60],
        [0, 1, 0.55, 0.45, 0.40, 0.45],
        [0, 0, 0.20, 0.20, 0.10, 0.12],  # small: candidate region widened to stride 16
        # image 1 has no boxes
        [2, 4, 0.50, 0.50, 1.00, 1.00],  # the whole image
        [2, 3, 0.80, 0.30, 0.03, 0.05],  # tiny
        [2, 1, 0.70, 0.70, 0.30, 0.20],
        [2, 2, 0.30, 0.65, 0.25, 0.35],
    ]),
    ("wide", 2, 3, 16, [(8, 12), (4, 6), (2, 3)], [8, 16, 32], [
        [0, 0, 0.30, 0.40, 0.35, 0.50],
        [0, 2, 0.40, 0.45, 0.30, 0.40],
        [0, 1, 0.85, 0.20, 0.12, 0.15],
        [1, 1, 0.50, 0.50, 0.90, 0.80],
        [1, 0, 0.10, 0.90, 0.05, 0.04],
    ]),
    ("empty", 2, 4, 16, [(4, 4), (2, 2)], [16, 32], []),
]


def main():
    here = Path(__file__).parent
    gen = torch.Generator().manual_seed(0)
    with open(here / "loss.bin", "wb") as f:
        for name, batch, nc, reg_max, levels, strides, rows in CASES:
            n_anchors = sum(h * w for h, w in levels)
            pred = random_pred(gen, batch, nc, reg_max, n_anchors)
            targets = torch.tensor(rows, dtype=torch.float32).view(-1, 6)
            loss, grad, seen = detection_loss(levels, strides, nc, reg_max, pred, targets, stable=True)
            loss_torch, grad_torch, _ = detection_loss(levels, strides, nc, reg_max, pred, targets, stable=False)
            assert torch.allclose(loss[:4], loss_torch[:4], rtol=1e-12, atol=0), (name, loss, loss_torch)
            assert torch.allclose(grad, grad_torch, rtol=1e-12, atol=1e-15), name
            print(f"{name}: loss {loss.tolist()} conflicts {seen['conflicts']} fg (torch topk) {int(loss_torch[4])}")
            config = [batch, nc, reg_max, len(levels)] + [v for (h, w), s in zip(levels, strides) for v in (h, w, s)]
            record(f, f"{name}/config", torch.tensor(config, dtype=torch.float64))
            record(f, f"{name}/targets", targets)
            record(f, f"{name}/pred", pred)
            record(f, f"{name}/loss", loss)
            record(f, f"{name}/grad", grad.float())

        batch, nc = 4, 7
        logits = (torch.randn(batch, nc, generator=gen) * 2).float()
        labels = torch.tensor([3, 0, 6, 3])
        x = logits.double().requires_grad_(True)
        loss, _ = v8ClassificationLoss()(x, {"cls": labels})
        loss.backward()
        assert torch.allclose(loss, F.cross_entropy(x, labels))
        record(f, "cls/config", torch.tensor([batch, nc], dtype=torch.float64))
        record(f, "cls/logits", logits)
        record(f, "cls/labels", labels.double())
        record(f, "cls/loss", loss.detach().view(1))
        record(f, "cls/grad", x.grad)


if __name__ == "__main__":
    main()
