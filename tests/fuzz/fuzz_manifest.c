// Fuzz target: a checkpoint's manifest.yaml, through checkpoint_read_progress (what --resume,
// `val --weights` and `export` read first), on a checkpoint directory in the scratch directory.
//
// Input: the manifest file as it is.
// Checks, beyond the sanitizers: a refused manifest leaves one non-empty line of error.
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
    const char *checkpoint_dir = fuzz_file("last");
    fuzz_write_file(fuzz_file("last/manifest.yaml"), data, size);
    TrainProgress progress;
    Error err = {0};
    if (!checkpoint_read_progress(checkpoint_dir, &progress, &err)) fuzz_check_error(&err);
    return 0;
}
