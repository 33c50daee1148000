#include "framework/train/progress.h"

#include <unistd.h>

void progress_init(Progress *p, FILE *out) {
    *p = (Progress){.out = out, .live = isatty(fileno(out))};
}

int64_t progress_resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long long pages_total = 0, pages_resident = 0;
    int got = fscanf(f, "%lld %lld", &pages_total, &pages_resident);
    fclose(f);
    return got == 2 ? pages_resident * (int64_t)sysconf(_SC_PAGESIZE) : 0;
}

void progress_step(Progress *p, const ProgressStep *s) {
    bool last = s->step == s->steps;
    if (!p->live && !last && s->step % PROGRESS_PLAIN_EVERY) return;
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
