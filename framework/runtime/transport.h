// Transport: moves bytes between the ranks of a job (DESIGN.md "Transport"). One interface, an ops
// table like BackendOps, with four implementations (TransportKind): local (transport_local.c, one
// process without a launcher), mpi (transport_mpi.c, host buffers), staged (transport_staged.c,
// backend buffers through host buffers over a host transport) and nccl (transport_nccl.c, GPU
// buffers; transport_nccl.h says what it adds to the rules below).
//
// What overlaps: isend, irecv and iallreduce_sum_f32 only start work and return a request; the
// caller computes meanwhile and later completes the request with `test` (polling) or
// transport_wait (blocking). Progress: the MPI implementation has no progress thread, so large
// messages advance only inside transport calls; the executor polls `test` between instructions.
//
// Ordering: point-to-point messages are matched by (peer, tag) within the PIPELINE group, not by
// posting order: receives may be posted before or after the sends and in any order. Two messages
// in flight with the same (peer, tag) are delivered in the order they were sent (MPI's rule), so
// give each transfer of a step its own tag. Collectives on one group must be issued in the same
// order on every rank of that group.
//
// Backend order: isend and iallreduce_sum_f32 read their buffer as the backend's work queued before
// the call leaves it, and a completed irecv or iallreduce's result is there for work queued after
// the completion, so callers never synchronise the backend for a transport (the staged transport
// goes through the backend's own download and upload; the NCCL one waits on an event recorded on
// the compute stream, and completes when its stream's work is done).
//
// Timeouts: every wait (transport_wait and the blocking collectives built on it) polls with a
// growing sleep (20 us to 1 ms; ranks may share cores, so never spin) and, after t->timeout_s
// seconds, prints which rank waited for what and ends the whole job with exit code 1: a lost
// rank or a mismatched program ends the job with a message instead of a hang (see also
// framework/runtime/failure.h for signals and internal errors).
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "kernels/backend.h"
#include "framework/core/error.h"
#include "framework/runtime/topology.h"

typedef enum TransportGroup {
    TRANSPORT_WORLD,     // all ranks, indexed by world rank
    TRANSPORT_PIPELINE,  // this rank's pipeline, indexed by pipeline rank
    TRANSPORT_REPLICAS,  // the ranks with this rank's pipeline_rank in every replica, indexed by replica
    TRANSPORT_GROUP_COUNT
} TransportGroup;

// Which implementation a transport is: what callers test (never the name) when a choice depends on
// it, e.g. whether a launcher started the job (mpi) or the NCCL communicators need tearing down.
typedef enum TransportKind {
    TRANSPORT_KIND_LOCAL,   // transport_local_create: one rank, no launcher
    TRANSPORT_KIND_MPI,     // transport_mpi_create: MPI over host memory
    TRANSPORT_KIND_STAGED,  // transport_staged_create: backend memory staged through a host transport
    TRANSPORT_KIND_NCCL,    // transport_nccl_create (transport_nccl.h): NCCL over GPU memory
    TRANSPORT_KIND_COUNT
} TransportKind;

typedef struct TransportRequest TransportRequest;  // opaque; owned by the transport until completed
typedef struct Transport Transport;

