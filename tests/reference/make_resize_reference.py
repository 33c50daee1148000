#!/usr/bin/env python3
"""Writes tests/reference/resize_exact.tsv: what cv2.resize(INTER_LINEAR) gives on 8-bit RGB images,
for tests/unit/test_resize_exact.c to check framework/data/resize_exact.c against bit for bit.

Rows `random SW SH DW DH SEED HASH`: the source is SW x SH x 3 bytes from the 64-bit LCG
x = x * 6364136223846793005 + 1442695040888963407 (mod 2^64) started at SEED, each byte the top 8
bits of the next x (the C test generates the same bytes); HASH is the FNV-1a 64 hash of the
DW x DH x 3 result, rows top to bottom, RGB interleaved.
Rows `photo NAME W H DECODE_HASH DW DH RESIZE_HASH`: Ultralytics' asset NAME as cv2.imread decodes it
(converted to RGB, hashed) and resized to the letterbox size of the row (hashed); the C test runs
them when YOLOPIPE_ULTRALYTICS_ASSETS names the folder holding the photos.

    python3 tests/reference/make_resize_reference.py > tests/reference/resize_exact.tsv
"""
import os
import random

import cv2
import numpy as np

M = (1 << 64) - 1


def lcg_bytes(seed, n):
    x, out = seed, bytearray(n)
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & M
        out[i] = x >> 56
    return bytes(out)


def fnv(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M
    return h



def main():
    rnd = random.Random(19)
    cases = [(1, 1, 5, 7), (5, 7, 1, 1), (2, 2, 1, 1), (3, 1, 1, 3), (64, 48, 32, 24), (33, 17, 160, 3),
             (160, 3, 33, 17), (40, 40, 40, 40)]
    while len(cases) < 60:
        sw, sh = rnd.randint(1, 96), rnd.randint(1, 96)
        f = rnd.choice([0.3, 0.6, 0.9, 1.1, 1.7, 2.5])  # down- and up-scales
        cases.append((sw, sh, max(1, round(sw * f * rnd.uniform(0.8, 1.2))), max(1, round(sh * f))))
    print("# kind\tsrc_w\tsrc_h\tdst_w\tdst_h\tseed\thash (see make_resize_reference.py)")
    for i, (sw, sh, dw, dh) in enumerate(cases):
        seed = 1000 + i
        src = np.frombuffer(lcg_bytes(seed, sw * sh * 3), np.uint8).reshape(sh, sw, 3)
        out = cv2.resize(src, (dw, dh), interpolation=cv2.INTER_LINEAR)
        print(f"random\t{sw}\t{sh}\t{dw}\t{dh}\t{seed}\t{fnv(out.tobytes()):016x}")
    assets = os.path.join(os.path.dirname(__import__("ultralytics").__file__), "assets")
    for name in ("bus.jpg", "zidane.jpg"):
        bgr = cv2.imread(os.path.join(assets, name))
        h, w = bgr.shape[:2]
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        for s in (640, 320, 96):
            r = min(s / h, s / w)
            dw, dh = max(round(w * r), 1), max(round(h * r), 1)
            out = cv2.resize(rgb, (dw, dh), interpolation=cv2.INTER_LINEAR)
            print(f"photo\t{name}\t{w}\t{h}\t{fnv(rgb.tobytes()):016x}\t{dw}\t{dh}\t{fnv(out.tobytes()):016x}")


if __name__ == "__main__":
    main()
