#!/usr/bin/env python3
"""Compares yolopipe's predictions.json with tests/reference/ultralytics_predict.py's output, image by
image: the same number of boxes and, pairing each of ours with an unpaired reference box of its
class, corners within BOX_TOL pixels and confidences within CONF_TOL. Prints the largest differences
found and exits 1 on any mismatch (one line saying which image and box).

Tolerances: the two run the same network in float32 with different summation orders (and
Ultralytics fuses each batch norm into its convolution), so scores agree to about 1e-6 and corners
to about 1e-3 pixels; 1e-4 and 1 pixel are the issue's acceptance bounds.
"""
import json
import sys

BOX_TOL, CONF_TOL = 1.0, 1e-4


def main():
    ours, ref = (json.load(open(p))["images"] for p in sys.argv[1:3])
    if len(ours) != len(ref):
        sys.exit(f"FAIL: {len(ours)} images predicted, the reference has {len(ref)}")
    worst_box = worst_conf = 0.0
    n_boxes = 0
    for a, b in zip(ours, ref):
        name = a["path"]
        if (a["width"], a["height"]) != (b["width"], b["height"]):
            sys.exit(f"FAIL: {name}: size {a['width']}x{a['height']}, the reference {b['width']}x{b['height']}")
        da, db = a["detections"], b["detections"]
        if len(da) != len(db):
            sys.exit(f"FAIL: {name}: {len(da)} boxes, the reference has {len(db)}")
        free = list(range(len(db)))
        for i, d in enumerate(da):
            def cost(j):
                e = db[j]
                return max(max(abs(x - y) for x, y in zip(d["box"], e["box"])), abs(d["confidence"] - e["confidence"]) * 1e4)
            same = [j for j in free if db[j]["class"] == d["class"]]
            if not same:
                sys.exit(f"FAIL: {name}: box {i} of class {d['class']} has no reference box of its class left")
            j = min(same, key=cost)
            free.remove(j)
            box = max(abs(x - y) for x, y in zip(d["box"], db[j]["box"]))
            conf = abs(d["confidence"] - db[j]["confidence"])
            if box > BOX_TOL or conf > CONF_TOL:
                sys.exit(f"FAIL: {name}: box {i} {d} against the reference's {db[j]}: corners {box:.3g} px, "
                         f"confidence {conf:.3g} apart")
            worst_box, worst_conf = max(worst_box, box), max(worst_conf, conf)
            n_boxes += 1
    print(f"{len(ours)} images, {n_boxes} boxes agree with Ultralytics: largest corner difference {worst_box:.3g} px, "
          f"largest confidence difference {worst_conf:.3g}")


if __name__ == "__main__":
    main()
