// Fuzz target: an experiment YAML with `--set` overrides, through config_load (what `yolopipe plan`,
// `train` and `study` call first), and the round trip a checkpoint relies on: the resolved
// configuration written by config_write_yaml (a checkpoint's config.yaml, read back by --resume) must
// load again and write the same text.
//
// Input format: any number of leading lines "--set KEY=VALUE" (at most 16; "--set " followed by what
// a user types after --set, e.g. "--set train.lr0=0.02" or "--set parallel.partition=[[0, 9], [10, 22]]"),
// then the experiment YAML, written to a file. An input without such lines is an experiment file
// as it is, so every experiment in experiments/ is a seed.
// Checks, beyond the sanitizers: a refused configuration leaves one non-empty line of error.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framework/config/config.h"
#include "tests/fuzz/fuzz_common.h"

enum { MAX_OVERRIDES = 16 };
static const char set_prefix[] = "--set ";

// config_write_yaml's text of cfg; the caller frees it.
static char *resolved_text(const ExperimentConfig *cfg) {
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (!f) abort();
    config_write_yaml(cfg, f);
    fclose(f);
    return text;
}

// Loads the resolved configuration back and aborts unless it gives the same text.
static void check_round_trip(const ExperimentConfig *cfg) {
    const char *resolved_path = fuzz_file("config.yaml");
    char *first = resolved_text(cfg);
    fuzz_write_file(resolved_path, first, strlen(first));
    ExperimentConfig *again = NULL;
    Error err = {0};
    if (!config_load(resolved_path, 0, NULL, &again, &err)) {
        fprintf(stderr, "fuzz: the resolved configuration does not load again: %s\n---\n%s---\n", err.message, first);
        abort();
    }
    char *second = resolved_text(again);
    if (strcmp(first, second)) {
        fprintf(stderr, "fuzz: the resolved configuration changes when read back:\n--- written\n%s--- read back\n%s---\n",
                first, second);
        abort();
    }
    free(second);
    free(first);
    config_destroy(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // A NUL-terminated copy, so that the override lines can be cut out as strings.
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    char *overrides[MAX_OVERRIDES];
    int n_overrides = 0;
    char *yaml = text;
    while (n_overrides < MAX_OVERRIDES && !strncmp(yaml, set_prefix, strlen(set_prefix))) {
        char *end = strchr(yaml, '\n');
        overrides[n_overrides++] = yaml + strlen(set_prefix);
        if (!end) {
            yaml += strlen(yaml);
            break;
        }
        *end = '\0';
        yaml = end + 1;
    }
    // The YAML part keeps its bytes as they came (NUL bytes included: the reader must refuse them).
    const char *experiment_path = fuzz_file("experiment.yaml");
    fuzz_write_file(experiment_path, yaml, size - (size_t)(yaml - text));

    ExperimentConfig *cfg = NULL;
    Error err = {0};
    if (config_load(experiment_path, n_overrides, overrides, &cfg, &err)) {
        check_round_trip(cfg);
        config_destroy(cfg);
    } else {
        fuzz_check_error(&err);
    }
    free(text);
    return 0;
}
