#!/bin/bash
# Farm one tasklist with a SLURM array job: every element of the array runs its own farmer
# on the same tasklist and workdir, and the farmers share the tasks between them. Elements
# may start at different times, on any nodes; one that starts when nothing is left to do
# exits at once.
#
#   sbatch examples/slurm_array.sh tasks.txt
#
# Use an array when your cluster hands out small pieces (a few cores) sooner than whole
# nodes, or when you want the campaign to start as soon as any resources are free. For whole
# nodes that all start together, see slurm_multinode.sh; for a campaign longer than the time
# limit, see slurm_requeue.sh. Everything sbatch is told below can also be given on the
# sbatch command line, which wins over these lines (e.g. `sbatch --array=0-31 ...`).
#
# Before submitting, make `farmer` available (activate the virtualenv or load the module you
# installed taskfarmer into): the job inherits the environment you submit from. Add the
# options your site needs (--account, --partition, --qos, --constraint, ...).
#
# Options for the farmer itself (see `farmer --help`) can be passed in FARMER_OPTS:
#   FARMER_OPTS="--verbose --retries 2" sbatch examples/slurm_array.sh tasks.txt
# --logs packed: the tasks' output goes into two files per worker, not one file per task
# (inodes, and the metadata server's time); read a task's with `farmer TASKLIST --task-log ID`
# (docs/usage.md#logs-at-scale).
#
# The state of the campaign lives in TASKLIST_workdir next to the tasklist (`finished`,
# `failed`, `toprocess`, `logs/`, `timeline.json`). It must be on a filesystem all
# nodes share. Submit the same script again to run more farmers on it at any time.

#SBATCH --job-name=farmer-array
# 8 elements, each one farmer; `%4` would let at most 4 of them run at once.
#SBATCH --array=0-7
#SBATCH --ntasks=1
# The farmer runs this many tasks at once: it uses the CPUs SLURM gives it
# (SLURM_CPUS_PER_TASK), so set this to what your tasks should share.
#SBATCH --cpus-per-task=4
#SBATCH --time=01:00:00
# Before the time limit, SLURM sends USR1 to the farmer (B: = to the batch script, which
# `exec` below turns into the farmer). It then stops its running tasks, puts them back into
# `toprocess` for the other elements or a later job, and exits with code 3. Give it at least
# a few seconds; 60 is generous.
#SBATCH --signal=B:USR1@60
# %A is the array's job id, %a the element.
#SBATCH --output=farmer-%A_%a.out

if [ "$#" -ne 1 ]; then
    echo "usage: sbatch $0 TASKLIST" >&2
    exit 2
fi

echo "$(date '+%F %T') array job ${SLURM_ARRAY_JOB_ID:-?} element ${SLURM_ARRAY_TASK_ID:-?}" \
     "on node ${SLURMD_NODENAME:-$(hostname)}"

# `exec`: the farmer replaces this shell, so the USR1 sent to the batch script reaches it
# directly, and its exit code is the job's: 0 all done, 1 done with some tasks failed (see
# TASKLIST_workdir/failed), 2 a usage or state error, 3 stopped with work left.
# FARMER_OPTS is left unquoted on purpose: it holds several words.
# shellcheck disable=SC2086
exec farmer "$1" --logs packed ${FARMER_OPTS:-}
