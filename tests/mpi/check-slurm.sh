#!/bin/bash
# `srun` starts yolopipe as mpirun does (README): a one-node Slurm cluster on this machine (munged
# with a key of its own, slurmctld and slurmd, all state in a temporary directory; slurm.conf with
# ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, MpiDefault=pmix and this machine's
# CPUs, tasks overcommitted), then `srun -n 4 --mpi=pmix yolopipe train` of 2 stages x 2 replicas
# for 3 optimizer steps. Its weights must equal those of the same run under mpirun bit for bit
# (tolerance 0): the same 4 processes on one host, so the same transports and the same order of
# every sum.
#
# Exits 77 (skipped) with the reason where Slurm is missing (scripts/install-deps.sh installs
# slurmctld, slurmd, slurm-client and munge) or its daemons cannot start. The daemons are always
# stopped on exit.
#
# usage: check-slurm.sh SOURCE_ROOT YOLOPIPE COMPARE_WEIGHTS
set -u
export OMP_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
src=$(realpath "$1") yolopipe=$(realpath "$2") compare=$(realpath "$3")
skip() { echo "SKIP: $*"; exit 77; }
for tool in munged slurmctld slurmd srun sinfo; do
    command -v $tool >/dev/null || skip "no $tool: scripts/install-deps.sh installs Slurm (slurmctld slurmd slurm-client munge)"
done
srun --mpi=list 2>/dev/null | grep -q pmix || [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] ||
    skip "Slurm has no PMIx plugin (srun --mpi=list)"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.5
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work"
chmod 700 "$work"  # munged refuses a socket directory others can write to

# Two free TCP ports for the daemons (another cluster may run on this machine).
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
host=$(hostname)
cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it counts OMP_NUM_THREADS
user=$(id -un)

mkdir -p state spool munge
head -c 1024 /dev/urandom >munge/munge.key
chmod 400 munge/munge.key
munged --force --key-file="$work/munge/munge.key" --socket="$work/munge/munge.sock" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" --seed-file="$work/munge/munged.seed" \
    >munge/start.log 2>&1 || skip "munged does not start: $(tail -n 1 munge/start.log)"
pids+=("$(cat munge/munged.pid)")

cat >slurm.conf <<EOF
ClusterName=yolopipe-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
PlugStackConfig=$work/plugstack.conf
ReturnToService=2
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
: >plugstack.conf
export SLURM_CONF=$work/slurm.conf

slurmctld -D -i >slurmctld.out 2>&1 &
pids+=($!)
slurmd -D -N "$host" >slurmd.out 2>&1 &
pids+=($!)
state=
for _ in $(seq 1 100); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null)
    [ "$state" = idle ] && break
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null ||
            skip "a Slurm daemon exited: $(cat slurmctld.out slurmd.out | grep -iE 'error|fatal' | head -n 1)"
    done
    sleep 0.2
done
[ "$state" = idle ] || skip "the node did not become idle (state '$state'): $(grep -iE 'error' slurmctld.log slurmd.log | tail -n 1)"
echo "slurm: $(sinfo --version), node $host ($cpus CPUs) $state; srun --mpi=list: $(srun --mpi=list 2>&1 | tr -s ' \n' ' ')"

failures=0
args=("$src/tests/mpi/tiny.yaml" --set "model=$src/experiments/models/yolov8.yaml" --set "data=$work/data/tiny/data.yaml"
      --set "output.dir=$work/runs" --set train.max_steps=3 --set parallel.stages=2 --set parallel.replicas=2
      --set parallel.micro_batches=2)
"$yolopipe" synth --out "$work/data/tiny" --train 32 --val 12 --imgsz 64 --classes 3 --seed 1 >synth.log 2>&1 ||
    { echo "FAIL synth"; cat synth.log; exit 1; }
if ! "$src/tests/mpi/mpirun.sh" 4 "$yolopipe" train "${args[@]}" --set name=mpirun >mpirun.log 2>&1; then
    echo "FAIL under mpirun"; tail -n 15 mpirun.log; exit 1
fi
if ! timeout -k 5 300 srun -n 4 --overcommit --mpi=pmix --kill-on-bad-exit=1 "$yolopipe" train "${args[@]}" --set name=srun \
    >srun.log 2>&1; then
    echo "FAIL under srun"; tail -n 15 srun.log; exit 1
fi
grep -q "pipeline: 2 stages x 2 replicas (4 ranks)" srun.log || { echo "FAIL srun: not one job of 4 ranks"; tail srun.log; exit 1; }
if out=$("$compare" runs/srun/weights/last runs/mpirun/weights/last 0); then echo "ok   srun vs mpirun: $out"
else echo "FAIL srun vs mpirun: $out"; failures=$((failures + 1)); fi
exit $((failures > 0))
