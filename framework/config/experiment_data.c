#include "framework/config/experiment_data.h"

#include <string.h>
#include <sys/stat.h>

#include "framework/core/path.h"

bool experiment_data_generate(const ExperimentConfig *cfg, FILE *progress, Error *err) {
    struct stat st;
    if (stat(cfg->data, &st) == 0 || !cfg->synth.present) return true;
    char dir[PATH_MAX];
    if (!path_format(dir, sizeof dir, err, "%s", cfg->data)) return false;
    if (cfg->task == CONFIG_TASK_DETECT) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
    }
    SynthConfig sc = cfg->synth.synth;
    sc.out_dir = dir;
    sc.progress = progress;
    fprintf(progress, "%s does not exist: generating the synthetic dataset (synth: block)\n", cfg->data);
    return synth_generate(&sc, NULL, err);
}

bool experiment_data_open(const ExperimentConfig *cfg, Dataset **ds, Error *err) {
    *ds = NULL;
    bool classify = cfg->task == CONFIG_TASK_CLASSIFY;
    struct stat st;
    bool exists = stat(cfg->data, &st) == 0;  // a missing one is for dataset_open to report
    if (exists && classify && !S_ISDIR(st.st_mode))
        return config_error_at(cfg, "task", err,
                               "task is classify but data %s is not a folder: classification data is a folder with train/ "
                               "and val/ class folders (a dataset YAML is for task: detect)", cfg->data);
    if (exists && !classify && S_ISDIR(st.st_mode))
        return config_error_at(cfg, "data", err,
                               "data %s is a folder but the task is detect: detection data is a dataset YAML (class "
                               "folders are for task: classify)", cfg->data);
    return dataset_open(cfg->data, classify ? DATASET_TASK_CLASSIFY : DATASET_TASK_DETECT, ds, err);
}

LoaderOptions experiment_train_loader_options(const ExperimentConfig *cfg) {
    LoaderOptions o = loader_options_train(cfg->train.batch, (uint64_t)cfg->train.seed);
    const AugmentConfig *a = &cfg->augment;
    o.aug.hsv_h = a->hsv_h;
    o.aug.hsv_s = a->hsv_s;
    o.aug.hsv_v = a->hsv_v;
    o.aug.translate = a->translate;
    o.aug.scale = a->scale;
    o.aug.fliplr = a->fliplr;
    o.aug.mosaic = a->mosaic;
    o.n_workers = (int)cfg->train.workers;
    return o;
}
