// Fuzz target: a checkpoint's manifest.yaml, through checkpoint_read_progress (what --resume,
// `val --weights` and `export` read first), on a checkpoint directory in the scratch directory: once
// as `export` reads it (against no experiment) and once as --resume reads it, against a run of 8
// epochs of 600 batches, one forward pass per batch, seed 0, with fp16's loss scaling (the seed
// corpus's manifest.yaml is a position of that run).
//
// Input: the manifest file as it is.
// Checks, beyond the sanitizers: a refused manifest leaves one non-empty line of error, and one the
// resumed run accepts is also accepted against no experiment.
#include <stdio.h>
#include <stdlib.h>

#include "framework/core/fsutil.h"
#include "framework/train/checkpoint.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    Error err = {0};
    if (!fs_mkdir_p(fuzz_file("last"), &err)) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const CheckpointResume run = {
        .epochs = 8, .batches_per_epoch = 600, .passes_per_batch = 1, .seed = 0, .loss_scaling = true};
    const char *checkpoint_dir = fuzz_file("last");
    fuzz_write_file(fuzz_file("last/manifest.yaml"), data, size);
    TrainProgress progress;
    Error err = {0};
    bool any = checkpoint_read_progress(checkpoint_dir, NULL, &progress, &err);
    if (!any) fuzz_check_error(&err);
    err = (Error){0};
    if (!checkpoint_read_progress(checkpoint_dir, &run, &progress, &err)) {
        fuzz_check_error(&err);
    } else if (!any) {
        fprintf(stderr, "fuzz: a manifest the resumed run accepts is refused against no experiment\n");
        abort();
    }
    return 0;
}
