#!/usr/bin/env python3
"""The safetensors fixture that test_safetensors reads, written by the reference implementation,
and the check of the opposite direction: a file written by yolopipe's writer loads in PyTorch.

Not run by the test suite (it needs the `safetensors` package). From the repository root:

    python3 tests/reference/make_safetensors_reference.py
        writes tests/reference/safetensors_fixture.safetensors with safetensors.numpy.save_file
    python3 tests/reference/make_safetensors_reference.py --check FILE
        loads FILE with safetensors.torch.load_file and checks that it holds exactly the tensors
        and metadata below (test_safetensors writes such a file, test_safetensors.out.safetensors,
        into the directory it runs in: the build directory under meson test)

test_safetensors.c builds the same tensors and metadata; keep the two in step.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "safetensors_fixture.safetensors"
QUOTED_NAME = 'name with "quotes", a \\ backslash and \u00fcn\u00efc\u00f6de'


def expected():
    """Name -> numpy array, and the metadata, with values every language computes identically."""
    tensors = {
        # (i - 2.5) / 3 in double, rounded once to float32
        "model.0.conv.weight": ((np.arange(6, dtype=np.float64) - 2.5) / 3).astype(np.float32).reshape(2, 3, 1, 1),
        "step": np.array(1234567890123, dtype=np.int64),  # a scalar: shape []
        "model.1.bn.running_var": np.array([1.5, -2.25, 1e300], dtype=np.float64),
        "mask": np.array([True, False, True, True]),
        "half": np.array([1.0, -2.0], dtype=np.float16),  # bytes 00 3c 00 c0
        "empty": np.zeros((0, 3), dtype=np.float32),
        QUOTED_NAME: np.array([[-7], [2147483647]], dtype=np.int32),
    }
    metadata = {"format": "pt", "note": 'line one\nline "two"\t\u00e9\u2713\U0001F600'}
    return tensors, metadata


def write():
    from safetensors.numpy import save_file

    tensors, metadata = expected()
    save_file(tensors, str(FIXTURE), metadata=metadata)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


def check(path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors, metadata = expected()
    loaded = load_file(path)
    with safe_open(path, framework="pt") as f:
        loaded_metadata = f.metadata()
    problems = []
    if sorted(loaded) != sorted(tensors):
        problems.append(f"tensor names {sorted(loaded)} != {sorted(tensors)}")
    for name, want in tensors.items():
        got = loaded.get(name)
        if got is None:
            continue
        want_t = torch.from_numpy(want)
        if got.dtype != want_t.dtype or tuple(got.shape) != tuple(want_t.shape) or not torch.equal(got, want_t):
            problems.append(f"{name!r}: {got.dtype} {tuple(got.shape)} {got.flatten().tolist()} "
                            f"!= {want_t.dtype} {tuple(want_t.shape)} {want_t.flatten().tolist()}")
    if loaded_metadata != metadata:
        problems.append(f"metadata {loaded_metadata!r} != {metadata!r}")
    for p in problems:
        print(f"{path}: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{path}: {len(loaded)} tensors and {len(loaded_metadata)} metadata entries load in PyTorch and match")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", metavar="FILE", help="load FILE with safetensors.torch and compare")
    args = parser.parse_args()
    check(args.check) if args.check else write()


if __name__ == "__main__":
    main()
