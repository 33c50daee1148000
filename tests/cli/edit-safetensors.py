#!/usr/bin/env python3
"""Edits a safetensors file in place, as a hostile or careless user would (check-checkpoint.sh):
  meta KEY=VALUE         sets a metadata string
  shape NAME=D0,D1,...   restates a tensor's shape (same element count, so the file stays well formed)
  nan NAME INDEX         writes a float32 NaN into element INDEX of an F32 tensor
The result is a structurally valid file (header re-padded to 8 bytes); only its meaning is wrong.
Usage: edit-safetensors.py FILE OP ARG [OP ARG...]"""
import json
import math
import struct
import sys


def main(argv):
    path, ops = argv[1], argv[2:]
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = bytearray(blob[8 + n:])
    while ops:
        op = ops.pop(0)
        if op == "meta":
            key, value = ops.pop(0).split("=", 1)
            header.setdefault("__metadata__", {})[key] = value
        elif op == "shape":
            name, dims = ops.pop(0).split("=", 1)
            shape = [int(d) for d in dims.split(",")] if dims else []
            assert math.prod(shape) == math.prod(header[name]["shape"]), "the element count must stay"
            header[name]["shape"] = shape
        elif op == "nan":
            name, index = ops.pop(0), int(ops.pop(0))
            assert header[name]["dtype"] == "F32"
            begin = header[name]["data_offsets"][0] + 4 * index
            data[begin:begin + 4] = struct.pack("<f", float("nan"))
        else:
            sys.exit(f"unknown operation {op}")
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(data))


if __name__ == "__main__":
    main(sys.argv)
