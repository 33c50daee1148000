"""`yolopipe_plot.py study POINTS.csv`: a scaling study's figures from the points.csv that `yolopipe
study` writes (columns in experiments/STUDY.md): scaling.png, bubble.png, fidelity.png, train_cost.png and input_size.png, each
only when the study has the columns it needs; says which it skipped and why.

Usage: yolopipe_plot.py study POINTS.csv [--out DIR] [--title TITLE]
Exit codes: 0 done (some figures may be skipped), 2 bad input (one line "file:line:col: message"),
3 matplotlib missing (Debian: apt-get install python3-matplotlib, run with /usr/bin/python3).

Grouping: the swept keys are the columns between `label` and `world`. A swept key is a *world axis*
when two points that differ only in it have different world sizes (nodes, parallel.replicas, or
parallel.stages when the replicas are fixed); the scaling figure draws one line per combination of
the other keys against world. A *layout* key is a parallel.* key or nodes: train_cost.png keeps the
fastest layout per world size, one line per combination of the keys that change what is trained
(scale, model, train.*). Only rows with status ok are drawn; the others are counted and left out."""
import collections
import csv
import io
import math
import os
import statistics
import sys

# The columns every points.csv has; the swept keys stand between label and world.
REQUIRED_COLUMNS = ("index", "label", "world", "status")
NUMERIC_COLUMNS = (
    "world", "nodes_used", "predicted_step_ms", "measured_step_ms", "error_pct", "predicted_images_per_s",
    "measured_images_per_s", "images_per_s", "images_per_s_per_gpu", "scaling_efficiency", "bubble_fraction",
    "predicted_peak_activation_bytes", "measured_peak_activation_bytes", "measured_peak_rss_bytes",
    "memory_bytes_per_gpu", "p2p_bytes_per_step", "allreduce_bytes_per_step", "term_compute_ms", "term_p2p_ms",
    "term_allreduce_ms", "term_optimizer_ms", "term_loss_ms", "term_loader_ms", "time_to_train_h")
# Words in their natural order (schedules, then model scales); other words sort alphabetically after.
WORD_ORDER = ("gpipe", "1f1b", "interleaved", "zb-h1", "n", "s", "m", "l", "x")
# Swept keys the figures use as numbers (axes, panels, the bubble's theory).
NUMERIC_SWEPT_KEYS = ("parallel.stages", "parallel.micro_batches", "parallel.replicas", "train.imgsz", "nodes")
GIB = float(1 << 30)
DPI = 150
MARKERS = "osD^vPX*<>"
CROWDED_LEGEND = 6  # more entries than this go outside the axes


class UserError(Exception):
    """A message for the user, printed as one line; exit code 2 (every yolopipe_plot.py module raises it)."""


class Skip(Exception):
    """A figure the study has no data for; the message says why."""


class Row:
    def __init__(self, line, label, swept, values, fits):
        self.line = line      # 1-based line of the CSV record
        self.label = label
        self.swept = swept    # {swept key: text value}
        self.values = values  # {numeric column: float or None when empty}
        self.fits = fits      # fits_memory: True, False or None

    def num(self, col):
        return self.values.get(col)


class Study:
    def __init__(self, path, swept, costs, rows, not_ok, incomplete_last):
        self.path = path
        self.swept = swept              # swept keys, in column order
        self.costs = costs              # [(column, platform, kind: "on-demand" | "spot" | "local")]
        self.rows = rows                # status ok only
        self.not_ok = not_ok            # Counter of the other statuses
        self.incomplete_last = incomplete_last

    def has(self, col):
        return any(r.num(col) is not None for r in self.rows)


# --- reading -------------------------------------------------------------------------------------

def field_columns(line):
    """1-based character column where each field of one CSV line starts (RFC 4180 quotes)."""
    starts, quoted = [1], False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            starts.append(i + 2)
    return starts


def parse_number(text, where, col):
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: column '{col}': '{text}' is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: column '{col}': '{text}' is not a finite number")
    return value


def parse_bool(text, where, col):
    lowered = text.strip().lower()
    if lowered == "":
        return None
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise UserError(f"{where}: column '{col}': '{text}' is not true or false")


