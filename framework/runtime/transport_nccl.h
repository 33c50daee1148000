// The NCCL transport: the Transport interface (framework/runtime/transport.h) on GPU buffers, for one rank
// per GPU. Built only when CUDA and NCCL are found (build_config.h: YP_HAVE_NCCL).
//
// Which op runs where:
// - isend, irecv and iallreduce_sum_f32 take DEVICE pointers (on this rank's GPU) and run on the
//   transport's own CUDA streams, each after a cudaStreamWaitEvent on an event recorded on the
//   compute stream at the call: a send carries what the compute stream produced before the call, and
//   a receive or sum writes its buffer only after the work queued on it before the call. `test`
//   (and so transport_wait) says complete once the GPU has finished the operation, so that work the
//   caller queues afterwards sees the data.
// - allreduce_sum_f64, broadcast, barrier and gather_bytes take HOST pointers and go to the MPI
//   transport this one wraps (a few bytes each; no GPU round trip).
//
// Communicators: one NCCL communicator for the world (bootstrapped over MPI: world rank 0 draws the
// unique id and broadcasts it), split into one per pipeline and one per replica group for the
// collectives, one of this rank alone for messages to itself, and two per pair of pipeline ranks for
// point-to-point, one per direction, each with its own stream. NCCL runs a communicator's operations
// in order and a send or receive blocks its stream on the GPU until the peer's matching call runs,
// so one stream for all messages would deadlock as soon as a rank posts a receive before a send (the
// executor posts a whole batch's receives first). With a stream per direction, the only order that
// matters is the order of one sender's messages to one receiver, which the receiver keeps.
//
// Matching by tag, as transport.h promises: isend launches ncclSend at once and tells the peer over
// MPI (a 16-byte header: tag and size); the receiver launches ncclRecv for each header, in the order
// the peer sent them, as soon as a receive with that tag is posted (a message to this rank itself:
// its ncclSend and ncclRecv as one NCCL group, then). Headers are read, and receives launched, inside
// every call of this transport and inside the waits of the MPI host collectives.
// So, beyond transport.h's rules:
// - a message whose earlier messages from the same peer have no posted receive yet waits for those
//   receives to be posted (NCCL matches one peer's messages in order): post receives before waiting
//   on later ones (the executor posts each batch's receives at its start);
// - a send's kernel waits on the GPU until the receiver's host launches the receive: do not
//   synchronise the whole device (cudaDeviceSynchronize; cudaMalloc and cudaFree may) while messages
//   are in flight, or two ranks can wait for each other's host;
// - a message whose size differs from its receive's is an internal error (both ranks' programs
//   disagree), reported with the peer and tag.
//
// Failures: every `test` of an operation in flight asks NCCL for asynchronous errors
// (ncclCommGetAsyncError); on one, and on transport_wait's timeout, the transport prints which rank
// failed at what, aborts its communicators (ncclCommAbort) and ends the job through the MPI transport, like
// the MPI transport. Internal errors (a failed CUDA, NCCL or MPI call) take the same way once
// failure_install has this transport.
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "framework/runtime/transport.h"

// Whether this node can run the NCCL transport with local_size ranks and `gpus` visible GPUs: NCCL
// refuses two ranks on one GPU. When not, writes the reason into why (one line, no newline; why_len
// bytes at most) for the caller's notice, and the caller keeps the MPI transport with host staging.
bool transport_nccl_possible(int local_size, int gpus, char *why, size_t why_len);

// Builds an NCCL transport over the MPI transport `mpi` (from transport_mpi_create; borrowed: destroy
// this transport first, and `mpi` stays usable for host-memory collectives beside it), with the same
// topology and timeout. Collective over
// MPI_COMM_WORLD. The calling thread's current CUDA device (cudaSetDevice) is this rank's GPU, and
// compute_stream (a cudaStream_t; NULL = the legacy default stream) is the stream on that device whose
// work the data ops wait for; it is borrowed and must outlive the transport. The caller checked
// transport_nccl_possible first, and hands this transport, not `mpi`, to failure_install so that an
// internal error aborts the NCCL communicators too. Creates 2 * pipeline_size + 2 communicators.
// Owned by the caller (transport_destroy).
Transport *transport_nccl_create(Transport *mpi, void *compute_stream);
