"""`yolopipe_plot.py run RUNDIR`: a training run's figures, drawn as Ultralytics 8.4 draws them, from the
files yolopipe writes into the run directory at each validation:

  results.csv           epoch, then loss ("loss" in the name) and metric ("metric" in the name) columns
  curves.csv            detection only: one row per curve and class with ground truth, after '#' comment
                        lines: kind (pr: precision against recall; p, r, f1: against confidence), class
                        index, class name, the class's AP50, then 1000 values at x = i / 999
  confusion_matrix.csv  after '#' comment lines, a header whose first cell is the task (detect |
                        classify) followed by the class names (detect: then "background"), then one row
                        per predicted class: its name and the counts for each true class

Figures (into RUNDIR, each replaced atomically): results.png; detection also PR_curve.png,
F1_curve.png, P_curve.png and R_curve.png; both confusion_matrix.png and
confusion_matrix_normalized.png."""
import csv
import io
import os

from plot_study import UserError, parse_number

CURVE_POINTS = 1000
CURVE_KINDS = ("pr", "p", "r", "f1")


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUNDIR", help="the run directory (results.csv, curves.csv, "
                        "confusion_matrix.csv)")


def read_text(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None


def number(text, path, line, column):
    """The finite number in a field (plot_study's rule), which here must not be empty."""
    value = parse_number(text, f"{path}:{line}", column)
    if value is None:
        raise UserError(f"{path}:{line}: column '{column}' is empty")
    return value


def records(path):
    """The CSV records of path after its '#' comment lines, each with its 1-based line number."""
    out = []
    for i, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            try:
                out.append((i, next(csv.reader(io.StringIO(line)))))
            except (csv.Error, StopIteration) as e:
                raise UserError(f"{path}:{i}: not a CSV line ({e})") from None
    if not out:
        raise UserError(f"{path}: no data")
    return out


def read_results(path):
    """results.csv: (header, columns as lists of floats)."""
    rows = records(path)
    header = rows[0][1]
    columns = [[] for _ in header]
    for line, fields in rows[1:]:
        if len(fields) != len(header):
            raise UserError(f"{path}:{line}: {len(fields)} fields, the header has {len(header)}")
        for c, text in enumerate(fields):
            columns[c].append(number(text, path, line, header[c]))
    if not columns[0]:
        raise UserError(f"{path}: a header and no epoch")
    return header, columns


def read_curves(path):
    """curves.csv: {kind: [(class index, name, ap50, values)]}, rows in file order."""
    curves = {k: [] for k in CURVE_KINDS}
    rows = records(path)
    header = rows[0][1]
    if len(header) != 4 + CURVE_POINTS:
        raise UserError(f"{path}:{rows[0][0]}: {len(header)} columns in the header, expected {4 + CURVE_POINTS}")
    for line, fields in rows[1:]:
        if len(fields) != 4 + CURVE_POINTS:
            raise UserError(f"{path}:{line}: {len(fields)} fields, expected {4 + CURVE_POINTS}")
        kind = fields[0]
        if kind not in curves:
            raise UserError(f"{path}:{line}: unknown curve '{kind}' (pr, p, r or f1)")
        values = [number(v, path, line, header[4 + i]) for i, v in enumerate(fields[4:])]
        curves[kind].append((int(number(fields[1], path, line, header[1])), fields[2],
                             number(fields[3], path, line, header[3]), values))
    n = len(curves["pr"])
    if any(len(rows) != n for rows in curves.values()):
        raise UserError(f"{path}: the pr, p, r and f1 curves have different numbers of rows")
    return curves


def read_confusion(path):
    """confusion_matrix.csv: (task, names of the rows and columns, matrix as lists of floats)."""
    rows = records(path)
    line, header = rows[0]
    task, names = header[0], header[1:]
    if task not in ("detect", "classify"):
        raise UserError(f"{path}:{line}: the header starts with '{task}', expected detect or classify")
    if not names or (task == "detect" and names[-1] != "background"):
        raise UserError(f"{path}:{line}: no class names" if not names else
                        f"{path}:{line}: a detection matrix ends with the background column")
    if len(rows) - 1 != len(names):
        raise UserError(f"{path}: {len(rows) - 1} rows for {len(names)} columns")
    matrix = []
    for line, fields in rows[1:]:
        if len(fields) != len(names) + 1:
            raise UserError(f"{path}:{line}: {len(fields)} fields, the header has {len(names) + 1}")
        matrix.append([number(v, path, line, names[i]) for i, v in enumerate(fields[1:])])
    return task, names, matrix


# --- drawing, as ultralytics/utils/{plotting,metrics}.py draw ---------------------------------------

def smooth(y, f=0.1):
    """Ultralytics' smooth: a box filter of round(len * f * 2) // 2 + 1 points, the ends padded."""
    import numpy as np
    nf = round(len(y) * f * 2) // 2 + 1
    p = np.ones(nf // 2)
    return np.convolve(np.concatenate((p * y[0], y, p * y[-1])), np.ones(nf) / nf, mode="valid")


def gaussian_filter1d(y, sigma=3, truncate=4.0):
    """results.png's dotted line: scipy's gaussian_filter1d with 'reflect' ends, as Ultralytics computes it."""
    import numpy as np
    radius = int(truncate * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(np.asarray(y, dtype=float), radius, mode="symmetric"), kernel, mode="valid")


def save(fig, path, dpi):
    """Writes the figure as path.tmp then renames it: a viewer never sees half a PNG."""
    tmp = path + ".tmp"
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None
    print(f"wrote {path}")


def plot_results(plt, header, columns, out):
    loss = [i for i, c in enumerate(header) if "loss" in c]
    metric = [i for i, c in enumerate(header) if "metric" in c]
    lm, mm = len(loss) // 2, (len(metric) + 1) // 2
    order = loss[:lm] + metric[:mm] + loss[lm:] + metric[mm:]
    if not order:
        raise UserError(f"{out}: results.csv has no loss or metric column")
    fig, ax = plt.subplots(2, (len(order) + 1) // 2, figsize=(len(order) + 2, 6), tight_layout=True, squeeze=False)
    ax = ax.ravel()
    ax[-1].set_visible(len(order) % 2 == 0)
    x = columns[0]
    for k, c in enumerate(order):
        y = columns[c]
        ax[k].plot(x, y, marker=".", label="results", linewidth=2, markersize=8)
        ax[k].plot(x, gaussian_filter1d(y), ":", label="smooth", linewidth=2)
        ax[k].set_title(header[c], fontsize=12)
    ax[1 if len(order) > 1 else 0].legend()
    save(fig, out, 200)
    plt.close(fig)


def plot_pr(plt, rows, out):
    import numpy as np
    px = np.linspace(0, 1, CURVE_POINTS)
    fig, ax = plt.subplots(1, 1, figsize=(9, 6), tight_layout=True)
    py = np.array([r[3] for r in rows]).reshape(-1, CURVE_POINTS)
    ap50 = np.array([r[2] for r in rows])
    if 0 < len(rows) < 21:
        for _, name, ap, y in rows:
            ax.plot(px, y, linewidth=1, label=f"{name} {ap:.3f}")
    elif rows:
        ax.plot(px, py.T, linewidth=1, color="gray")
    mean = py.mean(0) if rows else np.zeros(CURVE_POINTS)
    ax.plot(px, mean, linewidth=3, color="blue", label=f"all classes {ap50.mean() if rows else 0:.3f} mAP@0.5")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    ax.set_title("Precision-Recall Curve")
    save(fig, out, 250)
    plt.close(fig)


def plot_mc(plt, rows, out, ylabel):
    import numpy as np
    px = np.linspace(0, 1, CURVE_POINTS)
    fig, ax = plt.subplots(1, 1, figsize=(9, 6), tight_layout=True)
    py = np.array([r[3] for r in rows]).reshape(-1, CURVE_POINTS)
    if 0 < len(rows) < 21:
        for _, name, _, y in rows:
            ax.plot(px, y, linewidth=1, label=name)
    elif rows:
        ax.plot(px, py.T, linewidth=1, color="gray")
    y = smooth(py.mean(0) if rows else np.zeros(CURVE_POINTS), 0.1)
    ax.plot(px, y, linewidth=3, color="blue", label=f"all classes {y.max():.2f} at {px[y.argmax()]:.3f}")
    ax.set_xlabel("Confidence")
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    ax.set_title(f"{ylabel}-Confidence Curve")
    save(fig, out, 250)
    plt.close(fig)


def plot_confusion(plt, task, names, matrix, normalize, out):
    """ConfusionMatrix.plot: columns (true classes) normalised, cells under 0.005 left blank."""
    import warnings
    import numpy as np
    m = np.array(matrix, dtype=float)
    array = m / ((m.sum(0).reshape(1, -1) + 1e-9) if normalize else 1)
    array[array < 0.005] = np.nan
    fig, ax = plt.subplots(1, 1, figsize=(12, 9))
    labels = list(names)
    n_cls = len(labels) - (task == "detect")
    if n_cls >= 100:  # every k-th class, and the background
        k = max(2, n_cls // 60)
        keep = np.r_[0:n_cls:k, n_cls:len(array)]
        labels = [labels[i] for i in keep]
        array = array[np.ix_(keep, keep)]
    nc = len(labels)
    ticklabels = labels if 0 < nc < 99 else "auto"
    ticks = np.arange(nc)
    tick_fontsize, label_fontsize = max(6, 15 - 0.1 * nc), max(6, 12 - 0.1 * nc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an all-NaN matrix
        im = ax.imshow(array, cmap="Blues", vmin=0.0, interpolation="none")
        ax.xaxis.set_label_position("bottom")
        if nc < 30:
            threshold = 0.45 * (1 if normalize else np.nanmax(array) if np.isfinite(array).any() else 0)
            for i in range(nc):
                for j in range(nc):
                    val = array[i, j]
                    if np.isnan(val):
                        continue
                    ax.text(j, i, f"{val:.2f}" if normalize else f"{int(val)}", ha="center", va="center",
                            fontsize=10, color="white" if val > threshold else "black")
        cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.05)
    title = "Confusion Matrix" + " Normalized" * normalize
    ax.set_xlabel("True", fontsize=label_fontsize, labelpad=10)
    ax.set_ylabel("Predicted", fontsize=label_fontsize, labelpad=10)
    ax.set_title(title, fontsize=label_fontsize, pad=20)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.tick_params(axis="x", bottom=True, top=False, labelbottom=True, labeltop=False)
    ax.tick_params(axis="y", left=True, right=False, labelleft=True, labelright=False)
    if ticklabels != "auto":
        ax.set_xticklabels(ticklabels, fontsize=tick_fontsize, rotation=90, ha="center")
        ax.set_yticklabels(ticklabels, fontsize=tick_fontsize)
    for s in ("left", "right", "bottom", "top"):
        ax.spines[s].set_visible(False)
        cbar.ax.spines[s].set_visible(False)
    cbar.ax.spines["outline"].set_visible(False)
    fig.subplots_adjust(left=0, right=0.84, top=0.94, bottom=max(0.1, 0.25 - 0.001 * nc))
    save(fig, out, 250)
    plt.close(fig)


def run(args, pyplot):
    """Draws the figures; pyplot() gives matplotlib.pyplot (after the input is known good)."""
    d = args.run_dir
    if not os.path.isdir(d):
        raise UserError(f"{d}: not a run directory" if os.path.exists(d) else f"{d}: no such directory")
    header, columns = read_results(os.path.join(d, "results.csv"))
    task, names, matrix = read_confusion(os.path.join(d, "confusion_matrix.csv"))
    curves = read_curves(os.path.join(d, "curves.csv")) if task == "detect" else None
    plt = pyplot()
    plt.rcParams.update({"font.size": 11})  # Ultralytics' plt_settings
    plot_results(plt, header, columns, os.path.join(d, "results.png"))
    if curves is not None:
        plot_pr(plt, curves["pr"], os.path.join(d, "PR_curve.png"))
        for kind, name, label in (("f1", "F1_curve.png", "F1"), ("p", "P_curve.png", "Precision"),
                                  ("r", "R_curve.png", "Recall")):
            plot_mc(plt, curves[kind], os.path.join(d, name), label)
    for normalize in (True, False):
        plot_confusion(plt, task, names, matrix, normalize,
                       os.path.join(d, "confusion_matrix_normalized.png" if normalize else "confusion_matrix.png"))
    return 0