def cost_columns(header):
    """The cost_* columns as (column, platform, kind); a cloud platform has _on_demand and maybe _spot."""
    names = [c for c in header if c.startswith("cost_")]
    clouds = {c[len("cost_"):-len("_on_demand")] for c in names if c.endswith("_on_demand")}
    out = []
    for c in names:
        body = c[len("cost_"):]
        if c.endswith("_on_demand") and body[:-len("_on_demand")] in clouds:
            out.append((c, body[:-len("_on_demand")], "on-demand"))
        elif c.endswith("_spot") and body[:-len("_spot")] in clouds:
            out.append((c, body[:-len("_spot")], "spot"))
        else:
            out.append((c, body, "local"))
    return out


def read_study(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: cannot read: not UTF-8 text (byte {e.start})") from None
    lines = text.split("\n")
    reader = csv.reader(io.StringIO(text, newline=""))
    records = []
    try:
        for record in reader:
            records.append((reader.line_num, record))
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}:1: {e}") from None
    if not records:
        raise UserError(f"{path}:1:1: empty file: no header row")
    header_line, header = records[0]
    for col in REQUIRED_COLUMNS:
        if col not in header:
            raise UserError(f"{path}:{header_line}:1: no column '{col}' (is this a points.csv from yolopipe study?)")
    seen = set()
    for i, col in enumerate(header):
        if col in seen:
            raise UserError(f"{path}:{header_line}:{field_columns(lines[header_line - 1])[i]}: column '{col}' twice")
        seen.add(col)
    label_at, world_at = header.index("label"), header.index("world")
    if world_at < label_at:
        raise UserError(f"{path}:{header_line}:1: column 'world' stands before 'label' (the swept keys go between)")
    swept = header[label_at + 1:world_at]
    costs = cost_columns(header)
    numeric = [c for c in NUMERIC_COLUMNS if c in header] + [c for c, _, _ in costs]
    rows, not_ok, incomplete_last = [], collections.Counter(), False
    for n, (line_num, record) in enumerate(records[1:], start=2):
        if not record:
            continue  # a blank line
        if len(record) != len(header):
            # A study killed while appending leaves a last line without its newline: leave it out.
            if n == len(records) and not text.endswith("\n"):
                incomplete_last = True
                continue
            raise UserError(f"{path}:{line_num}:1: {len(record)} fields, the header has {len(header)}")
        cell = dict(zip(header, record))
        status = cell["status"].strip()
        if status != "ok":
            not_ok[status or "(empty)"] += 1
            continue
        starts = field_columns(lines[line_num - 1]) if line_num <= len(lines) else []

        def where(col):
            i = header.index(col)
            return f"{path}:{line_num}:{starts[i] if i < len(starts) else 1}"

        values = {c: parse_number(cell[c].strip(), where(c), c) for c in numeric}
        for k in swept:
            if k in NUMERIC_SWEPT_KEYS and parse_number(cell[k].strip(), where(k), k) is None:
                raise UserError(f"{where(k)}: column '{k}' is empty in an ok row")
        if values.get("world") is None:
            raise UserError(f"{where('world')}: column 'world' is empty in an ok row")
        fits = parse_bool(cell["fits_memory"], where("fits_memory"), "fits_memory") if "fits_memory" in cell else None
        rows.append(Row(line_num, cell["label"], {k: cell[k] for k in swept}, values, fits))
    return Study(path, swept, costs, rows, not_ok, incomplete_last)


# --- grouping and labels -------------------------------------------------------------------------

def value_order(text):
    """Sorts numbers as numbers, words by WORD_ORDER then alphabetically."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, WORD_ORDER.index(text) if text in WORD_ORDER else len(WORD_ORDER), text)


def group_rows(rows, keys):
    """{tuple of the keys' values: [rows]} in a stable, natural order."""
    groups = collections.defaultdict(list)
    for r in rows:
        groups[tuple(r.swept[k] for k in keys)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: [value_order(v) for v in kv[0]]))


def world_axis_keys(study):
    """The swept keys that change the world size when every other swept value stays the same."""
    out = []
    for k in study.swept:
        others = [o for o in study.swept if o != k]
        for members in group_rows(study.rows, others).values():
            if len({r.num("world") for r in members}) > 1:
                out.append(k)
                break
    return out


