// The run directory's curves (world rank 0, output.plots): at each validation curves.csv (detection)
// and confusion_matrix.csv, then `yolopipe_plot.py run RUNDIR` in the background, which draws
// results.png, the PR/F1/P/R curves and the confusion matrices from them and results.csv.
//
// curves.csv: '#' comment lines, the header `kind,class,name,ap50,y0,...,y999`, then per kind (pr:
// the precision envelope against recall; p, r, f1: against confidence; all at IoU 0.5) one row per
// class with ground truth: class index, quoted class name, the class's AP50 and the 1000 values at
// x = i / 999 (DetectCurves).
// confusion_matrix.csv: '#' comment lines, the header `detect|classify,"name",...` (detect: then
// "background"), then one row per predicted class: its quoted name and the counts of each true
// class (ConfusionMatrix, [predicted][true]).
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framework/core/fsutil.h"
#include "framework/core/plot_script.h"
#include "framework/train/trainer_internal.h"

struct TrainerCurves {
    ConfusionMatrix *classify;  // classification's top-1 matrix, filled by trainer_score
    PlotScript script;
    bool looked;        // plot_script_find was tried (found: usable)
    bool usable;
    bool pending;       // a validation's figures wait for the running script to end
    bool failed_said;   // the one notice for a failed drawing was printed
};

static TrainerCurves *trainer_curves(Trainer *t) {
    if (!t->curves) t->curves = yp_calloc(1, sizeof *t->curves);
    return t->curves;
}

ConfusionMatrix *trainer_curves_classify_matrix(Trainer *t) {
    if (!t->lead || !t->classify) return NULL;
    TrainerCurves *c = trainer_curves(t);
    if (!c->classify) c->classify = confusion_create(t->spec->nc, false);
    confusion_reset(c->classify);
    return c->classify;
}

// A class name as one CSV field: always quoted (so that a name starting with '#' is no comment and
// commas stay inside), quotes doubled, line breaks made spaces.
static void put_name(FILE *f, const Trainer *t, int64_t c) {
    const char *name = t->dataset->names ? t->dataset->names[c] : NULL;
    if (!name) {
        fprintf(f, "\"%lld\"", (long long)c);
        return;
    }
    fputc('"', f);
    for (const char *p = name; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p == '\n' || *p == '\r' ? ' ' : *p, f);
    }
    fputc('"', f);
}

static void write_curves(FILE *f, const Trainer *t, const DetectSummary *s) {
    fprintf(f, "# yolopipe validation curves (Ultralytics ap_per_class, IoU 0.5), epoch %lld\n"
               "# kind pr: precision envelope against recall; p, r, f1: against confidence; values at x = i/999\n"
               "kind,class,name,ap50",
            (long long)t->at.epoch);
    for (int i = 0; i < DETECT_CURVE_POINTS; i++) fprintf(f, ",y%d", i);
    fputc('\n', f);
    const struct {
        const char *kind;
        const double *y;
    } kinds[] = {{"pr", s->curves.pr}, {"p", s->curves.p}, {"r", s->curves.r}, {"f1", s->curves.f1}};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
        for (int64_t row = 0; row < s->curves.n_rows; row++) {
            int64_t c = s->curves.cls[row];
            fprintf(f, "%s,%lld,", kinds[k].kind, (long long)c);
            put_name(f, t, c);
            fprintf(f, ",%.9g", s->classes[c].ap50);
            const double *y = kinds[k].y + row * DETECT_CURVE_POINTS;
            for (int i = 0; i < DETECT_CURVE_POINTS; i++) fprintf(f, ",%.9g", y[i]);
            fputc('\n', f);
        }
}

static void write_confusion(FILE *f, const Trainer *t, const ConfusionMatrix *cm) {
    bool detect = cm->n > cm->nc;
    fprintf(f, "# yolopipe confusion matrix (Ultralytics ConfusionMatrix), epoch %lld: rows predicted, columns true\n",
            (long long)t->at.epoch);
    if (detect)
        fprintf(f, "# detections with score > %g matched to ground truth at IoU > %g; background last\n",
                (double)cm->conf, (double)cm->iou);
    fputs(detect ? "detect" : "classify", f);
    for (int64_t c = 0; c < cm->nc; c++) {
        fputc(',', f);
        put_name(f, t, c);
    }
    if (detect) fputs(",\"background\"", f);
    fputc('\n', f);
    for (int64_t p = 0; p < cm->n; p++) {
        if (p < cm->nc) put_name(f, t, p);
        else fputs("\"background\"", f);
        for (int64_t c = 0; c < cm->n; c++) fprintf(f, ",%lld", (long long)cm->counts[p * cm->n + c]);
        fputc('\n', f);
    }
}

