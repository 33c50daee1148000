#!/bin/bash
# Two hosts on this machine. Hosts A and B are network namespaces joined by a veth pair (10.77.0.1/24
# and 10.77.0.2/24), each with its own UTS namespace and hostname; mpirun runs in A and starts B's
# ranks through a hostfile and a launch agent (tests/mpi/netns-agent.sh, in ssh's place), over TCP
# only (no shared memory between hosts). 2 stages x 2 replicas, rank_order replica-first, 2 slots
# per host: stage 0 (world ranks 0, 1) on A, stage 1 (world ranks 2, 3) on B.
#   (1) Three optimizer steps across the hosts give one process's weights (as check-equivalence.sh
#       holds them: resumed from a 40-step one-process base, tolerance 1e-5 relative for the
#       replicas' all-reduce order), and measured.json says each rank's host and local rank.
#   (2) The link goes down mid-training (ip link set down, from outside): every rank exits within
#       parallel.recv_timeout (5 s) + 5 s, each saying what it waited for and naming the peer ranks
#       with their hosts, and the whole job (mpirun, B's daemon) ends.
#   (3) Every process of host B is killed (SIGKILL): host A's ranks end with a message, the job
#       ends, and what the job printed names host B.
# The bounds are behaviour bounds (the job ends instead of hanging), not performance figures. Each
# rank's output is also kept per rank where it runs (mpirun --output-filename): B's lines cannot
# reach mpirun while the link is down.
#
# With the link down, mpirun learns that B's daemon is gone only when TCP gives up on their
# connection; the namespaces set net.ipv4.tcp_retries2 = 5 (about 13 s; Linux's default of 15 takes
# about 15 minutes), as a cluster that wants lost nodes noticed does. That is still longer than the
# receive timeout, so the ranks' own timeouts, not TCP errors, end them.
#
# Exits 77 (skipped) with the reason where the namespaces cannot be made (not root, no ip/unshare,
# no CAP_NET_ADMIN).
#
# usage: check-hosts.sh SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS
set -u
export OMP_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
src=$(realpath "$1") yolopipe=$(realpath "$2") compare=$(realpath "$3")
agent=$src/tests/mpi/netns-agent.sh
recv_timeout=5
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "not root: network namespaces need CAP_NET_ADMIN"
for tool in ip unshare mpirun timeout; do command -v $tool >/dev/null || skip "no $tool"; done

