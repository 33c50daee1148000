#!/bin/sh
# A launch agent for mpirun (--mca plm_rsh_agent), for tests/mpi/check-hosts.sh: in ssh's place,
# `netns-agent.sh HOST COMMAND...` runs COMMAND on HOST, a network namespace of this machine named
# like the host, in a UTS namespace of its own whose hostname is HOST. Like ssh, it joins the
# arguments into one shell command (Open MPI hands the orted's command line over as ssh expects).
host=$1
shift
exec ip netns exec "$host" unshare --uts sh -c 'hostname "$1" && shift && eval "$*"' sh "$host" "$@"
