#!/usr/bin/env python3
"""Draws a Chrome-trace JSON written by `yolopipe plan --trace` (or a training run) as a PNG Gantt
chart: one row per track, passes coloured by kind. Usage: plot_trace.py TRACE.json OUT.png [TITLE]
Needs matplotlib."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"fwd": "#4c72b0", "bwd": "#dd8452", "wgrad": "#55a868", "send": "#8c8c8c", "recv": "#e5e5e5",
           "reduce": "#c44e52"}


def main():
    trace_path, out_path = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else trace_path
    trace = json.load(open(trace_path))
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    tids = sorted({e["tid"] for e in events})
    row = {tid: i for i, tid in enumerate(tids)}
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(tids) + 1.2))
    for e in events:
        ax.barh(row[e["tid"]], e["dur"] / 1e3, left=e["ts"] / 1e3, height=0.8,
                color=COLOURS.get(e.get("cat"), "#999999"), edgecolor="white", linewidth=0.3)
    ax.set_yticks(range(len(tids)))
    ax.set_yticklabels([names.get(t, str(t)) for t in tids])
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    ax.legend(handles, COLOURS.keys(), ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    main()
