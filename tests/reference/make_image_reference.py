#!/usr/bin/env python3
"""Writes the image fixtures that test_image_io and test_augment compare yolopipe with, into
tests/reference/images/. Not run by the test suite (it needs OpenCV, Pillow and Ultralytics): run it
by hand from the repository root with an environment that has `pip install ultralytics`:

    python3 tests/reference/make_image_reference.py

Every *.rgb file is raw 8-bit RGB, rows top to bottom, no header (sizes are in the test).

  png_*.png, png_*.rgb    PNG variants written by Pillow or OpenCV; .rgb is what Ultralytics sees:
                          cv2.imread(IMREAD_COLOR), BGR turned to RGB
  jpeg_*.jpg, jpeg_*.rgb  JPEG (RGB 4:2:0, grey, Adobe CMYK) written and decoded by Pillow
  hsv_in.rgb              a 64 x 48 test card (random colours, greys, primaries)
  hsv_<case>.rgb          Ultralytics' RandomHSV applied to it with the gains of HSV_CASES
  resize_<w>x<h>.rgb      cv2.resize(INTER_LINEAR) of hsv_in to w x h
"""
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from ultralytics.data.augment import RandomHSV

W, H = 17, 13  # odd sizes catch row-stride mistakes
HSV_W, HSV_H = 64, 48
# (name, uniform draws in [-1, 1] for h, s, v); RandomHSV multiplies them by its gains (0.015, 0.7, 0.4).
HSV_CASES = [("a", (0.8, 0.9, 0.7)), ("b", (-0.6, -0.5, -0.9)), ("c", (1.0, -1.0, 1.0))]
RESIZES = [(40, 30), (100, 75), (64, 20)]


def save_rgb(path, rgb):
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    path.write_bytes(np.ascontiguousarray(rgb).tobytes())


def cv2_view(path):
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return bgr[..., ::-1]


def test_card(rng):
    im = rng.integers(0, 256, (HSV_H, HSV_W, 3), dtype=np.uint8)
    im[:4] = np.arange(HSV_W, dtype=np.uint8)[None, :, None] * 4  # greys
    primaries = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (255, 255, 255), (0, 0, 0)]
    for i, c in enumerate(primaries):
        im[4:8, i * 8 : i * 8 + 8] = c
    return im


def main():
    out = Path(__file__).parent / "images"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)

    rgb8 = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    alpha8 = rng.integers(0, 256, (H, W, 1), dtype=np.uint8)
    grey8 = rng.integers(0, 256, (H, W), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (H, W), dtype=np.uint16)

    Image.fromarray(rgb8).save(out / "png_rgb8.png")
    Image.fromarray(np.concatenate([rgb8, alpha8], 2)).save(out / "png_rgba8.png")
    Image.fromarray(grey8).save(out / "png_grey8.png")
    Image.fromarray(np.stack([grey8, alpha8[..., 0]], 2), "LA").save(out / "png_greyalpha8.png")
    Image.fromarray(grey8 >= 128).save(out / "png_grey1.png")  # 1-bit
    Image.fromarray(grey16).save(out / "png_grey16.png")  # mode I;16
    cv2.imwrite(str(out / "png_rgb16.png"), rgb16[..., ::-1])
    cv2.imwrite(str(out / "png_rgba16.png"), np.concatenate([rgb16[..., ::-1], rgb16[..., :1]], 2))
    pal = Image.fromarray(rgb8).quantize(colors=16)
    pal.info["transparency"] = 3
    pal.save(out / "png_palette.png", transparency=3)  # palette with a tRNS chunk
    for path in sorted(out.glob("png_*.png")):
        save_rgb(path.with_suffix(".rgb"), cv2_view(path))

    # A smooth picture compresses like a photograph; random noise would make a poor JPEG test.
    yy, xx = np.mgrid[0:40, 0:56]
    photo = np.stack([(xx * 4) % 256, (yy * 6) % 256, ((xx + yy) * 3) % 256], 2).astype(np.uint8)
    Image.fromarray(photo).save(out / "jpeg_rgb.jpg", quality=90)
    Image.fromarray(photo[..., 1]).save(out / "jpeg_grey.jpg", quality=90)
    Image.fromarray(photo).convert("CMYK").save(out / "jpeg_cmyk.jpg", quality=90)
    for path in sorted(out.glob("jpeg_*.jpg")):
        save_rgb(path.with_suffix(".rgb"), np.asarray(Image.open(path).convert("RGB")))

    card = test_card(rng)
    save_rgb(out / "hsv_in.rgb", card)
    for name, draws in HSV_CASES:
        aug = RandomHSV(hgain=0.015, sgain=0.7, vgain=0.4)
        saved = np.random.uniform
        np.random.uniform = lambda lo, hi, n, d=draws: np.array(d, dtype=np.float64)
        try:
            labels = aug.apply_image({"img": np.ascontiguousarray(card[..., ::-1])})
        finally:
            np.random.uniform = saved
        save_rgb(out / f"hsv_{name}.rgb", labels["img"][..., ::-1])
    for w, h in RESIZES:
        save_rgb(out / f"resize_{w}x{h}.rgb", cv2.resize(card, (w, h), interpolation=cv2.INTER_LINEAR))


if __name__ == "__main__":
    main()