tag=yp$$                       # unique per run; interface names stay within 15 characters
hostA=${tag}a hostB=${tag}b    # the namespaces, their hostnames and their veth ends
work=$(mktemp -d)
job=
cleanup() {
    [ -n "$job" ] && kill -9 "$job" 2>/dev/null
    for h in $hostA $hostB; do ip netns pids $h 2>/dev/null | xargs -r kill -9 2>/dev/null; done
    ip netns del $hostA 2>/dev/null
    ip netns del $hostB 2>/dev/null
    if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work"

ip netns add $hostA 2>err || skip "cannot create a network namespace: $(head -n 1 err)"
ip netns add $hostB 2>err || skip "cannot create a network namespace: $(head -n 1 err)"
ip link add $hostA type veth peer name $hostB 2>err || skip "cannot create a veth pair: $(head -n 1 err)"
ip link set $hostA netns $hostA && ip link set $hostB netns $hostB &&
    ip -n $hostA addr add 10.77.0.1/24 dev $hostA && ip -n $hostB addr add 10.77.0.2/24 dev $hostB &&
    for h in $hostA $hostB; do ip -n $h link set lo up && ip -n $h link set $h up || exit 1; done 2>err ||
    skip "cannot set up the veth pair: $(head -n 1 err)"
ip netns exec $hostA unshare --uts true 2>err || skip "cannot create a UTS namespace: $(head -n 1 err)"
for h in $hostA $hostB; do
    ip netns exec $h sysctl -qw net.ipv4.tcp_retries2=5 || echo "note: tcp_retries2 unchanged in $h: mpirun may wait for TCP"
done
printf '%s slots=2\n%s slots=2\n' $hostA $hostB >hostfile

failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# on_host HOST COMMAND...: runs COMMAND in HOST's namespaces, as the agent does (argv kept as is).
on_host() {
    local h=$1
    shift
    ip netns exec "$h" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$h" "$@"
}

# mpirun_hosts NAME LIMIT_S ARGS...: mpirun in host A on both hosts' 4 slots, killed after LIMIT_S;
# each rank's output also in out/NAME/1/rank.N/{stdout,stderr}, written on the rank's host.
mpirun_hosts() {
    local name=$1 limit=$2
    shift 2
    timeout -k 5 "$limit" ip netns exec $hostA unshare --uts sh -c 'hostname "$0" && exec "$@"' $hostA \
        mpirun --allow-run-as-root -np 4 --hostfile "$work/hostfile" --mca plm_rsh_agent "$agent" \
        --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
        --output-filename "$work/out/$name" "$@"
}

common=(--set "model=$src/experiments/models/yolov8.yaml" --set "data=$work/data/tiny/data.yaml"
        --set "output.dir=$work/runs" --set train.epochs=30)
layout=(--set parallel.stages=2 --set parallel.replicas=2 --set parallel.micro_batches=2
        --set parallel.rank_order=replica-first)

# ---- (1) equivalence and placement --------------------------------------------------------------
one() {  # one NAME [--set k=v]...: one process, no launcher
    local name=$1
    shift
    "$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" --set "name=$name" "$@" >"$name.log" 2>&1 ||
        { echo "FAIL $name: exit $?"; tail -n 15 "$name.log"; exit 1; }
}
one base --set train.batch=8 --set parallel.micro_batches=4 --set train.max_steps=40
cp -r runs/base runs/ref
one ref --resume --set train.batch=8 --set parallel.micro_batches=4 --set train.max_steps=43
cp -r runs/base runs/hosts
if mpirun_hosts hosts 300 "$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" --set name=hosts --resume \
    --set train.batch=8 --set train.max_steps=43 "${layout[@]}" >hosts.log 2>&1; then
    if out=$("$compare" runs/hosts/weights/last runs/ref/weights/last 1e-5); then echo "ok   two hosts vs one process: $out"
    else fail "two hosts vs one process: $out"; fi
    if out=$(python3 - runs/hosts/measured.json $hostA $hostB <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
a, b = sys.argv[2], sys.argv[3]
got = {k: m[k] for k in ("host", "local_rank", "local_size", "pipeline_rank", "replica")}
want = {"host": [a, a, b, b], "local_rank": [0, 1, 0, 1], "local_size": [2, 2, 2, 2],
        "pipeline_rank": [0, 0, 1, 1], "replica": [0, 1, 0, 1]}
print(got)
sys.exit(0 if got == want else 1)
PY
    ); then echo "ok   placement: $out"; else fail "placement: $out"; fi
else
    fail "training across the hosts: exit $?"; tail -n 20 hosts.log
fi

# ---- the faults -----------------------------------------------------------------------------------
# start_long NAME: trains far longer than the test in the background ($job); returns once steps run.
start_long() {
    local name=$1
    mpirun_hosts "$name" 120 "$yolopipe" train "$src/tests/mpi/tiny.yaml" "${common[@]}" --set "name=$name" \
        --set train.epochs=200 --set parallel.recv_timeout=$recv_timeout "${layout[@]}" >"$name.log" 2>&1 &
    job=$!
    for _ in $(seq 1 240); do
        grep -qs "run directory" "$name.log" && { sleep 3; return 0; }  # then well inside training steps
        kill -0 $job 2>/dev/null || break
        sleep 0.5
    done
    echo "FAIL $name: the job ended before training"; tail -n 20 "$name.log"; exit 1
}

ranks_in() {  # ranks_in HOST: how many yolopipe processes run in HOST's namespace
    local n=0
    for pid in $(ip netns pids "$1"); do [ "$(readlink /proc/$pid/exe 2>/dev/null)" = "$yolopipe" ] && n=$((n + 1)); done
    echo $n
}

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# rank_line NAME RANK: the rank's last line of its own, from its output on its host.
rank_line() { grep -h "^yolopipe: rank $2 " "out/$1/1/rank.$2/stderr" 2>/dev/null | tail -n 1; }

# ---- (2) the link goes down -------------------------------------------------------------------------
start_long down
t0=$(date +%s%N)
ip -n $hostA link set $hostA down
ranks_ms= job_ms=
while :; do
    [ -z "$ranks_ms" ] && [ "$(ranks_in $hostA)" = 0 ] && [ "$(ranks_in $hostB)" = 0 ] && ranks_ms=$(ms_since $t0)
    kill -0 $job 2>/dev/null || { job_ms=$(ms_since $t0); break; }
    [ "$(ms_since $t0)" -gt 90000 ] && break
    sleep 0.2
done
wait $job
rc=$?
job=
for _ in $(seq 1 150); do [ -z "$(ip netns pids $hostB)" ] && break; sleep 0.2; done  # B's daemon, last
rest_ms=$(ms_since $t0)
echo "link down: every rank gone after ${ranks_ms:-?} ms, mpirun exited with $rc after ${job_ms:-?} ms," \
     "host B empty after $rest_ms ms"
for r in 0 1 2 3; do echo "  rank $r: $(rank_line down $r)"; done
[ $rc != 0 ] || fail "link down: the job exited 0"
[ -n "$ranks_ms" ] && [ "$ranks_ms" -le $(((recv_timeout + 5) * 1000)) ] ||
    fail "link down: the ranks took more than recv_timeout + 5 s to exit"
[ -n "$job_ms" ] && [ "$job_ms" -le $(((recv_timeout + 30) * 1000)) ] || fail "link down: mpirun did not end in time"
[ -z "$(ip netns pids $hostB)" ] || fail "link down: host B still runs $(ip netns pids $hostB | xargs)"
# Each rank says what it waited for, with the ranks' hosts: its own timeout, or the launcher's
# signal after another rank's timeout (on host A, where mpirun is).
for r in 0 1 2 3; do
    line=$(rank_line down $r)
    echo "$line" | grep -qE "(timed out after $recv_timeout s waiting for|stopped by signal 15 .*, waiting for) .* on ($hostA|$hostB)" ||
        fail "link down: rank $r does not name what it waited for and where: '$line' (its stderr ends:" \
            "$(tail -n 5 "out/down/1/rank.$r/stderr" 2>/dev/null | tr '\n' '|'))"
done
for r in 2 3; do  # B cannot hear from mpirun: its ranks end by their own timeout
    rank_line down $r | grep -q "timed out after $recv_timeout s" || fail "link down: rank $r (host B) did not time out"
done
# The peers across the link are named by host: A's ranks wait for B's and B's for A's (or for the
# collective of both, which names them).
grep -qE "^yolopipe: rank [01] .* on $hostB" out/down/1/rank.[01]/stderr || fail "link down: no rank on A names host B"
grep -qE "^yolopipe: rank [23] .* on $hostA" out/down/1/rank.[23]/stderr || fail "link down: no rank on B names host A"
# The link back up, for case (3). Both ends forget their neighbours: B's entry for A failed while
# the link was down, and a connect to a failed entry fails at once instead of asking again.
ip -n $hostA link set $hostA up && ip -n $hostA neigh flush all && ip -n $hostB neigh flush all

# ---- (3) host B is lost -----------------------------------------------------------------------------
start_long lost
victims=$(ip netns pids $hostB | xargs)
t0=$(date +%s%N)
kill -9 $victims
wait $job
rc=$?
job=
job_ms=$(ms_since $t0)
echo "host B killed (pids $victims): mpirun exited with $rc after $job_ms ms"
for r in 0 1; do echo "  rank $r: $(rank_line lost $r)"; done
grep -E "on node|$hostB" lost.log | grep -v "^yolopipe: rank" | head -n 3 | sed 's/^/  launcher: /'
[ $rc != 0 ] || fail "host lost: the job exited 0"
[ "$job_ms" -le 30000 ] || fail "host lost: the job took more than 30 s"
[ "$(ranks_in $hostA)" = 0 ] || fail "host lost: ranks left running on A"
said=0
for r in 0 1; do
    line=$(rank_line lost $r)
    [ -z "$line" ] && continue
    said=$((said + 1))
    echo "$line" | grep -qE "stopped by signal|timed out after" || fail "host lost: rank $r ended with '$line'"
done
[ $said -gt 0 ] || fail "host lost: no rank on A said what it was doing"
grep -q "$hostB" lost.log out/lost/1/rank.[01]/stderr || fail "host lost: nothing names host B"

[ $failures = 0 ] && echo "ok: two hosts"
exit $((failures > 0))
