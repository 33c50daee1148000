// Error reporting, in two kinds.
//
// User errors (bad YAML, wrong arguments, missing files) are recoverable: the function that finds
// one fills an Error with a single line "file:line:col: message" and returns false; callers pass it
// up unchanged, and the command-line front end prints it and exits with YP_EXIT_USAGE (2).
//
// Internal errors (a library call failing, an impossible state) are not recoverable: YP_CHECK and
// yp_fatal print where it happened and abort the process (and, once MPI is up, the whole job).
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

// Also included from CUDA (.cu, compiled as C++).
#ifdef __cplusplus
#define YP_NORETURN [[noreturn]]
extern "C" {
#else
#define YP_NORETURN _Noreturn
#endif

enum { YP_EXIT_USAGE = 2 };

// What kind of error an Error holds, for callers whose control flow depends on it (the message is for
// people, never parsed). error_at and error_set set ERROR_CODE_NONE; a function that finds an error
// of another kind assigns `code` after formatting the message.
typedef enum ErrorCode {
    ERROR_CODE_NONE,         // an error of this rank's own, or no error
    ERROR_CODE_PEER_FAILED,  // another rank of the job failed (its message is on its stderr)
    ERROR_CODE_NO_FIT,       // the layout does not fit the device's memory (the planner's cap)
    ERROR_CODE_COUNT
} ErrorCode;

typedef struct Error {
    char message[1024];  // one line, no trailing newline; empty while no error is set
    ErrorCode code;
} Error;

// Formats "file:line:col: <fmt...>" into err (line and col are 1-based). Returns false so that a
// failing function can end with `return error_at(err, ...);`.
bool error_at(Error *err, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

// Formats "<fmt...>" into err, for errors that have no source position (command-line arguments).
bool error_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prints an internal error with its origin and aborts. Never returns.
YP_NORETURN void yp_fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define yp_fatal(...) yp_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

// Aborts with the failed expression's text when `cond` is false. For invariants and for library
// calls whose failure the program cannot recover from (allocation, BLAS argument errors).
#define YP_CHECK(cond)                                                   \
    do {                                                                 \
        if (!(cond)) yp_fatal_at(__FILE__, __LINE__, "check failed: %s", #cond); \
    } while (0)

// A failed call into a library (CUDA, cuDNN, cuBLAS, NCCL, MPI): prints the host, process, library,
// call text, the library's own message and where, then aborts (and so ends an MPI job).
YP_NORETURN void yp_library_failure(const char *library, const char *call, const char *message, const char *file,
                                  int line);

// The one generic check every library's macro is built on: evaluates `call` once and compares its
// status with `ok`; `describe(status)` gives the library's message. Example:
//   #define CUDA_CHECK(call) YP_LIBRARY_CHECK("CUDA", call, cudaError_t, cudaSuccess, cudaGetErrorString)
#define YP_LIBRARY_CHECK(library, call, status_type, ok, describe)                              \
    do {                                                                                       \
        status_type yp_status_ = (call);                                                       \
        if (yp_status_ != (ok)) yp_library_failure(library, #call, describe(yp_status_), __FILE__, __LINE__); \
    } while (0)

// Where internal errors go once a job is running. `hook` gets the whole message (one line, no
// "yolopipe: " prefix, no newline) and must end the job without returning; until a hook is set,
// internal errors print "yolopipe: <message>" and abort(). framework/runtime/failure.c sets it once at
// start-up, before any other thread starts: it is the one piece of process-wide state in error.c.
typedef void (*ErrorFatalHook)(const char *message, void *context);
void error_set_fatal_hook(ErrorFatalHook hook, void *context);

// malloc/calloc that abort on failure, so callers never test for NULL.
void *yp_malloc(size_t n_bytes);
void *yp_calloc(size_t count, size_t n_bytes);
void *yp_realloc(void *ptr, size_t n_bytes);
char *yp_strdup(const char *s);

#ifdef __cplusplus
}
#endif
