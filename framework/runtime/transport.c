#include "framework/runtime/transport.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "framework/core/clock.h"
#include "framework/core/poll_sleep.h"
#include "framework/runtime/failure.h"

void transport_wait(Transport *t, TransportRequest *r, const char *what) {
    if (t->ops->test(t, r)) return;
    failure_wait_begin(what);
    double start = clock_monotonic_s();
    long sleep_ns = POLL_SLEEP_FIRST_NS;
    for (;;) {
        poll_sleep(&sleep_ns);
        if (t->ops->test(t, r)) break;
        if (t->timeout_s > 0 && clock_monotonic_s() - start > t->timeout_s) {
            const Topology *p = &t->topo;
            fprintf(stderr, "yolopipe: rank %d (pipeline rank %d, replica %d): timed out after %g s waiting for %s\n",
                    p->world_rank, p->pipeline_rank, p->replica, t->timeout_s, what);
            t->ops->abort(t, 1);
        }
    }
    failure_wait_end();
}

enum { GROUP_RANKS_NAMED = 8 };  // a collective's message lists at most this many ranks

static const char *const group_names[TRANSPORT_GROUP_COUNT] = {"world", "pipeline", "replicas"};

// snprintf at buf + *used that keeps *used within n - 1 when the text is cut.
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t n, size_t *used, const char *fmt, ...) {
    if (*used + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *used, n - *used, fmt, ap);
    va_end(ap);
    if (w > 0) *used = *used + (size_t)w < n ? *used + (size_t)w : n - 1;
}

char *transport_describe_group(const Transport *t, TransportGroup group, char *buf, size_t n) {
    YP_CHECK(group >= 0 && group < TRANSPORT_GROUP_COUNT && n > 0);
    const Topology *p = &t->topo;
    int size = group == TRANSPORT_WORLD ? p->world_size : group == TRANSPORT_PIPELINE ? p->pipeline_size : p->replicas;
    size_t used = 0;
    buf[0] = '\0';
    append(buf, n, &used, "the %s group (world rank%s", group_names[group], size == 1 ? "" : "s");
    // Consecutive ranks on one host are listed together, then the host: "0, 1 on a; 2 on b".
    const char *run_host = NULL;
    for (int i = 0; i < size && i < GROUP_RANKS_NAMED; i++) {
        int w = group == TRANSPORT_WORLD      ? i
                : group == TRANSPORT_PIPELINE ? topology_world_rank(p, i, p->replica)
                                              : topology_world_rank(p, p->pipeline_rank, i);
        const char *host = topology_host(p, w);
        bool new_run = i > 0 && host && strcmp(host, run_host) != 0;
        if (new_run) append(buf, n, &used, " on %s;", run_host);
        append(buf, n, &used, "%s %d", i == 0 || new_run ? "" : ",", w);
        run_host = host;
    }
    if (run_host) append(buf, n, &used, " on %s", run_host);
    if (size > GROUP_RANKS_NAMED) append(buf, n, &used, "; ... %d ranks in all", size);
    append(buf, n, &used, ")");
    return buf;
}

int transport_max_tag(const Transport *t) { return t->max_tag; }

void transport_destroy(Transport *t) {
    if (t) t->ops->destroy(t);
}

void transport_wait_group(Transport *t, TransportRequest *r, TransportGroup group, const char *fmt, ...) {
    char what[384], ranks[192];
    va_list ap;
    va_start(ap, fmt);
    int used = vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (used >= 0 && (size_t)used < sizeof what)
        snprintf(what + used, sizeof what - (size_t)used, " over %s",
                 transport_describe_group(t, group, ranks, sizeof ranks));
    transport_wait(t, r, what);
}
