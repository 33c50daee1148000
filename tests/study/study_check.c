// Loads a study file, expands its points and prints them: what the study-file error corpus runs, and
// a way to look at a study's points before running any (until `yolopipe study --dry-run` does it).
//
// usage: study_check STUDY.yaml [KEY=VALUE]...   (each KEY=VALUE a study override, as --set takes it)
// exit: 0 with the points on stdout; 2 with one line "file:line:col: message" on stderr for a user error.
#include <stdio.h>

#include "framework/study/study.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s STUDY.yaml [KEY=VALUE]...\n", argv[0]);
        return YP_EXIT_USAGE;
    }
    StudyConfig *s = NULL;
    StudyPoints points;
    Error err = {0};
    if (!study_config_load(argv[1], argc - 2, argv + 2, &s, &err) || !study_points_expand(s, &points, &err)) {
        fprintf(stderr, "%s\n", err.message);
        study_config_destroy(s);
        return YP_EXIT_USAGE;
    }
    printf("study %s (%s): %d point%s, %d dropped\n", s->name, study_mode_names[s->mode], points.n,
           points.n == 1 ? "" : "s", points.n_dropped);
    for (int i = 0; i < points.n; i++) {
        const StudyPoint *p = &points.points[i];
        printf("%d. world %lld, nodes %lld: %s\n  ", i + 1, (long long)p->world, (long long)p->nodes, p->label);
        for (int k = 0; k < p->n_settings; k++) printf(" %s=%s", p->settings[k].key, p->settings[k].value);
        printf("\n");
    }
    for (int i = 0; i < points.n_dropped; i++) printf("dropped %s\n", points.dropped[i]);
    study_points_clear(&points);
    study_config_destroy(s);
    return 0;
}
