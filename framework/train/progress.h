// Progress output of a training run: one line per step, rewritten in place on a terminal that a
// person watches, and plain lines (at each quarter of an epoch and its last step) otherwise, so
// that logs stay readable. Written to one stream (stdout on rank 0).
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { PROGRESS_PLAIN_PER_EPOCH = 4 };  // plain lines per epoch (the last step's among them)

typedef struct ProgressStep {
    int64_t epoch, epochs;       // 1-based epoch of total
    int64_t step, steps;         // 1-based batch within the epoch, of total
    double box, cls, dfl;        // running means of the loss parts over the epoch (detect)
    double ce;                   // running mean of the cross-entropy (classify)
    bool classify;
    int64_t instances;           // ground-truth boxes in this batch (detect)
    int64_t imgsz;               // input side of this batch
    double images_per_s;         // over the epoch so far
    double lr;                   // current learning rate of the weights group
    int64_t skipped;             // optimizer steps of the epoch so far skipped for non-finite gradients
} ProgressStep;

typedef struct Progress {
    FILE *out;
    bool live;       // rewrite the line in place
    bool line_open;  // a live line is on screen without its newline
} Progress;

// Live output when launcher_live_terminal(fileno(out)): a terminal no launcher (mpirun, srun) started.
void progress_init(Progress *p, FILE *out);
void progress_step(Progress *p, const ProgressStep *s);
// Ends the current live line (before printing anything else).
void progress_end_line(Progress *p);

// Resident memory of this process now, in bytes (0 when unknown).
int64_t progress_resident_bytes(void);
