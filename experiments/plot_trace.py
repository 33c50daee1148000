"""`yolopipe_plot.py trace TRACE.json OUT.png [--title TITLE]`: a Chrome-trace JSON written by
`yolopipe plan --trace` (or a training run) as a PNG Gantt chart: one row per track, passes coloured
by kind."""
import json

from plot_study import UserError

COLOURS = {"fwd": "#4c72b0", "bwd": "#dd8452", "wgrad": "#55a868", "send": "#8c8c8c", "recv": "#e5e5e5",
           "reduce": "#c44e52"}


def add_arguments(parser):
    parser.add_argument("trace", metavar="TRACE.json", help="a Chrome-trace JSON")
    parser.add_argument("out", metavar="OUT.png", help="the figure to write")
    parser.add_argument("--title", help="the figure's title (default: the trace's path)")


def read_trace(path):
    """The complete events and the track names of a trace."""
    try:
        with open(path, encoding="utf-8") as f:
            trace = json.load(f)
        events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
        names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
                 if e.get("ph") == "M" and e.get("name") == "thread_name"}
        for e in events:
            e["ts"], e["dur"], _ = float(e["ts"]), float(e["dur"]), e["tid"]  # each present and numeric
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not JSON ({e})") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: not a Chrome trace (no traceEvents with ph, tid, ts and dur: {e!r})") from None
    if not events:
        raise UserError(f"{path}: no complete ('X') events to draw")
    return events, names


def run(args, pyplot):
    events, names = read_trace(args.trace)
    title = args.title if args.title is not None else args.trace
    plt = pyplot()
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
    try:
        fig.savefig(args.out, dpi=110)
    except OSError as e:
        raise UserError(f"{args.out}: cannot write: {e.strerror or e}") from None
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0
