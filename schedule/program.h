// Pipeline schedules as per-rank instruction lists (DESIGN.md "Program"), and the validator that
// proves they match up.
//
// sched_build turns a PipelinePlan and a schedule kind into one program per rank of ONE pipeline;
// every data-parallel replica runs the same programs (its gradient reduction is the REDUCE_GRADS
// instruction, a no-op when replicas = 1). Only the plan is read: nothing here knows about tensors.
//
// Stage k runs on rank k % n_ranks as model chunk k / n_ranks. A forward of micro-batch i on stage s
// receives every cut with to_stage == s (one RECV_ACT each, from the producer's rank), runs FWD and
// sends every cut with from_stage == s (one SEND_ACT each, straight to the consumer's rank: skip
// connections are not relayed). A backward mirrors it: RECV_GRAD for every cut leaving the stage,
// BWD (or BWD_INPUT), SEND_GRAD for every cut entering it. Stage 0 LOADs the images and the last
// stage LOADs the targets before their FWD; the last stage computes the loss inside FWD/BWD. A cut
// between two stages of the same rank (interleaved) keeps its SEND/RECV pair: a local hand-over.
//
// Communication semantics (what the validator proves and the executor must provide):
//   - a SEND never blocks: the executor posts it asynchronously and keeps the buffer until it is done;
//   - a RECV blocks until its message is there;
//   - messages from rank a to rank b are matched in order, like NCCL point-to-point calls on one
//     communicator: the k-th RECV on b from a gets the k-th SEND on a to b, so a program carries no
//     tags. The executor does tag its messages (direction, micro-batch and cut: message_tag in
//     framework/runtime/executor.c) and its transports match by (peer, tag), so that it can post all
//     of a batch's receives at the start, in any order. Both matchings pair the same messages: the
//     validator proves that each in-order pair agrees on micro-batch, cut and direction, and a batch
//     has one message per (cut, micro-batch, direction).
// The generators keep each channel's receives in the order of its sends (a receive is hoisted before
// a later one when the sender sends in that order), which never waits longer than the data needs.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "framework/core/error.h"
#include "partition/plan.h"

typedef enum SchedOp {
    SCHED_OP_LOAD,          // load micro-batch `micro` (stage 0: images, last stage: targets)
    SCHED_OP_RECV_ACT,      // receive cut `cut`'s activation of `micro` from rank `peer`
    SCHED_OP_FWD,           // forward of `micro` on `stage`
    SCHED_OP_SEND_ACT,      // send cut `cut`'s activation of `micro` to rank `peer`
    SCHED_OP_RECV_GRAD,     // receive the gradient of cut `cut` for `micro` from rank `peer`
    SCHED_OP_BWD,           // whole backward of `micro` on `stage` (input and weight gradients)
    SCHED_OP_BWD_INPUT,     // zb-h1's B: input gradients only (on the critical path)
    SCHED_OP_BWD_WEIGHT,    // zb-h1's W: weight gradients of a micro-batch whose BWD_INPUT is done
    SCHED_OP_SEND_GRAD,     // send the gradient of cut `cut` for `micro` to rank `peer`
    SCHED_OP_REDUCE_GRADS,  // all-reduce the gradients of `chunk` over the data-parallel replicas
    SCHED_OP_STEP,          // optimizer step; the program's last instruction
    SCHED_OP_COUNT
} SchedOp;

typedef struct SchedInstr {
    SchedOp op;
    int micro;      // micro-batch in [0, micro_batches); -1 for REDUCE_GRADS and STEP
    int chunk;      // model chunk on this rank; -1 for STEP
    int stage;      // chunk * n_ranks + rank; -1 for STEP
    int peer;       // rank sent to or received from; -1 for other ops
    int cut;        // PlanCut.id for sends and receives; -1 for other ops
    int64_t bytes;  // message size (the cut's bytes), reduced bytes (the stage's param_bytes), loaded
                    // input bytes (stage 0's input_bytes; 0 for targets); 0 otherwise
} SchedInstr;

typedef struct SchedProgram {
    int n_instrs;
    SchedInstr *instrs;  // (n_instrs); owned by the Schedule
} SchedProgram;

typedef enum SchedKind {
    SCHED_KIND_GPIPE,        // all forwards, then all backwards
    SCHED_KIND_1F1B,         // PipeDream-flush / Megatron: p - rank - 1 warm-up forwards, 1F1B, cool-down
    SCHED_KIND_INTERLEAVED,  // Megatron's interleaved 1F1B over parallel.chunks model chunks per rank
    SCHED_KIND_ZB_H1,        // Zero Bubble H1 (Qi et al. 2023): 1f1b with B/W split, W's fill the cool-down
    SCHED_KIND_COUNT
} SchedKind;

typedef struct Schedule {
    SchedKind kind;
    int n_ranks;
    SchedProgram *programs;  // (n_ranks): programs[r] runs on pipeline rank r; owned
} Schedule;

// "gpipe", "1f1b", "interleaved", "zb-h1".
extern const char *const sched_kind_names[SCHED_KIND_COUNT];
const char *sched_kind_name(SchedKind kind);
// Looks a name up; false when it names no schedule.
bool sched_kind_parse(const char *name, SchedKind *out);
// "LOAD", "RECV_ACT", ...
const char *sched_op_name(SchedOp op);

// Writes one instruction as text, e.g. "RECV_ACT m3 s2 c5<r1" (micro, stage, cut, from rank) or
// "SEND_GRAD m3 s2 c5>r1". Returns buf.
char *sched_instr_format(char *buf, size_t n, const SchedInstr *in);

// Builds the programs of one pipeline. Combinations the schedule cannot run (several chunks with a
// schedule other than interleaved, interleaved with one chunk or with micro_batches not a multiple of
// parallel.stages) are refused: err says what is required and false is returned. The plan must be
// consistent (stages = ranks x chunks, cuts going forward between existing stages); that is checked
// as an internal invariant. The caller owns *out (sched_destroy).
bool sched_build(const PipelinePlan *plan, SchedKind kind, Schedule **out, Error *err);
void sched_destroy(Schedule *s);

// Runs all ranks' programs symbolically, in lockstep rounds (each rank executes at most its next
// instruction per round; a message sent in one round can be received from the next) under the
// semantics above, and proves: every send meets exactly one receive with the same micro-batch, cut,
// direction and bytes; nothing deadlocks; each stage LOADs before its FWD (stage 0 and the last
// stage), a FWD has all its activations, a BWD/BWD_INPUT follows its FWD and has all its gradients,
// a BWD_WEIGHT follows its BWD_INPUT, a send follows the pass that produced it, REDUCE_GRADS follows
// every weight gradient of its chunk, STEP follows every backward and reduction of the rank; every
// stage runs every micro-batch forward and backward exactly once; no message is left over.
// On failure err names the rank(s) and instruction(s) ("rank 1 #7 RECV_ACT m0 s1 c2<r0 ...") and,
// when report is not NULL, a table of the last rounds and of where each rank stopped is written to
// it. Returns true when the schedule is valid.
bool sched_validate(const PipelinePlan *plan, const Schedule *s, FILE *report, Error *err);
