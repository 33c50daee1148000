// The detection loss of kernels/cpu/cpu_loss.h (Ultralytics 8.4's v8DetectionLoss with its
// TaskAlignedAssigner) on the CUDA backend: detect_loss_compute on the network output where it
// lies, in device memory, so that only the targets go to the device and five numbers come back.
//
// Same function as the CPU loss, with its per-element arithmetic from kernels/loss_detect_math.h and
// the same tie-breaking; its sums run in double, in a fixed order of the GPU's own. Results agree
// with the CPU's to rounding (the GPU's exp, pow and atan differ from glibc's by an ulp or two, and
// nvcc may fuse a multiply-add), and the foreground anchors are the same unless two alignments tie
// within that. Every run gives the same bits.
//
// These functions are the CUDA backend's detect_loss_* slots (kernels/backend.h), whose contract
// they follow; callers reach them through the ops table. This header is for builds with CUDA
// (build_config.h's YP_HAVE_CUDA).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "framework/core/error.h"
#include "kernels/loss_detect_config.h"

#ifdef __cplusplus
extern "C" {
#endif

// The most top-k candidates per ground truth (DetectLossConfig.topk; Ultralytics uses 10): each
// thread of the selection keeps its own list in shared memory.
enum { CUDA_DETECT_LOSS_MAX_TOPK = 24 };

// Checks the configuration as detect_loss_create does, plus topk <= CUDA_DETECT_LOSS_MAX_TOPK
// (user errors in err), and allocates all work memory on `be`, a CUDA backend (borrowed; it must
// outlive the loss), for batches of up to max_batch images and max_targets ground-truth boxes. The
// caller owns *out and frees it with cuda_detect_loss_destroy.
bool cuda_detect_loss_create(Backend *be, const DetectLossConfig *cfg, int64_t max_batch, int64_t max_targets,
                             BackendDetectLoss **out, Error *err);
void cuda_detect_loss_destroy(Backend *be, BackendDetectLoss *loss);  // accepts NULL; waits for the backend's stream

// Makes room for batches of up to max_targets boxes. Reallocating waits for the backend's stream:
// call it before a step's work is queued (the executor does at the start of each batch).
void cuda_detect_loss_reserve(Backend *be, BackendDetectLoss *loss, int64_t max_targets);

// detect_loss_compute on the CUDA backend: pred (batch_n, 4 * reg_max + nc, A) and dpred (same
// shape, overwritten; NULL for no gradient) are device memory in the backend's activation type,
// targets (n_targets of them, at most the reserved number; not retained) host memory. dpred is the
// loss gradient times grad_scale (fp16 loss scaling; 1 otherwise), computed in float32 and rounded
// once when stored. Queues its kernels on the backend's stream after the work already there and
// waits for them once, to return the total (unscaled); *parts may be NULL.
double cuda_detect_loss_compute(Backend *be, BackendDetectLoss *loss, int64_t batch_n, const void *pred,
                                const TargetBox *targets, int64_t n_targets, float grad_scale, void *dpred,
                                DetectLossParts *parts);

#ifdef __cplusplus
}
#endif
