// The points of a study: the sweep's product (first axis slowest) and the explicit points, each times
// the cluster's node counts, with the settings the study derives, filtered by where: and checked by
// loading the base experiment with each point's settings. Every combination left out is reported
// once, with its reason.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/config/config.h"
#include "framework/study/study.h"
#include "framework/study/study_internal.h"

typedef struct Expansion {
    const StudyConfig *s;
    const ExperimentConfig *base;
    StudyPoints *out;
    int cap_points, cap_dropped;
    char **canonical;  // (out->n) each kept point's settings as one text, for spotting repeats
} Expansion;

static void setting_add(StudyPoint *pt, const char *key, const char *value, StudyPos pos) {
    pt->settings[pt->n_settings++] = (StudySetting){yp_strdup(key), yp_strdup(value), pos};
}

bool study_point_config_load(const StudyConfig *s, const StudyPoint *p, ExperimentConfig **out, Error *err) {
    char **args = yp_calloc((size_t)p->n_settings + 1, sizeof *args);
    for (int i = 0; i < p->n_settings; i++) args[i] = study_setting_arg(&p->settings[i]);
    bool ok = config_load(s->experiment, p->n_settings, args, out, err);
    for (int i = 0; i < p->n_settings; i++) free(args[i]);
    free(args);
    return ok;
}

static void point_clear(StudyPoint *pt) {
    study_settings_free(pt->n_settings, pt->settings);
    free(pt->label);
}

const char *study_point_value(const StudyPoint *pt, const char *key) {
    for (int i = pt->n_settings - 1; i >= 0; i--)
        if (!strcmp(pt->settings[i].key, key)) return pt->settings[i].value;
    return NULL;
}

// The integer the point gives `key`, else `fallback` (the base experiment's). False when the point's
// value is not an integer (config_load then says what is wrong with it).
static bool setting_int(const StudyPoint *pt, const char *key, int64_t fallback, int64_t *out) {
    const char *v = study_point_value(pt, key);
    if (!v) return *out = fallback, true;
    return yaml_text_int(v, out);
}

