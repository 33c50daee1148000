#!/usr/bin/env python3
"""Writes tests/reference/dtype.bin, the reference that test_dtype compares framework/core/dtype.h's
conversions with: PyTorch's own float32 -> bfloat16 and float32 -> float16 rounding on the CPU.

Not run by the test suite (it needs PyTorch): run it by hand, from the repository root, with the
Python that has it:

    python3 tests/reference/make_dtype_reference.py

Records as in make_forward_reference.py: u32 name length, name, u32 element size (4), u64 count,
data (little-endian). All float32, N of each:
  x           the inputs, drawn from bit patterns (below)
  bf16_bits   x.to(bfloat16) viewed as uint16 (exact integers in float32)
  bf16_value  x.to(bfloat16).to(float32)
  f16_bits    x.to(float16) viewed as uint16
  f16_value   x.to(float16).to(float32)

The inputs come in four equal groups so that every rounding case is hit often: uniformly random
bit patterns (every float32 exponent, infinities and NaNs included); exponents around float16's
range (its subnormals, normals and overflow); bfloat16 ties (the low 16 bits exactly 0x8000); and
float16 ties in its normal range (the low 13 bits exactly 0x1000).
"""
import struct
from pathlib import Path

import numpy as np
import torch

N_PER_GROUP = 1024


def record(f, name, tensor):
    data = tensor.detach().contiguous().cpu()
    f.write(struct.pack("<I", len(name)) + name.encode() + struct.pack("<IQ", data.element_size(), data.numel()))
    f.write(data.numpy().tobytes())


def bits_with_exponent(rng, lo, hi):
    """Random sign and mantissa, biased exponent in [lo, hi]."""
    sign = rng.integers(0, 2, N_PER_GROUP, dtype=np.uint32) << 31
    exponent = rng.integers(lo, hi + 1, N_PER_GROUP, dtype=np.uint32) << 23
    mantissa = rng.integers(0, 1 << 23, N_PER_GROUP, dtype=np.uint32)
    return sign | exponent | mantissa


def main():
    rng = np.random.default_rng(20261122)
    uniform = rng.integers(0, 1 << 32, N_PER_GROUP, dtype=np.uint64).astype(np.uint32)
    # float16's smallest subnormal is 2^-24 (biased exponent 103); it overflows from 2^16 (143).
    f16_range = bits_with_exponent(rng, 100, 145)
    bf16_ties = (bits_with_exponent(rng, 1, 254) & ~np.uint32(0xFFFF)) | np.uint32(0x8000)
    f16_ties = (bits_with_exponent(rng, 113, 142) & ~np.uint32(0x1FFF)) | np.uint32(0x1000)
    bits = np.concatenate([uniform, f16_range, bf16_ties, f16_ties])
    x = torch.from_numpy(bits.view(np.float32).copy())

    bf16 = x.to(torch.bfloat16)
    f16 = x.to(torch.float16)
    as_unsigned = lambda t: (t.view(torch.int16).to(torch.int32) & 0xFFFF).to(torch.float32)
    out = Path(__file__).parent / "dtype.bin"
    with open(out, "wb") as f:
        record(f, "x", x)
        record(f, "bf16_bits", as_unsigned(bf16))
        record(f, "bf16_value", bf16.to(torch.float32))
        record(f, "f16_bits", as_unsigned(f16))
        record(f, "f16_value", f16.to(torch.float32))
    print(f"wrote {out}: {x.numel()} values")


if __name__ == "__main__":
    main()