def short_key(key, keys):
    """The key's last dotted part, unless another key has the same last part."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(1 for k in keys if k.rsplit(".", 1)[-1] == last) == 1 else key


def short_value(text):
    if "/" in text:  # a path (model=experiments/models/yolov8.yaml): its base name
        text = os.path.splitext(os.path.basename(text.rstrip("/")))[0]
    return text if len(text) <= 20 else text[:19] + "…"


def group_label(keys, values, all_keys, empty="all points"):
    # An empty value is a key this point leaves at the experiment's value (set only by other points).
    parts = [f"{short_key(k, all_keys)}={short_value(v)}" for k, v in zip(keys, values) if v != ""]
    return ", ".join(parts) if parts else empty


def spans_decades(values):
    positive = [v for v in values if v is not None and v > 0]
    return len(positive) >= 2 and max(positive) / min(positive) >= 10


# --- axes helpers --------------------------------------------------------------------------------

def style(i):
    """Line i's colour and hollow marker: markers differ too, so that lines lying on each other stay
    visible."""
    return {"color": f"C{i % 10}", "marker": MARKERS[(i + i // 10) % len(MARKERS)], "markerfacecolor": "none",
            "markeredgewidth": 1.3}


def compact_number(value, _pos=None):
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def log_y(ax, values):
    """A log y axis when the values span a decade or more, its ticks as plain numbers (labelled at
    2 and 5 too when the span is short, so that a short log axis still reads)."""
    if not spans_decades(values):
        return
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    positive = [v for v in values if v is not None and v > 0]
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(compact_number))
    if max(positive) / min(positive) < 1e3:
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(FuncFormatter(compact_number))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def grid(ax):
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def log2_axis(ax, ticks, label):
    """A log2 x axis with a labelled tick at each value (world sizes, micro-batch counts)."""
    from matplotlib.ticker import FixedLocator, NullLocator
    ticks = sorted(set(ticks))
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] / 1.5, ticks[0] * 1.5)
    ax.set_xlabel(label)


def legend(fig, axes_or_ax, handles=None):
    """Inside the axes when short; outside on the right of the figure when crowded or shared."""
    ax = axes_or_ax if not isinstance(axes_or_ax, list) else axes_or_ax[0]
    if handles is None:
        handles = ax.get_legend_handles_labels()[0]
    if len(handles) > CROWDED_LEGEND or isinstance(axes_or_ax, list):
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False)
    else:
        ax.legend(handles=handles, fontsize="small")


def unique_handles(axes):
    seen, out = set(), []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in seen:
                seen.add(lab)
                out.append(h)
    return out


# --- the figures ---------------------------------------------------------------------------------

def plot_scaling(study, plt, title):
    worlds = {r.num("world") for r in study.rows if (r.num("images_per_s") or 0) > 0}
    if len(worlds) < 2:
        raise Skip(f"needs at least 2 world sizes with images/s, the study has {len(worlds)}")
    axis_keys = world_axis_keys(study)
    keys = [k for k in study.swept if k not in axis_keys]
    lines = []
    for values, members in group_rows(study.rows, keys).items():
        best = {}  # world -> images/s (the fastest where points repeat a world size)
        for r in members:
            if (r.num("images_per_s") or 0) > 0:
                best[r.num("world")] = max(best.get(r.num("world"), 0.0), r.num("images_per_s"))
        if len(best) >= 2:
            lines.append((values, sorted(best.items())))
    if not lines:
        raise Skip("no line has two world sizes (world changes only together with other swept keys)")
    fig, (ax_ips, ax_eff) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    all_ips, top_eff = [], 1.0
    for i, (values, points) in enumerate(lines):
        xs, ys = [w for w, _ in points], [v for _, v in points]
        w0, ips0 = points[0]
        eff = [(v / w) / (ips0 / w0) for w, v in points]
        top_eff = max(top_eff, *eff)
        all_ips += ys + [ips0 * w / w0 for w in xs]
        label = group_label(keys, values, study.swept)
        ax_ips.plot(xs, ys, label=label, **style(i))
        ax_ips.plot(xs, [ips0 * w / w0 for w in xs], linestyle=":", linewidth=1, color=style(i)["color"])
        ax_eff.plot(xs, eff, label=label, **style(i))
    from matplotlib.lines import Line2D
    from matplotlib.ticker import PercentFormatter
    all_worlds = [w for _, points in lines for w, _ in points]
    for ax in (ax_ips, ax_eff):
        log2_axis(ax, all_worlds, "GPUs (world size)")
        grid(ax)
    log_y(ax_ips, all_ips)
    ax_ips.set_ylabel("images/s (measured, else predicted)")
    ax_ips.set_title("throughput (dotted: ideal, linear from each line's smallest world)", fontsize="medium")
    ax_eff.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax_eff.set_ylim(0, max(1.1, top_eff * 1.05))
    ax_eff.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_eff.set_ylabel("scaling efficiency\n(images/s per GPU against the line's smallest world)")
    ax_eff.set_title("efficiency", fontsize="medium")
    handles = ax_ips.get_legend_handles_labels()[0]
    handles.append(Line2D([], [], color="grey", linestyle=":", label="ideal (linear)"))
    legend(fig, ax_eff if len(handles) <= CROWDED_LEGEND else ax_ips, handles)
    fig.suptitle(f"{title}: throughput and scaling efficiency against GPUs")
    return fig


def same_curves(a, b, tolerance=5e-4):
    """Whether two lines' {panel: [(x, y)]} agree everywhere to within tolerance (less than a line's width)."""
    return a.keys() == b.keys() and all(
        [x for x, _ in a[p]] == [x for x, _ in b[p]] and all(abs(ya - yb) <= tolerance for (_, ya), (_, yb) in
                                                             zip(a[p], b[p])) for p in a)


def merged_label(keys, names, all_keys):
    """One label for lines drawn as one: "schedule=gpipe = 1f1b" when they differ in one key."""
    if len(names) == 1:
        return group_label(keys, names[0], all_keys)
    differ = [i for i in range(len(keys)) if len({v[i] for v in names}) > 1]
    if len(differ) == 1:
        joined = " = ".join(short_value(v[differ[0]]) for v in names)
        return ", ".join(f"{short_key(k, all_keys)}={joined if i == differ[0] else short_value(names[0][i])}"
                         for i, k in enumerate(keys))
    return " = ".join(group_label(keys, v, all_keys) for v in names)


def plot_bubble(study, plt, title):
    if "parallel.micro_batches" not in study.swept:
        raise Skip("parallel.micro_batches is not swept")
    rows = [r for r in study.rows if r.num("bubble_fraction") is not None]
    if not rows:
        raise Skip("no ok point has a bubble_fraction")
    panel_key = "parallel.stages" if "parallel.stages" in study.swept else None
    line_keys = [k for k in study.swept if k not in ("parallel.stages", "parallel.micro_batches")
                 and k not in world_axis_keys(study)]
    panels = group_rows(rows, [panel_key] if panel_key else [])
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.9 * nrows), sharey=True, squeeze=False,
                             layout="constrained")
    axes = [ax for row in axes for ax in row]
    # curves[line][panel] = [(m, bubble)], from the smallest world per m (the bubble is the pipeline's).
    curves = collections.defaultdict(dict)
    for panel_values, members in panels.items():
        for values, line_rows in group_rows(members, line_keys).items():
            by_m = {}
            for r in line_rows:
                m = float(r.swept["parallel.micro_batches"])
                if m not in by_m or r.num("world") < by_m[m].num("world"):
                    by_m[m] = r
            curves[values][panel_values] = [(m, by_m[m].num("bubble_fraction")) for m in sorted(by_m)]
    # Lines that coincide in every panel (gpipe and 1f1b have the same bubble) are drawn once, named
    # together, rather than one hiding the other.
    merged = []  # [[line values, ...]], in the first one's colour
    colour = {values: i for i, values in enumerate(group_rows(rows, line_keys))}  # as fidelity.png's
    for values in colour:
        same = next((names for names in merged if same_curves(curves[names[0]], curves[values])), None)
        if same is not None:
            same.append(values)
        else:
            merged.append([values])
    schedules = {r.swept.get("parallel.schedule") for r in rows}
    guide = "parallel.schedule" not in study.swept or bool(schedules & {"gpipe", "1f1b"})
    from matplotlib.ticker import PercentFormatter
    top = 0.05
    for ax, panel_values in zip(axes, panels):
        all_m = []
        for names in merged:
            points = curves[names[0]].get(panel_values)
            if not points:
                continue
            all_m += [m for m, _ in points]
            top = max(top, *(y for _, y in points))
            ax.plot([m for m, _ in points], [y for _, y in points], label=merged_label(line_keys, names, study.swept),
                    **style(colour[names[0]]))
        if panel_key and guide:
            s = float(panel_values[0])
            dense = [min(all_m) * (max(all_m) / min(all_m)) ** (i / 100) for i in range(101)]
            ax.plot(dense, [(s - 1) / (m + s - 1) for m in dense], "k--", linewidth=1,
                    label="theory (S−1)/(m+S−1), GPipe and 1F1B")
        log2_axis(ax, all_m, "micro-batches per step (m)")
        ax.set_title(f"stages S = {panel_values[0]}" if panel_key else "bubble", fontsize="medium")
        grid(ax)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel("bubble (idle fraction of the step)")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[0].set_ylim(0, top * 1.08)
    shown = axes[:len(panels)]
    order = {merged_label(line_keys, names, study.swept): i for i, names in enumerate(merged)}
    handles = sorted(unique_handles(shown), key=lambda h: order.get(h.get_label(), len(order)))  # the guide last
    legend(fig, shown if len(shown) > 1 else shown[0], handles)
    fig.suptitle(f"{title}: pipeline bubble against micro-batches" +
                 ("" if panel_key or not guide else " (stages not swept: no theory line)"))
    return fig


def plot_fidelity(study, plt, title):
    rows = [r for r in study.rows if (r.num("predicted_step_ms") or 0) > 0 and (r.num("measured_step_ms") or 0) > 0]
    if not rows:
        raise Skip("no ok point has both predicted_step_ms and measured_step_ms (simulate-only study?)")
    colour_key = "parallel.schedule" if "parallel.schedule" in study.swept else (study.swept[0] if study.swept else None)

    def error_pct(r):
        if r.num("error_pct") is not None:
            return r.num("error_pct")
        return 100.0 * (r.num("predicted_step_ms") - r.num("measured_step_ms")) / r.num("measured_step_ms")

    errors = [abs(error_pct(r)) for r in rows]
    fig, ax = plt.subplots(figsize=(6.6, 6.2), layout="constrained")
    for i, (values, members) in enumerate(group_rows(rows, [colour_key] if colour_key else []).items()):
        ax.scatter([r.num("measured_step_ms") for r in members], [r.num("predicted_step_ms") for r in members],
                   label=group_label([colour_key] if colour_key else [], values, study.swept, "points"),
                   facecolors="none", edgecolors=style(i)["color"], marker=style(i)["marker"], s=36,
                   linewidths=1.3, zorder=3)  # hollow, so that points on each other all show
    every = [r.num(c) for r in rows for c in ("predicted_step_ms", "measured_step_ms")]
    lo, hi = min(every), max(every)
    log = lo > 0 and hi / lo > 10
    if log:
        lo, hi = lo / 1.3, hi * 1.3
        xs = [lo * (hi / lo) ** (i / 100) for i in range(101)]
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        pad = max((hi - lo) * 0.1, hi * 0.05)
        lo, hi = max(0.0, lo - pad), hi + pad
        xs = [lo + (hi - lo) * i / 100 for i in range(101)]
    ax.fill_between(xs, [0.9 * x for x in xs], [1.1 * x for x in xs], color="grey", alpha=0.18, label="±10 %")
    ax.plot(xs, xs, "k-", linewidth=1, label="y = x")
    worst = rows[errors.index(max(errors))]
    worst_x = worst.num("measured_step_ms")
    right_half = (math.log(worst_x / lo) / math.log(hi / lo)) > 0.5 if log else worst_x > (lo + hi) / 2
    ax.annotate(f"worst: {group_label(study.swept, [worst.swept[k] for k in study.swept], study.swept, worst.label)}"
                f"\n{error_pct(worst):+.1f} %", (worst_x, worst.num("predicted_step_ms")), textcoords="offset points",
                xytext=(-8 if right_half else 8, 10), ha="right" if right_half else "left", fontsize="x-small",
                arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.6})
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("measured step (ms, median)")
    ax.set_ylabel("predicted step (ms)")
    grid(ax)
    ax.legend(loc="lower right", fontsize="small")  # points lie along y = x: this corner stays free
    ax.set_title(f"{title}: predicted against measured step\n|error| median {statistics.median(errors):.1f} %, "
                 f"max {max(errors):.1f} % ({len(rows)} point{'s' if len(rows) > 1 else ''})", fontsize="medium")
    return fig


def plot_train_cost(study, plt, title):
    if not study.has("time_to_train_h"):
        raise Skip("no ok point has a time_to_train_h (the study has no train_for:)")
    keys = [k for k in study.swept if not k.startswith("parallel.") and k != "nodes"]
    # The layout keys worth writing beside a point: the GPU count already says nodes and replicas.
    axis_keys = world_axis_keys(study)
    layout_keys = [k for k in study.swept if k not in keys and k not in axis_keys]
    lines = []  # (values, [(world, fastest row)]); a layout that does not fit in memory is no candidate
    candidates = [r for r in study.rows if r.num("time_to_train_h") is not None and r.fits is not False]
    if not candidates:
        raise Skip("no ok point with a time_to_train_h fits in memory")
    for values, members in group_rows(candidates, keys).items():
        fastest = {}
        for r in members:
            w = r.num("world")
            if w not in fastest or r.num("time_to_train_h") < fastest[w].num("time_to_train_h"):
                fastest[w] = r
        lines.append((values, sorted(fastest.items())))
    platforms = list(dict.fromkeys(p for c, p, _ in study.costs if study.has(c)))
    n = 1 + len(platforms)
    ncols = min(n, 2)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 4.4 * nrows), squeeze=False, layout="constrained")
    axes = [ax for row in axes for ax in row]
    annotate = len(lines) <= 2 and bool(layout_keys)

    def draw(ax, col, linestyle, label_suffix, note_layout):
        ys_all = []
        for i, (values, points) in enumerate(lines):
            pts = [(w, r) for w, r in points if r.num(col) is not None]
            if not pts:
                continue
            xs, ys = [w for w, _ in pts], [r.num(col) for _, r in pts]
            ys_all += ys
            ax.plot(xs, ys, linestyle=linestyle, label=group_label(keys, values, study.swept, "fastest layout")
                    + label_suffix, **style(i))
            if note_layout:
                for (w, r), y in zip(pts, ys):
                    ax.annotate(group_label(layout_keys, [r.swept[k] for k in layout_keys], study.swept),
                                (w, y), textcoords="offset points", xytext=(5, 4), fontsize="x-small")
        return ys_all

    worlds = [w for _, points in lines for w, _ in points]
    ax_time = axes[0]
    ys = draw(ax_time, "time_to_train_h", "-", "", annotate)
    ax_time.set_ylabel("time to train (hours)")
    ax_time.set_title("time to train, fastest layout that fits per GPU count" +
                      (" (beside each point)" if annotate else ""), fontsize="medium")
    log_y(ax_time, ys)
    for ax, platform in zip(axes[1:], platforms):
        ys = []
        for col, p, kind in study.costs:
            if p == platform and study.has(col):
                ys += draw(ax, col, "--" if kind == "spot" else "-", "" if kind == "local" else f" ({kind})", False)
        ax.set_ylabel("cost to train (price units)")
        kinds = [k for c, p, k in study.costs if p == platform and study.has(c)]
        ax.set_title(f"cost on {platform}: " + ("local cluster" if kinds == ["local"] else
                     " (solid), ".join(kinds) + (" (dashed)" if "spot" in kinds else "")), fontsize="medium")
        log_y(ax, ys)
    for ax in axes[:n]:
        log2_axis(ax, worlds, "GPUs (world size)")
        grid(ax)
    for ax in axes[n:]:
        ax.set_visible(False)
    handles = ax_time.get_legend_handles_labels()[0]
    if len(lines) > 1 or n == 1:
        legend(fig, axes[:n] if n > 1 else ax_time, handles)
    fig.suptitle(f"{title}: time and cost to train")
    return fig


def plot_input_size(study, plt, title):
    if "train.imgsz" not in study.swept:
        raise Skip("train.imgsz is not swept")
    has_ips, has_mem = study.has("images_per_s"), study.has("predicted_peak_activation_bytes")
    if not has_ips and not has_mem:
        raise Skip("no ok point has images_per_s or predicted_peak_activation_bytes")
    keys = [k for k in study.swept if k != "train.imgsz"]
    panels = (["images_per_s"] if has_ips else []) + (["predicted_peak_activation_bytes"] if has_mem else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.8), squeeze=False,
                             layout="constrained")
    axes = list(axes[0])
    from matplotlib.lines import Line2D
    sizes = sorted({float(r.swept["train.imgsz"]) for r in study.rows})
    misfits = False
    for ax, col in zip(axes, panels):
        scale = GIB if col.endswith("_bytes") else 1.0
        ys_all = []
        for i, (values, members) in enumerate(group_rows(study.rows, keys).items()):
            pts = sorted((float(r.swept["train.imgsz"]), r) for r in members if r.num(col) is not None)
            if not pts:
                continue
            xs, ys = [x for x, _ in pts], [r.num(col) / scale for _, r in pts]
            ys_all += ys
            ax.plot(xs, ys, label=group_label(keys, values, study.swept), **style(i))
            bad = [(x, y) for (x, r), y in zip(pts, ys) if r.fits is False]
            if bad:
                misfits = True
                ax.scatter([x for x, _ in bad], [y for _, y in bad], marker="x", s=70, color="red", zorder=4)
        if col == "predicted_peak_activation_bytes":
            for gib in sorted({r.num("memory_bytes_per_gpu") / GIB for r in study.rows
                               if r.num("memory_bytes_per_gpu") is not None}):
                ax.axhline(gib, color="red", linestyle="--", linewidth=1)
                ax.annotate(f"GPU memory {gib:.0f} GiB", (sizes[0], gib), textcoords="offset points",
                            xytext=(0, 4), fontsize="x-small", color="red")
                ys_all.append(gib)
            ax.set_ylabel("predicted peak activation memory per rank (GiB)")
            ax.set_title("activation memory", fontsize="medium")
        else:
            ax.set_ylabel("images/s")
            ax.set_title("throughput", fontsize="medium")
        log_y(ax, ys_all)
        ax.set_xticks(sizes)
        ax.set_xticklabels([f"{s:g}" for s in sizes])
        ax.set_xlabel("input size (train.imgsz, pixels)")
        grid(ax)
    handles = axes[0].get_legend_handles_labels()[0]
    if misfits:
        handles.append(Line2D([], [], color="red", marker="x", linestyle="", label="does not fit in memory"))
    legend(fig, axes if len(axes) > 1 else axes[0], handles)
    fig.suptitle(f"{title}: input size against throughput and memory")
    return fig


FIGURES = (("scaling.png", plot_scaling), ("bubble.png", plot_bubble), ("fidelity.png", plot_fidelity),
           ("train_cost.png", plot_train_cost), ("input_size.png", plot_input_size))


# --- the command ---------------------------------------------------------------------------------

def add_arguments(parser):
    parser.add_argument("points", help="the study's points.csv")
    parser.add_argument("--out", help="folder for the PNGs (default: the CSV's folder)")
    parser.add_argument("--title", help="title prefix (default: the study's folder name)")


def run(args, pyplot):
    """Draws the figures; pyplot() gives matplotlib.pyplot (after the input is known good)."""
    study = read_study(args.points)
    folder = os.path.dirname(os.path.abspath(args.points))
    out = args.out if args.out is not None else os.path.dirname(args.points) or "."
    title = args.title if args.title is not None else os.path.basename(folder)
    plt = pyplot()
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        print(f"{out}: cannot create: {e.strerror or e}", file=sys.stderr)
        return 2
    n_all = len(study.rows) + sum(study.not_ok.values())
    if study.not_ok:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(study.not_ok.items()))
        print(f"left out {sum(study.not_ok.values())} of {n_all} points not ok ({counts})")
    if study.incomplete_last:
        print(f"{args.points}: left out the last line, written only in part (the study stopped while writing it)")
    for name, draw in FIGURES:
        if not study.rows:
            print(f"skipped {name}: no ok point")
            continue
        try:
            fig = draw(study, plt, title)
        except Skip as e:
            print(f"skipped {name}: {e}")
            continue
        path = os.path.join(out, name)
        try:
            fig.savefig(path, dpi=DPI, bbox_inches="tight")
        except OSError as e:
            print(f"{path}: cannot write: {e.strerror or e}", file=sys.stderr)
            return 2
        finally:
            plt.close(fig)
        print(f"wrote {path}")
    return 0