static void drop(Expansion *x, StudyPoint *pt, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void drop(Expansion *x, StudyPoint *pt, const char *fmt, ...) {
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    StudyPoints *out = x->out;
    if (out->n_dropped == x->cap_dropped) {
        x->cap_dropped = x->cap_dropped ? 2 * x->cap_dropped : 16;
        out->dropped = yp_realloc(out->dropped, (size_t)x->cap_dropped * sizeof *out->dropped);
    }
    out->dropped[out->n_dropped++] = study_printf("%s: %s", pt->label, reason);
    point_clear(pt);
}

// The text of one side of a constraint for this point: a derived value, the point's value of a
// swept key, or the literal itself.
static const char *operand_text(const Expansion *x, const StudySetting *const *values, const int64_t derived[],
                                const char *text, char *buf, size_t cap) {
    for (int i = 0; i < STUDY_DERIVED_COUNT; i++)
        if (!strcmp(text, study_derived_names[i])) {
            snprintf(buf, cap, "%lld", (long long)derived[i]);
            return buf;
        }
    int a = study_axis_index(x->s, text);
    return a >= 0 ? values[a]->value : text;
}

// Numbers compare as numbers, anything else as text (study_check_where allows only == and != there).
static bool constraint_holds(const Expansion *x, const StudyConstraint *c, const StudySetting *const *values,
                             const int64_t derived[]) {
    char lbuf[32], rbuf[32];
    const char *l = operand_text(x, values, derived, c->lhs, lbuf, sizeof lbuf);
    const char *r = operand_text(x, values, derived, c->rhs, rbuf, sizeof rbuf);
    double dl, dr;
    int cmp = yaml_text_number(l, &dl) && yaml_text_number(r, &dr) ? (dl > dr) - (dl < dr) : strcmp(l, r);
    switch (c->op) {
    case STUDY_LT: return cmp < 0;
    case STUDY_LE: return cmp <= 0;
    case STUDY_EQ: return cmp == 0;
    case STUDY_NE: return cmp != 0;
    case STUDY_GE: return cmp >= 0;
    case STUDY_GT: return cmp > 0;
    }
    yp_fatal("unhandled comparison %d", (int)c->op);
}

static int compare_keys(const void *a, const void *b) {
    return strcmp((*(const StudySetting *const *)a)->key, (*(const StudySetting *const *)b)->key);
}

// The settings a point ends with (each key's last value), sorted by key, as one text: two points
// with the same text run the same experiment.
static char *canonical_text(const StudyPoint *pt) {
    const StudySetting **last = yp_calloc((size_t)pt->n_settings + 1, sizeof *last);
    int n = 0;
    for (int i = 0; i < pt->n_settings; i++)
        if (study_point_value(pt, pt->settings[i].key) == pt->settings[i].value) last[n++] = &pt->settings[i];
    qsort(last, (size_t)n, sizeof *last, compare_keys);
    char *text = NULL;
    size_t n_bytes = 0;
    FILE *f = open_memstream(&text, &n_bytes);
    YP_CHECK(f);
    for (int i = 0; i < n; i++) fprintf(f, "%s=%s\n", last[i]->key, last[i]->value);
    YP_CHECK(fclose(f) == 0);
    free(last);
    return text;
}

static char *point_label(const StudySetting *const *values, int n_values, int64_t node_count) {
    char *text = NULL;
    size_t n_bytes = 0;
    FILE *f = open_memstream(&text, &n_bytes);
    YP_CHECK(f);
    for (int i = 0; i < n_values; i++) fprintf(f, "%s%s=%s", i ? " " : "", values[i]->key, values[i]->value);
    if (node_count) fprintf(f, "%snodes=%lld", n_values ? " " : "", (long long)node_count);
    if (!n_values && !node_count) fputs("the base experiment", f);
    YP_CHECK(fclose(f) == 0);
    return text;
}

// One combination: the study's set:, then `values`, then what is derived; kept or dropped.
// node_count 0: no cluster node counts. `filtered`: where: applies (the sweep's product).
static void add_candidate(Expansion *x, const StudySetting *const *values, int n_values, int64_t node_count,
                          bool filtered, bool may_repeat) {
    const StudyConfig *s = x->s;
    StudyPoint pt = {.settings = yp_calloc((size_t)(s->n_set + n_values + 2), sizeof *pt.settings),
                     .label = point_label(values, n_values, node_count)};
    for (int i = 0; i < s->n_set; i++) setting_add(&pt, s->set[i].key, s->set[i].value, s->set[i].pos);
    for (int i = 0; i < n_values; i++) setting_add(&pt, values[i]->key, values[i]->value, values[i]->pos);

    int64_t stages, replicas = 0;
    bool integers = setting_int(&pt, "parallel.stages", x->base->parallel.stages, &stages) &&
                    (node_count || setting_int(&pt, "parallel.replicas", x->base->parallel.replicas, &replicas));
    if (integers) {  // otherwise config_load below says what is wrong
        char text[32];
        if (node_count) {
            pt.world = node_count * s->cluster.gpus_per_node;
            pt.nodes = node_count;
            if (stages < 1 || pt.world % stages) {
                drop(x, &pt, "%lld stages do not divide %lld GPUs", (long long)stages, (long long)pt.world);
                return;
            }
            snprintf(text, sizeof text, "%lld", (long long)(pt.world / stages));
            setting_add(&pt, "parallel.replicas", text, (StudyPos){0});
        } else {
            pt.world = stages * replicas;
            int64_t gpn = s->cluster.gpus_per_node;
            pt.nodes = s->cluster.present ? (pt.world + gpn - 1) / gpn : 1;
        }
        if (s->batch_per_gpu) {
            snprintf(text, sizeof text, "%lld", (long long)(s->batch_per_gpu * pt.world));
            setting_add(&pt, "train.batch", text, (StudyPos){0});
        }
        const int64_t derived[STUDY_DERIVED_COUNT] = {pt.world, pt.nodes, s->cluster.gpus_per_node};
        for (int i = 0; filtered && i < s->n_where; i++)
            if (!constraint_holds(x, &s->where[i], values, derived)) {
                drop(x, &pt, "excluded by where: %s", s->where[i].text);
                return;
            }
    }

    ExperimentConfig *cfg = NULL;
    Error e = {0};
    if (!study_point_config_load(s, &pt, &cfg, &e)) {
        drop(x, &pt, "%s", study_message_text(e.message));
        return;
    }
    // config_load reads integers as setting_int does, so it took the same stages and replicas.
    YP_CHECK(integers && cfg->parallel.stages * cfg->parallel.replicas == pt.world);
    config_destroy(cfg);

    char *canonical = canonical_text(&pt);
    for (int i = 0; may_repeat && i < x->out->n; i++)
        if (!strcmp(canonical, x->canonical[i])) {
            free(canonical);
            drop(x, &pt, "the same settings as point %d (%s)", i + 1, x->out->points[i].label);
            return;
        }
    StudyPoints *out = x->out;
    if (out->n == x->cap_points) {
        x->cap_points = x->cap_points ? 2 * x->cap_points : 16;
        out->points = yp_realloc(out->points, (size_t)x->cap_points * sizeof *out->points);
        x->canonical = yp_realloc(x->canonical, (size_t)x->cap_points * sizeof *x->canonical);
    }
    x->canonical[out->n] = canonical;
    out->points[out->n++] = pt;
}

// One combination at each cluster node count (once without them).
static void add_at_node_counts(Expansion *x, const StudySetting *const *values, int n_values, bool filtered,
                               bool may_repeat) {
    const StudyCluster *c = &x->s->cluster;
    if (!c->n_nodes) add_candidate(x, values, n_values, 0, filtered, may_repeat);
    for (int i = 0; i < c->n_nodes; i++) add_candidate(x, values, n_values, c->nodes[i], filtered, may_repeat);
}

bool study_points_expand(const StudyConfig *s, StudyPoints *out, Error *err) {
    *out = (StudyPoints){0};
    ExperimentConfig *base = NULL;
    if (!config_load(s->experiment, 0, NULL, &base, err)) return false;
    Expansion x = {.s = s, .base = base, .out = out};

    // The product: an odometer over the axes, the last one turning fastest. With neither axes nor
    // explicit points, the product of no axes is the one base point.
    if (s->n_axes || !s->n_points) {
        int *at = yp_calloc((size_t)s->n_axes + 1, sizeof *at);
        const StudySetting **values = yp_calloc((size_t)s->n_axes + 1, sizeof *values);
        for (bool more = true; more;) {
            for (int a = 0; a < s->n_axes; a++) values[a] = &s->axes[a].values[at[a]];
            add_at_node_counts(&x, values, s->n_axes, true, false);
            int a = s->n_axes - 1;
            while (a >= 0 && ++at[a] == s->axes[a].n_values) at[a--] = 0;
            more = a >= 0;
        }
        free(values);
        free(at);
    }
    // Explicit points, as written: where: does not filter them, but they may repeat a point.
    for (int p = 0; p < s->n_points; p++) {
        const StudyExplicitPoint *ep = &s->points[p];
        const StudySetting **values = yp_calloc((size_t)ep->n_settings, sizeof *values);
        for (int i = 0; i < ep->n_settings; i++) values[i] = &ep->settings[i];
        add_at_node_counts(&x, values, ep->n_settings, false, true);
        free(values);
    }

    for (int i = 0; i < out->n; i++) free(x.canonical[i]);
    free(x.canonical);
    config_destroy(base);
    if (out->n) return true;
    int n_tried = out->n_dropped;
    char first[600];
    snprintf(first, sizeof first, "%s", n_tried ? out->dropped[0] : "");
    study_points_clear(out);
    return error_at(err, s->path, 1, 1, "no points left: all %d combinations were dropped (the first: %s)", n_tried,
                    first);
}

void study_points_clear(StudyPoints *p) {
    for (int i = 0; i < p->n; i++) point_clear(&p->points[i]);
    free(p->points);
    for (int i = 0; i < p->n_dropped; i++) free(p->dropped[i]);
    free(p->dropped);
    *p = (StudyPoints){0};
}
