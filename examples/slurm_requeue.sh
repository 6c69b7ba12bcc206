#!/bin/bash
# A campaign longer than one job's time limit, e.g. on a preemptible or "flex" queue: the job
# farms the tasklist until shortly before its time limit, puts the running tasks back, and
# requeues itself; SLURM starts it again later, and the farmer continues where it stopped,
# until every task is done.
#
#   sbatch examples/slurm_requeue.sh tasks.txt
#
# How it works:
#   1. `--signal=B:USR1@60` (below): 60 s before the time limit SLURM sends USR1 to this batch
#      script. The script traps it and passes it on to the farmer.
#   2. The farmer stops its running tasks (SIGTERM, then SIGKILL), puts them back into
#      `toprocess` (they are not counted as failed) and exits with code 3 = "stopped with work
#      left".
#   3. On exit code 3 the script runs `scontrol requeue $SLURM_JOB_ID`. The job goes back to
#      the queue with the same job id (and the same arguments), waits a little (SLURM holds a
#      requeued job back for about two minutes with its default settings) and runs again;
#      SLURM_RESTART_COUNT counts the runs.
#      Any other exit code ends the campaign: 0 all tasks done, 1 all done with some failed (see
#      TASKLIST_workdir/failed), 2 a usage or state error or a failed filesystem operation (disk
#      full, quota exceeded, I/O error: the farmer put its tasks back and printed one line
#      naming the file). 2 is not requeued on purpose: the requeued job would fail the same way.
#      Fix the cause (free space, raise the quota, correct the line named), then submit again:
#      the farmer continues where it stopped.
#   4. Exit code 6: this node is quarantined (its tasks failed fast here while they succeed
#      elsewhere: a broken environment; docs/failures.md). The farmer handed those tasks back
#      uncounted. The script submits itself again as a new job with
#      `sbatch --exclude=$(farmer TASKLIST --quarantined)`, away from every quarantined node
#      (SLURM cannot change a running job's excluded nodes, so requeueing could land on the
#      same node). The new job writes its own output file.
#   Cancelling the job (scancel) or reaching the time limit without the USR1 (SIGTERM) stops
#   the farmer cleanly as well, but does not requeue.
#
# Instead of the signal you can have the farmer stop itself: with FARMER_OPTS="--timeout
# 3300" and --time=01:00:00 it stops after 55 minutes, exits with code 3, and the job
# requeues the same way.
#
# Variant: SLURM signals the job step instead of the batch script. Write
#   #SBATCH --signal=USR1@60             (no "B:")
# and submit with FARMER_SRUN=1 in the environment: the farmer then runs as a job step under
# srun, and SLURM sends USR1 to every process of the step, the farmer and its tasks alike
# (the farmer puts the tasks back all the same). With FARMER_SRUN=1 the job may span several
# nodes (--nodes=N), one farmer per node, and the B: form above works too (this script
# passes USR1 on to srun, which passes it on to the step). Where one node is enough, prefer
# the B: form without srun: then only the farmer is signalled, and it stops each task whole
# (docs/slurm.md, "Which processes a signal reaches", explains why that matters).
#
# Before submitting, make `farmer` available (activate the virtualenv or load the module you
# installed taskfarmer into): the job inherits the environment you submit from. Add the
# options your site needs (--account, --partition, --qos, --constraint, --time-min, ...).
# Options for the farmer itself (see `farmer --help`) go into FARMER_OPTS:
#   FARMER_OPTS="--verbose --retries 2" sbatch examples/slurm_requeue.sh tasks.txt
# --logs packed: the tasks' output goes into two files per worker, not one file per task
# (inodes, and the metadata server's time); read a task's with `farmer TASKLIST --task-log ID`
# (docs/usage.md#logs-at-scale).

#SBATCH --job-name=farmer-campaign
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
# Tasks run at once: the farmer takes its default --proc from this.
#SBATCH --cpus-per-task=8
# Longer than your longest task, better several times longer: a task still running at the
# signal is killed and runs again from the start in the next job.
#SBATCH --time=02:00:00
# USR1 to this batch script ("B:") 60 s before the time limit; the farmer needs a few seconds.
#SBATCH --signal=B:USR1@60
# The job may be requeued, and each run appends to the same output file (without
# --open-mode=append SLURM would empty it at every restart).
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=farmer-%j.out

if [ "$#" -ne 1 ]; then
    echo "usage: sbatch $0 TASKLIST" >&2
    exit 2
fi

say() { echo "$(date '+%F %T') batch script: $*"; }

say "job $SLURM_JOB_ID run $((${SLURM_RESTART_COUNT:-0} + 1)) on ${SLURM_JOB_NODELIST:-?}"

