#include "framework/train/progress.h"

#include <unistd.h>

#include "framework/core/launcher.h"

// Under mpirun a log would otherwise get the rewritten line at every step (launcher.h says why).
void progress_init(Progress *p, FILE *out) { *p = (Progress){.out = out, .live = launcher_live_terminal(fileno(out))}; }

int64_t progress_resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long long pages_total = 0, pages_resident = 0;
    int got = fscanf(f, "%lld %lld", &pages_total, &pages_resident);
    fclose(f);
    return got == 2 ? pages_resident * (int64_t)sysconf(_SC_PAGESIZE) : 0;
}

// A plain line at the step that completes each quarter of the epoch (every step when there are
// fewer steps than lines), so an epoch of any length logs PROGRESS_PLAIN_PER_EPOCH lines.
static bool progress_plain_due(const ProgressStep *s) {
    int64_t n = PROGRESS_PLAIN_PER_EPOCH;
    return s->step == s->steps || s->step * n / s->steps > (s->step - 1) * n / s->steps;
}

void progress_step(Progress *p, const ProgressStep *s) {
    bool last = s->step == s->steps;
    if (!p->live && !progress_plain_due(s)) return;
    char losses[96];
    if (s->classify) snprintf(losses, sizeof losses, "loss %.4f", s->ce);
    else snprintf(losses, sizeof losses, "box %.4f  cls %.4f  dfl %.4f  inst %4lld", s->box, s->cls, s->dfl,
                  (long long)s->instances);
    char skipped[40] = "";
    if (s->skipped) snprintf(skipped, sizeof skipped, "  skipped %lld", (long long)s->skipped);
    fprintf(p->out, "%sepoch %lld/%lld  step %lld/%lld  %s  size %lld  %.1f img/s  lr %.5f  mem %.0fM%s%s",
            p->live ? "\r\033[K" : "", (long long)s->epoch, (long long)s->epochs, (long long)s->step,
            (long long)s->steps, losses, (long long)s->imgsz, s->images_per_s, s->lr,
            (double)progress_resident_bytes() / (1 << 20), skipped, p->live && !last ? "" : "\n");
    p->line_open = p->live && !last;
    fflush(p->out);
}

void progress_end_line(Progress *p) {
    if (p->line_open) fputc('\n', p->out);
    p->line_open = false;
}
