// A lost rank ends the whole job with a message, never a hang.
//
// Three ways a job ends early, each with one line on stderr that names the rank and what it was doing:
// - a rank waits too long for a peer: transport_wait (framework/runtime/transport.h) times out;
// - a rank dies (crash, OOM kill): the launcher (mpirun, srun) sends SIGTERM/SIGINT/SIGHUP to the
//   others, which print "stopped by signal N ... while <activity>" and exit with 128 + N;
// - an internal error (yp_fatal, YP_CHECK, a failed library call) ends the whole job through the
//   transport's abort instead of abort(), so that no other rank waits for this one;
// - a crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL; not under a sanitizer) prints "crashed by signal N
//   while <activity>" and a backtrace, then dies of the signal, and the launcher ends the others.
//
// Process-wide state: a signal handler cannot be handed a context, so failure.c keeps the
// installed transport, this rank's prebuilt message prefix and the activity text in one static
// struct, written by failure_install (at start-up, and again when the transport that ends the job
// changes) and failure_set_activity (main thread).
#pragma once

#include "framework/core/error.h"
#include "framework/runtime/topology.h"
#include "framework/runtime/transport.h"

// Installs the signal handlers and error.c's fatal hook for this rank. t is borrowed and must
// outlive every later internal error (in practice: until the process exits).
void failure_install(const Topology *topo, Transport *t);

// Records what this rank is doing now (e.g. "step 12, RECV_GRAD micro-batch 3 of cut 2 from rank 1"),
// for the messages above; truncated to a few hundred bytes. Cheap: one vsnprintf, no allocation.
void failure_set_activity(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// While this rank waits for a peer (transport_wait): the messages above say "while <activity>,
// waiting for <what>" (truncated like the activity) until failure_wait_end, which restores the
// activity as it was. Main thread only; waits do not nest.
void failure_wait_begin(const char *what);
void failure_wait_end(void);

// For a user error found on this rank only (the other ranks would wait for it forever): prints
// err's line and ends the whole job with exit code 2 (plain exit(2) before failure_install).
YP_NORETURN void failure_user_error(const Error *err);