farmer_pid=   # set once the farmer runs
stop_signal=  # USR1 or TERM once one arrived
trapped=      # set by every trapped signal (see the wait loop)

# Pass a signal on to the farmer (or to srun, which passes it on to the step).
# shellcheck disable=SC2317  # called by the traps below
stop_farmer() {
    trapped=yes
    stop_signal=$1
    say "got SIG$1, passing it on to the farmer"
    if [ -n "$farmer_pid" ]; then
        kill -s "$1" "$farmer_pid" 2>/dev/null
    fi
}
trap 'stop_farmer USR1' USR1
# On scancel or at the time limit SLURM sends SIGTERM to every process of the job, the farmer
# too, and SIGKILL some seconds later (KillWait). This trap keeps the script, and so the job,
# running until the farmer has put its tasks back and exited; it does not requeue.
trap 'stop_farmer TERM' TERM

# The farmer runs in the background (`&`): bash runs a trap only between commands, and
# `wait` is the one command it interrupts for a trap.
# FARMER_OPTS is left unquoted on purpose: it holds several words.
# shellcheck disable=SC2086
if [ "${FARMER_SRUN:-0}" = 1 ]; then
    # --cpus-per-task is passed on explicitly: since SLURM 22.05, srun does not (always) take
    # it over from sbatch. --kill-on-bad-exit=0: one farmer's exit code 1 must not get the
    # others killed.
    srun --ntasks-per-node=1 ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} \
         --kill-on-bad-exit=0 farmer "$1" --logs packed ${FARMER_OPTS:-} &
else
    farmer "$1" --logs packed ${FARMER_OPTS:-} &
fi
farmer_pid=$!
if [ -n "$stop_signal" ]; then   # it arrived before $farmer_pid was known
    kill -s "$stop_signal" "$farmer_pid" 2>/dev/null
fi

# `wait` returns early (with 128 + the signal number) when a trapped signal arrives, while the
# farmer is still putting its tasks back: then wait again, for the farmer's own exit code.
while :; do
    trapped=
    wait "$farmer_pid"
    status=$?
    if [ "$status" -le 128 ] || [ -z "$trapped" ]; then
        break
    fi
done
say "farmer exited with code $status"

# 3: stopped with work left. 138 (= 128 + USR1): the USR1 came so early that the farmer was
# still starting up and had not installed its handler yet; there may be work left too.
if [ "$stop_signal" != TERM ] && { [ "$status" -eq 3 ] ||
        { [ "$stop_signal" = USR1 ] && [ "$status" -eq 138 ]; }; }; then
    if scontrol requeue "$SLURM_JOB_ID"; then
        say "work left: job $SLURM_JOB_ID requeued"
        exit 0
    fi
    say "work left, but scontrol requeue failed (submitted without --requeue?)"
fi

# 6: this node is quarantined. Its tasks failed fast here while they succeed elsewhere (or did
# here before): a broken environment. The farmer handed them back uncounted and stopped, or
# did not start at all. A requeued job may land on the same node again, and SLURM does not
# change the nodes a running job excludes: so submit this script again as a new job that
# excludes every node quarantined now (farmer --quarantined lists them). The new job gets this
# one's name, partition, account, QOS, node count, CPUs per task and time limit.
if [ "$stop_signal" != TERM ] && [ "$status" -eq 6 ]; then
    # shellcheck disable=SC2086
    exclude=$(farmer "$1" --quarantined ${FARMER_OPTS:-})
    limit=$(squeue -h -j "$SLURM_JOB_ID" -o %l 2>/dev/null)
    if [ -n "$exclude" ] && sbatch --exclude="$exclude" ${limit:+--time="$limit"} \
            ${SLURM_JOB_NAME:+--job-name="$SLURM_JOB_NAME"} \
            ${SLURM_JOB_PARTITION:+--partition="$SLURM_JOB_PARTITION"} \
            ${SLURM_JOB_ACCOUNT:+--account="$SLURM_JOB_ACCOUNT"} \
            ${SLURM_JOB_QOS:+--qos="$SLURM_JOB_QOS"} \
            ${SLURM_JOB_NUM_NODES:+--nodes="$SLURM_JOB_NUM_NODES"} \
            ${SLURM_CPUS_PER_TASK:+--cpus-per-task="$SLURM_CPUS_PER_TASK"} "$0" "$1"; then
        say "node ${SLURMD_NODENAME:-?} quarantined: submitted again, excluding $exclude"
        exit 0
    fi
    say "node ${SLURMD_NODENAME:-?} quarantined, but submitting again (excluding ${exclude:-?}) failed"
fi
exit "$status"
