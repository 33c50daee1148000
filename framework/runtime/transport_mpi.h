// MPI_CHECK and the MPI transport's hooks, for the files that call MPI directly (transport_mpi.c;
// the NCCL transport, which bootstraps over MPI and keeps an MPI transport for host collectives).
#pragma once

#include <mpi.h>

#include "framework/core/error.h"
#include "framework/runtime/transport.h"

// Writes MPI's text for an error code into buf and returns buf.
const char *transport_mpi_error_string(int code, char buf[MPI_MAX_ERROR_STRING]);

// Evaluates an MPI call once; on failure prints the call, MPI's message and where, and ends the
// job (framework/core/error.h). The communicators use MPI_ERRORS_RETURN so that failures arrive here.
// The message buffer is a compound literal, alive until the failure report returns (it never does).
#define MPI_CHECK(call)                                                         \
    YP_LIBRARY_CHECK("MPI", call, int, MPI_SUCCESS, TRANSPORT_MPI_DESCRIBE_)
#define TRANSPORT_MPI_DESCRIBE_(code) transport_mpi_error_string((code), (char[MPI_MAX_ERROR_STRING]){0})

// A communicator of the MPI_COMM_WORLD ranks sharing `color`, ordered by `key`, that reports errors
// to MPI_CHECK (MPI_ERRORS_RETURN). Collective over MPI_COMM_WORLD; owned by the caller (MPI_Comm_free).
MPI_Comm transport_mpi_comm_split(int color, int key);

// Has the MPI transport t call poll(context) at each test of one of its requests, before testing
// it, so that the owner of t keeps its own messages moving while a blocking collective of t waits
// (the NCCL transport launches receives there; see transport_nccl.h). t must come from
// transport_mpi_create; poll NULL removes the hook; context is borrowed.
void transport_mpi_set_poll(Transport *t, void (*poll)(void *context), void *context);
