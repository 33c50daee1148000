// cluster.calibrate: profiles measured on this machine for the points to plan with.
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "framework/core/error.h"
#include "framework/study/study.h"

// Runs `self_exe profile` twice per distinct (model, scale, data, input size, micro-batch, precision)
// among the points, into <out_dir>/profiles/profile-K.csv and profile-K-again.csv (kept: a resumed
// study reuses them), then times the same layers inside training steps: `self_exe train` on one rank
// (one stage, gpipe over the point's micro-batches), twice, into profiles/in-steps/. A profile runs its
// passes back to back; a training step runs them between the loader and the optimizer, and they took
// 4-16 % longer there on the 2-core VM. profiles/profile-K-in-steps.csv is the faster profile with the
// faster in-step forward and backward of each layer (its W share of the backward and its step costs
// kept), and (*profiles)[i] names point i's (NULL for a point the experiment rejects; the profile
// alone where the in-step run failed, which the log says). The threads are the process's
// OMP_NUM_THREADS, which the study sets to cluster.threads_per_rank.
//
// With cluster.cores_per_node C >= 2 it also runs C copies of the first profile at once: if each is
// f times slower than alone, the node's cores are worth C / f cores that never slow each other (at
// least 1, at most C), which sharing->cores_per_node receives. Then C copies again beside C processes
// that wait as a rank does (framework/core/poll_sleep.h): if each is g times slower than the C alone,
// a waiting rank takes 1 - 1 / g of a busy core, sharing->wait_cost (at most 0.9). Both are taken
// twice, in turn (profiles/shared[-again]-K.csv, beside-waiting[-again]-K.csv): f from the faster
// take, g the mean of the two. Without the measurements: 0 and -1 (the study's figures).
typedef struct StudySharing {
    double cores_per_node, wait_cost;
} StudySharing;
bool study_calibrate(const StudyConfig *s, const StudyPoints *points, const char *out_dir, const char *self_exe,
                     FILE *log, char ***profiles, StudySharing *sharing, Error *err);
void study_calibrate_free(int n, char **profiles);
