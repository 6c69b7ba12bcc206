#!/bin/bash
# Farm one tasklist over several nodes at once: one job of N nodes, one farmer per node
# started with srun, all sharing the tasklist and its workdir.
#
#   sbatch examples/slurm_multinode.sh tasks.txt
#   sbatch --nodes=8 examples/slurm_multinode.sh tasks.txt      # more nodes
#
# Use this when your site prefers (or only gives) whole nodes, or when the nodes should start
# and stop together. For many small independent pieces see slurm_array.sh; for a campaign
# longer than the time limit see slurm_requeue.sh. The sbatch command line wins over the
# #SBATCH lines below.
#
# Before submitting, make `farmer` available (activate the virtualenv or load the module you
# installed taskfarmer into): the job and its srun steps inherit the environment you submit
# from. Add the options your site needs (--account, --partition, --qos, --constraint, ...).
#
# Options for the farmer itself (see `farmer --help`) can be passed in FARMER_OPTS:
#   FARMER_OPTS="--verbose --retries 2" sbatch examples/slurm_multinode.sh tasks.txt
# --logs packed: the tasks' output goes into two files per worker, not one file per task
# (inodes, and the metadata server's time); read a task's with `farmer TASKLIST --task-log ID`
# (docs/usage.md#logs-at-scale).
#
# The state of the campaign lives in TASKLIST_workdir next to the tasklist (`finished`,
# `failed`, `toprocess`, `logs/`, `timeline.json`), on a filesystem all nodes share.
# Every log line and timeline track names the node it comes from ($SLURMD_NODENAME).

#SBATCH --job-name=farmer-nodes
#SBATCH --nodes=2
# One farmer per node ...
#SBATCH --ntasks-per-node=1
# ... running this many tasks at once: set it to the cores of a node (or to cores divided by
# the threads one task uses). The farmer takes its default --proc from it.
#SBATCH --cpus-per-task=8
#SBATCH --time=01:00:00
# Before the time limit, SLURM sends USR1 to every process of the job step (no "B:"): the
# farmers (and their tasks). Each farmer then stops its tasks, puts them back into
# `toprocess` and exits with code 3. Give it at least a few seconds; 60 is generous.
#SBATCH --signal=USR1@60
#SBATCH --output=farmer-%j.out

if [ "$#" -ne 1 ]; then
    echo "usage: sbatch $0 TASKLIST" >&2
    exit 2
fi

echo "$(date '+%F %T') job $SLURM_JOB_ID on nodes $SLURM_JOB_NODELIST"

# --cpus-per-task is passed on explicitly: since SLURM 22.05, srun does not (always) take it
# over from sbatch, and without it the step may get one CPU per node.
# --kill-on-bad-exit=0: a farmer that ends with failed tasks (exit code 1) must not get the
# others killed where the cluster kills a step on a non-zero exit by default.
# srun's exit code is the highest of the farmers': 0 all done, 1 done with some tasks failed
# (see TASKLIST_workdir/failed), 2 a usage or state error, 3 stopped with work left.
# FARMER_OPTS is left unquoted on purpose: it holds several words.
# shellcheck disable=SC2086
srun --ntasks-per-node=1 ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} \
     --kill-on-bad-exit=0 farmer "$1" --logs packed ${FARMER_OPTS:-}