typedef struct TransportOps {
    TransportKind kind;
    const char *name;  // for messages: "local", "mpi", "staged" or "nccl", as kind says
    // Non-blocking point-to-point between ranks of the PIPELINE group (peer = pipeline rank, may be
    // this rank itself). Messages are matched by (peer, tag); tag in [0, transport_max_tag(t)].
    // The buffer must stay valid and untouched until the request completes.
    TransportRequest *(*isend)(Transport *t, const void *buf, size_t n_bytes, int peer, int tag);
    TransportRequest *(*irecv)(Transport *t, void *buf, size_t n_bytes, int peer, int tag);
    // Non-blocking in-place sum of n floats over a group (REPLICAS for gradient buckets).
    TransportRequest *(*iallreduce_sum_f32)(Transport *t, float *buf, size_t n_elems, TransportGroup group);
    // True when the request is complete (the request is then freed and must not be used again).
    bool (*test)(Transport *t, TransportRequest *r);
    // Blocking collectives, built on non-blocking ones + transport_wait so that they obey the timeout.
    void (*allreduce_sum_f64)(Transport *t, double *buf, size_t n_elems, TransportGroup group);
    void (*broadcast)(Transport *t, void *buf, size_t n_bytes, int root, TransportGroup group);  // root: index in group
    void (*barrier)(Transport *t, TransportGroup group);
    // Gathers n_bytes from every rank of WORLD at world rank 0: there *all (malloc'd, owned by the
    // caller) gets the concatenation in world-rank order and sizes[r] (a caller array of world_size)
    // each rank's n_bytes; elsewhere *all is set to NULL and sizes is not touched (may be NULL).
    void (*gather_bytes)(Transport *t, const void *buf, size_t n_bytes, void **all, size_t *sizes);
    // Ends the whole job. (_Noreturn cannot qualify a function pointer in C17; GCC's attribute can.)
    void (*abort)(Transport *t, int exit_code) __attribute__((noreturn));
    void (*destroy)(Transport *t);
} TransportOps;

struct Transport {
    const TransportOps *ops;
    Topology topo;
    double timeout_s;  // transport_wait's limit in seconds (0 = none); set by the caller from the experiment
    int max_tag;       // largest tag point-to-point accepts (set by the implementation)
};

// Starts MPI unless it is already running (MPI_Init_thread with MPI_THREAD_FUNNELED: the executor
// calls the transport from its main thread only), checks world size == pipeline_size * replicas,
// builds the topology and the PIPELINE and REPLICAS communicators. A wrong world size is a user
// error: err gets "parallel.stages x parallel.replicas = ... ranks, but mpirun started N processes:
// ..." (the caller prefixes the file position), MPI is finalized again if this call started it, and
// false is returned. Works without mpirun too (singleton: world size 1). On success *out is owned by
// the caller (transport_destroy); timeout_s starts at 0. When this call starts MPI, its transport
// finalizes MPI at destroy, so it must be the last one alive; a program that wants several transports
// in turn (tests) starts MPI itself first.
bool transport_mpi_create(int pipeline_size, int replicas, RankOrder order, Transport **out, Error *err);

// Waits for r (which is then freed), polling with a growing sleep, for at most t->timeout_s
// seconds. On timeout prints "yolopipe: rank R (pipeline rank P, replica D): timed out after X s
// waiting for <what>" to stderr and ends the job with t->ops->abort(t, 1). `what` names what was
// awaited and from whom (topology_describe_peer, transport_describe_group), e.g. "the activation of
// layer 4 (cut 2) for micro-batch 3 from pipeline rank 0 (world rank 0 on node7)". While it waits,
// a signal's message says so too (failure_wait_begin).
void transport_wait(Transport *t, TransportRequest *r, const char *what);

// transport_wait for the collective r over `group`, named "<fmt...> over the <group> group (world
// ranks ...)" (transport_describe_group).
void transport_wait_group(Transport *t, TransportRequest *r, TransportGroup group, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// How a message names the ranks of a collective: writes "the <group> group (world ranks 0, 1 on
// HOST_A; 2, 3 on HOST_B)" (the ranks in group order, at most 8, then "..."; no hosts where the
// topology knows none) into buf (n bytes, cut to fit) and returns buf.
char *transport_describe_group(const Transport *t, TransportGroup group, char *buf, size_t n);

int transport_max_tag(const Transport *t);
// The transport of a run started without a launcher: one rank, every group of size one
// (transport_local.c). Owned by the caller (transport_destroy).
Transport *transport_local_create(void);

// A transport whose isend, irecv and iallreduce_sum_f32 take memory of backend `be` and go through
// `host`, a transport over host memory, by way of pooled host buffers (transport_staged.c): what a
// backend whose memory the host cannot address (CUDA) uses when there is no transport for its memory.
// The blocking collectives pass host memory straight to `host`. Borrows both (destroy it first);
// copies host's topology, timeout and tag limit.
Transport *transport_staged_create(Transport *host, Backend *be);

// Accepts NULL. Every request must be complete; finalizes MPI if transport_mpi_create started it.
void transport_destroy(Transport *t);
