// MPI_CHECK, for the files that call MPI directly (transport_mpi.c; an NCCL transport's MPI bootstrap).
#pragma once

#include <mpi.h>

#include "framework/error.h"

// Writes MPI's text for an error code into buf and returns buf.
const char *transport_mpi_error_string(int code, char buf[MPI_MAX_ERROR_STRING]);

// Evaluates an MPI call once; on failure prints the call, MPI's message and where, and ends the
// job (framework/error.h). The communicators use MPI_ERRORS_RETURN so that failures arrive here.
// The message buffer is a compound literal, alive until the failure report returns (it never does).
#define MPI_CHECK(call)                                                         \
    YP_LIBRARY_CHECK("MPI", call, int, MPI_SUCCESS, TRANSPORT_MPI_DESCRIBE_)
#define TRANSPORT_MPI_DESCRIBE_(code) transport_mpi_error_string((code), (char[MPI_MAX_ERROR_STRING]){0})
