// What every fuzz target shares. The parsers under test read files by path (fs_read_file), so each
// input is written to a file in a scratch directory of this process's own and the real entry point
// is called on it: the code fuzzed is the code users run, not a copy.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "framework/core/error.h"

// libFuzzer's entry points, defined by each target.
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// This process's scratch directory (absolute), created on the first call and removed at exit (not
// after a crash: check-fuzz.sh points TMPDIR into a folder of its own, which it removes). It is under
// $TMPDIR when set, else /dev/shm when there is one: targets write a file per input, and some
// (safetensors_write) fsync it, which must not reach a disk at thousands of inputs per second.
const char *fuzz_dir(void);
// "<fuzz_dir()>/<name>": the same string for the same name on every call (owned here; at most 8 names).
const char *fuzz_file(const char *name);
// Writes `size` bytes to `path`, replacing it; aborts (a finding of the harness, not of the code
// under test) when it cannot.
void fuzz_write_file(const char *path, const void *data, size_t size);
// Aborts unless a failed call left what every user error must be: one non-empty line.
void fuzz_check_error(const Error *err);