// Writes <run_dir>/<name> atomically with `write`; a failure is one line on stderr (the run goes on).
static bool write_run_file(const Trainer *t, const char *name, void (*write)(FILE *, const Trainer *, const void *),
                           const void *what) {
    char path[PATH_MAX];
    Error err = {0};
    FsAtomicFile *af = NULL;
    bool ok = path_format(path, sizeof path, &err, "%s/%s", t->run_dir, name) && fs_atomic_file_open(path, &af, &err);
    if (ok) {
        write(fs_atomic_file_stream(af), t, what);
        ok = fs_atomic_file_commit(af, &err);
    }
    if (!ok) fprintf(stderr, "yolopipe: cannot write %s: %s\n", name, err.message);
    return ok;
}

static void write_curves_any(FILE *f, const Trainer *t, const void *s) { write_curves(f, t, s); }
static void write_confusion_any(FILE *f, const Trainer *t, const void *cm) { write_confusion(f, t, cm); }

// Starts the script on the run directory; the first time, finds it (one notice when it cannot).
static void start_drawing(Trainer *t, TrainerCurves *c) {
    if (!c->looked) {
        c->looked = true;
        char self[PATH_MAX], log_path[PATH_MAX], notice[PATH_MAX + 128];
        Error err = {0};
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = '\0';
        c->usable = n > 0 && path_format(log_path, sizeof log_path, &err, "%s/plots.log", t->run_dir) &&
                    plot_script_find(self, log_path, &c->script, notice, sizeof notice);
        if (!c->usable)
            fprintf(t->out, "plots: %s; no results.png or curves for this run (later: python3 yolopipe_plot.py run %s)\n",
                    n > 0 ? (err.message[0] ? err.message : notice) : "cannot find this program (/proc/self/exe)",
                    t->run_dir);
    }
    if (!c->usable) return;
    const char *args[] = {"run", t->run_dir, NULL};
    Error err = {0};
    if (!plot_script_start(&c->script, args, &err)) {
        fprintf(t->out, "plots: %s; no more figures for this run\n", err.message);
        c->usable = false;
    }
}

// Reaps a script that has ended; one notice the first time one failed.
static bool drawing_idle(Trainer *t, TrainerCurves *c, bool wait) {
    bool failed = false, idle;
    if (wait) idle = true, failed = !plot_script_wait(&c->script, 600);
    else idle = plot_script_poll(&c->script, &failed);
    if (failed && !c->failed_said) {
        c->failed_said = true;
        fprintf(t->out, "plots: %s failed (see %s)\n", c->script.script, c->script.log_path);
    }
    return idle;
}

void trainer_curves_after_validation(Trainer *t, const ValResult *val) {
    if (!t->lead || !t->cfg->output.plots || (!val->detect && !val->classify.n_images)) return;
    TrainerCurves *c = trainer_curves(t);
    const ConfusionMatrix *cm = val->detect ? val->detect->confusion : val->classify.confusion;
    if (!cm) return;
    bool ok = write_run_file(t, "confusion_matrix.csv", write_confusion_any, cm);
    if (val->detect) ok = write_run_file(t, "curves.csv", write_curves_any, val->detect) && ok;
    if (!ok) return;
    // Training never waits for a drawing: while one runs, the next waits for the end of the run.
    if (!drawing_idle(t, c, false)) {
        c->pending = true;
        return;
    }
    c->pending = false;
    start_drawing(t, c);
}

void trainer_curves_finish(Trainer *t) {
    TrainerCurves *c = t->curves;
    if (!c) return;
    drawing_idle(t, c, true);
    if (c->pending && c->usable) {
        c->pending = false;
        start_drawing(t, c);
        drawing_idle(t, c, true);
    }
}

void trainer_curves_destroy(Trainer *t) {
    TrainerCurves *c = t->curves;
    if (!c) return;
    plot_script_wait(&c->script, 60);  // never a zombie, even when the run failed
    confusion_destroy(c->classify);
    free(c);
    t->curves = NULL;
}
