// The training progress output (framework/train/progress.h): on a terminal nobody launched through
// mpirun the line is rewritten in place; in a log (a file, or any terminal a launcher such as Open
// MPI hands its ranks) an epoch gets one plain line per quarter and its last step, with no carriage
// return or escape sequence (launcher_live_terminal decides, for synth too). Expected steps are
// worked out by hand from the rule.
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "framework/core/launcher.h"
#include "framework/train/progress.h"

static const char *const launcher_vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};

static void clear_launcher(void) {
    for (size_t i = 0; i < sizeof launcher_vars / sizeof *launcher_vars; i++) unsetenv(launcher_vars[i]);
}

// Runs an epoch of `steps` steps through a Progress on `out` and returns what it wrote (caller frees).
static char *run_epoch(Progress *p, FILE *out, int64_t steps) {
    for (int64_t s = 1; s <= steps; s++)
        progress_step(p, &(ProgressStep){.epoch = 1, .epochs = 1, .step = s, .steps = steps, .imgsz = 64});
    progress_end_line(p);
    long n = ftell(out);
    rewind(out);
    char *text = calloc((size_t)n + 1, 1);
    assert_int_equal(fread(text, 1, (size_t)n, out), (size_t)n);
    return text;
}

// The step numbers of the plain lines in text, space-separated.
static void plain_steps(const char *text, int64_t steps, char *got, size_t cap) {
    got[0] = '\0';
    char pattern[64];
    for (int64_t s = 1; s <= steps; s++) {
        snprintf(pattern, sizeof pattern, "step %lld/%lld ", (long long)s, (long long)steps);
        if (strstr(text, pattern)) snprintf(got + strlen(got), cap - strlen(got), "%s%lld", *got ? " " : "", (long long)s);
    }
}

static void expect_plain(int64_t steps, const char *want) {
    FILE *out = tmpfile();
    assert_non_null(out);
    Progress p;
    progress_init(&p, out);
    assert_false(p.live);
    char *text = run_epoch(&p, out, steps);
    assert_null(strchr(text, '\r'));
    assert_null(strchr(text, '\033'));
    char got[256];
    plain_steps(text, steps, got, sizeof got);
    if (strcmp(got, want)) fail_msg("%lld steps: plain lines at steps '%s', expected '%s'", (long long)steps, got, want);
    int lines = 0, words = 1;  // one line per listed step
    for (const char *c = text; *c; c++) lines += *c == '\n';
    for (const char *c = want; *c; c++) words += *c == ' ';
    assert_int_equal(lines, words);
    free(text);
    fclose(out);
}

static void test_plain_lines_per_quarter(void **state) {
    (void)state;
    clear_launcher();
    expect_plain(126, "32 63 95 126");  // the default experiment's 2 x 2 epoch: 126 batches
    expect_plain(8, "2 4 6 8");
    expect_plain(5, "2 3 4 5");
    expect_plain(3, "1 2 3");  // fewer steps than lines: every step
    expect_plain(1, "1");
}

// A pseudo-terminal stands for the user's terminal (and for the one Open MPI gives its ranks).
static int open_pty(void) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) return -1;
    return master;
}

static void test_live_only_without_launcher(void **state) {
    (void)state;
    clear_launcher();
    int master = open_pty();
    if (master < 0) skip();
    int tty = open(ptsname(master), O_RDWR | O_NOCTTY);
    assert_true(tty >= 0);
    assert_true(launcher_live_terminal(tty));
    for (size_t i = 0; i < sizeof launcher_vars / sizeof *launcher_vars; i++) {
        setenv(launcher_vars[i], "0", 1);
        if (launcher_live_terminal(tty)) fail_msg("live under %s", launcher_vars[i]);
        unsetenv(launcher_vars[i]);
    }
    FILE *file = tmpfile();
    assert_false(launcher_live_terminal(fileno(file)));  // output to a file
    fclose(file);
    close(tty);
    close(master);
}

// In place: every step rewrites the line (\r ESC[K) and the last ends it.
static void test_live_rewrites_each_step(void **state) {
    (void)state;
    FILE *out = tmpfile();
    Progress p = {.out = out, .live = true};
    char *text = run_epoch(&p, out, 5);
    int rewrites = 0, lines = 0;
    for (const char *c = text; (c = strstr(c, "\r\033[K")); c++) rewrites++;
    for (const char *c = text; *c; c++) lines += *c == '\n';
    assert_int_equal(rewrites, 5);
    assert_int_equal(lines, 1);
    free(text);
    fclose(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_lines_per_quarter),
        cmocka_unit_test(test_live_only_without_launcher),
        cmocka_unit_test(test_live_rewrites_each_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
