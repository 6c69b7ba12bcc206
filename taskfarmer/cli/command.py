"""The ``farmer`` command: a thin click layer over :func:`taskfarmer.farm.open_farm`."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import click

import taskfarmer

from ..errors import ConfigError, UsageError
from ..farm import FarmConfig, open_farm
from ..farm.blackhole import DEFAULT_ROW
from ..farm.farmer import workdir_for
from ..farm.halt import HaltPolicy, parse_halt
from ..farm.signals import ignore_stop_signals
from ..hpc.memory import parse_size
from ..hpc.resources import discover_devices, plan_slots
from ..hpc.slurm import default_proc
from ..hpc.walltime import DEFAULT_MARGIN, slurm_job_end
from ..logs.tasklogs import LOG_LAYOUTS
from ..registry import Registry
from ..store import DEFAULT_LEASE, MIN_LEASE
from ..store.locking import LOCK_KINDS
from .listing import print_listing
from .numbers import MAX_RETRIES, proc_type, seconds_type, whole_type
from .piped import STDIN, spooled
from .progress import make_display
from .status import dry_run_command, quarantined_command, status_command, verify_command
from .tasklog import task_log_command

EPILOG = """Exit codes: 0 all tasks done, none failed; 1 all done, some failed; 2 usage,
configuration or state error; 3 stopped early (signal, --timeout or the SLURM time
limit) with work left; 4 --verify found the workdir inconsistent; 5 the farm was halted
(--halt) with work left; 6 this node is quarantined (its tasks failed fast while they
succeed elsewhere), work left."""



class QuarantineRow(click.ParamType):
    """``--quarantine``: a number of failures in a row (at least 1), or ``off`` (None)."""

    name = "K|off"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip()
        if text.lower() == "off":
            return None
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"{value!r} is neither a number of failures in a row (1 or more) nor off",
                  param, ctx)


def _lister(catalog: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    """Callback of ``--list-runners`` / ``--list-tasklists``: print the catalog and exit."""
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if not value or ctx.resilient_parsing:
            return
        print_listing(getattr(Registry(), catalog), sys.stdout, sys.stdout.isatty())
        ctx.exit(0)
    return callback


def _halt_rule(ctx: click.Context, param: click.Parameter, value: str) -> HaltPolicy | None:
    """Callback of ``--halt``: the rule (:func:`~taskfarmer.farm.halt.parse_halt`)."""
    try:
        return parse_halt(value)
    except UsageError as error:
        raise click.BadParameter(str(error)) from None


class Size(click.ParamType):
    """A size in bytes written ``500M``, ``2G`` ... (:func:`~taskfarmer.hpc.memory.parse_size`)."""

    name = "size"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        """The bytes of ``value``; a one-line usage error if it is not a size."""
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except UsageError as error:
            self.fail(str(error), param, ctx)


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.argument("tasklist", type=click.Path(path_type=Path, dir_okay=True), required=False)
# -j: GNU parallel's name for it (no other option starts with -j).
@click.option("--proc", "-n", "-j", type=proc_type(), default=None, metavar="N",
              help="Tasks to run at once, at most 64 per CPU or 256, whichever is more [default: "
                   "the CPUs this process may use; inside SLURM, those of the step].")
@click.option("--timeout", type=seconds_type(above=True), default=None,
              metavar="SECONDS", help="Stop after SECONDS, putting running tasks back.")
@click.option("--workdir", "-w", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where state, logs and timeline go [default: TASKLIST_workdir].")
@click.option("--verbose", "-v", is_flag=True, help="One line per task start and end.")
@click.option("--runner", "-r", default="default", show_default=True,
              help="Runner definition to run tasks with.")
@click.option("--tasklist", "-t", "handler", default="default", show_default=True,
              help="Tasklist handler definition to read TASKLIST with.")
# At least MIN_LEASE: heartbeats come from the main loop, which wakes every 0.5 s at worst; four
# of them per lease leave no room below.
@click.option("--lease", type=seconds_type(MIN_LEASE, unset=""), default=DEFAULT_LEASE,
              show_default=True, metavar="SECONDS",
              help="Take over the tasks of a farmer silent for this long.")
@click.option("--retries", type=whole_type(0, MAX_RETRIES, ", the most retries"), default=0,
              show_default=True, metavar="N",
              help="Run a failed task up to N more times before recording it in failed.")
@click.option("--task-timeout", type=seconds_type(above=True), default=None,
              metavar="SECONDS", help="Kill a task running longer than this (a failed attempt).")
@click.option("--halt", "halt", default="never", show_default=True, callback=_halt_rule,
              metavar="[now|soon,]fail=N[%]",
              help="Halt the farm (every farmer of the workdir) at the N-th failed task, or "
                   "once N% of the ended tasks failed: now stops the running tasks, soon lets "
                   "them finish; the rest stays pending (exit code 5).")
@click.option("--quarantine", type=QuarantineRow(), default=str(DEFAULT_ROW),
              show_default=True, metavar="K|off",
              help="Quarantine this node after K tasks in a row failed fast here while tasks "
                   "succeed elsewhere (their tasks go back, uncounted; the farmer exits 5 and "
                   "farmers do not start here for an hour); off: never, and ignore records.")
@click.option("--requeue-failed", is_flag=True,
              help="Put the tasks in WORKDIR/failed back into toprocess, then run.")
@click.option("--task-time", type=seconds_type(above=True, unset=" (leave the option out to "
                                                           "learn it)"), default=None,
              metavar="SECONDS",
              help="Start no task later than this before the time limit (SLURM job end or "
                   "--timeout) [default: learned from the workdir's finished tasks].")
@click.option("--stop-margin", type=seconds_type(unset=""), default=DEFAULT_MARGIN,
              show_default=True, metavar="SECONDS",
              help="Inside SLURM, stop this long before the job's end, putting tasks back.")
@click.option("--gpus-per-task", type=whole_type(1), default=None, metavar="N",
              help="Give each worker slot its own N GPUs (CUDA_VISIBLE_DEVICES ...); --proc "
                   "defaults to the number of such sets.")
@click.option("--cpus-per-task", type=whole_type(1), default=None, metavar="N",
              help="Pin each worker slot to its own N CPUs, OMP_NUM_THREADS=N unless set; "
                   "--proc defaults to CPUs / N.")
@click.option("--mem-per-task", type=Size(), default=None, metavar="SIZE",
              help="Each task needs about SIZE of memory (500M, 2G): start no more at once "
                   "than fit under the memory cgroup's limit, or the node's memory "
                   "[default: learned from the tasks' peak memory].")
@click.option("--follow", is_flag=True,
              help="When every task is done, wait for lines appended to TASKLIST instead of "
                   "exiting (until a stop signal or --timeout).")
@click.option("--accept-list", is_flag=True,
              help="Take TASKLIST as it is now even though lines already imported changed: "
                   "as many lines as were imported count as imported, later lines are new.")
@click.option("--lock", "lock_kind", type=click.Choice(LOCK_KINDS),
              default=lambda: os.environ.get("TASKFARMER_LOCK", "flock"),
              help="flock, or soft (O_EXCL lock file) for filesystems without flock "
                   "[default: $TASKFARMER_LOCK or flock].")
@click.option("--logs", "logs", type=click.Choice(LOG_LAYOUTS), default="flat",
              show_default=True,
              help="Task logs: flat (logs/log_ID), spread (logs/ID//1000/log_ID), nonempty "
                   "(logs/log_ID only for tasks that print something) or packed (a few files "
                   "per farmer, none per task: for big runs; read with --task-log).")
@click.option("--task-log", "task_log", type=whole_type(0, 2**63 - 1, ", more than any task ID"),
              default=None, metavar="ID",
              help="Print the output of task ID, every execution of it with a line naming it "
                   "(start, node, outcome), whatever --logs wrote it, and exit.")
@click.option("--status", "show_status", is_flag=True,
              help="Show where the farm stands (read-only, safe while farmers run) and exit: "
                   "0 done, 1 done with failures, 3 work left, 2 no such workdir.")
@click.option("--verify", "verify", is_flag=True,
              help="Check that every task is in exactly one of finished, failed, pending or "
                   "running, and that the job log agrees (read-only, safe while farmers run) "
                   "and exit: 0 consistent, 4 not, 2 no such workdir.")
@click.option("--dry-run", is_flag=True,
              help="Print the tasks a farmer would run now, one 'ID<tab>command' line each, "
                   "and exit; nothing is changed or created.")
@click.option("--quarantined", "quarantined", is_flag=True,
              help="Print the nodes quarantined from this workdir, comma-separated (for "
                   "sbatch --exclude), and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --status: one JSON document.")
@click.option("--watch", is_flag=True,
              help="With --status: refresh in place until the farm is done (Ctrl-C ends).")
@click.option("--list-runners", is_flag=True, expose_value=False, is_eager=True,
              callback=_lister("runners"),
              help="List the runner definitions and the file each comes from, and exit.")
@click.option("--list-tasklists", is_flag=True, expose_value=False, is_eager=True,
              callback=_lister("tasklists"),
              help="List the tasklist handler definitions likewise, and exit.")
# PyTaskFarmer's empty __init__.py may have replaced ours: main() then says so (coinstall).
@click.version_option(getattr(taskfarmer, "__version__", "unknown"), "--version",
                      prog_name="farmer")
def cli(tasklist: Path | None, proc: int | None, timeout: float | None,
        workdir: Path | None, verbose: bool, runner: str, handler: str, lease: float,
        retries: int, task_timeout: float | None, requeue_failed: bool, follow: bool,
        accept_list: bool, lock_kind: str, logs: str, task_log: int | None,
        show_status: bool, as_json: bool, dry_run: bool,
        watch: bool, verify: bool, task_time: float | None, stop_margin: float,
        gpus_per_task: int | None, cpus_per_task: int | None,
        halt: HaltPolicy | None, quarantine: int | None, quarantined: bool,
        mem_per_task: int | None) -> None:
    """Run every line of TASKLIST as a shell command, PROC at a time.

    Any number of farmers, on any number of nodes, may share one TASKLIST and workdir.
    TASKLIST '-' is standard input (with --workdir).
    """
    environ = dict(os.environ)
    if (as_json or watch) and not show_status:
        raise click.UsageError("--json and --watch go with --status")
    if as_json and watch:
        raise click.UsageError("--json and --watch exclude each other")
    if sum((show_status, verify, task_log is not None, quarantined)) > 1:
        raise click.UsageError("--status, --verify, --task-log and --quarantined exclude "
                               "each other")
    reading = show_status or verify or task_log is not None or quarantined
    if dry_run and reading:
        raise click.UsageError("--dry-run goes with none of --status, --verify, --task-log, "
                               "--quarantined")
    if tasklist is None and (not reading or workdir is None):
        raise click.UsageError("missing TASKLIST (--status, --verify, --task-log and "
                               "--quarantined need TASKLIST or --workdir)")
    piped = tasklist == STDIN
    if piped and workdir is None:
        raise click.UsageError("TASKLIST '-' (standard input) needs --workdir: a farm on it "
                               "is continued with the same --workdir")
    if piped and follow:
        raise click.UsageError("--follow cannot wait for more of standard input: append to "
                               "a file and give that as TASKLIST")
    where = workdir_for(tasklist, workdir) if tasklist is not None else workdir
    if quarantined:
        assert where is not None  # the usage check above
        sys.exit(quarantined_command(where))
    if piped and reading:
        tasklist = None  # the workdir alone says where the farm stands
    if task_log is not None:
        assert where is not None  # the usage check above
        sys.exit(task_log_command(where, task_log, lock_kind, environ, sys.stdout.buffer))
    if show_status or verify:
        assert where is not None  # the usage check above
        sys.exit(verify_command(where, tasklist, lock_kind, lease, environ) if verify else
                 status_command(where, tasklist, lock_kind, lease, as_json, watch, environ))
    assert tasklist is not None
    registry = Registry(environ)
    the_runner = registry.runner(runner)
    try:
        the_runner.check(environ)  # before the workdir is touched: tasks stay pending
    except ConfigError as error:
        raise ConfigError(error.reason, option=f"--runner {runner}") from None
    the_handler = registry.tasklist(handler)
    for problem in registry.warnings():
        click.echo(f"farmer: warning: {problem}", err=True)
    slots = plan_slots(proc, default_proc(environ), gpus_per_task,
                       discover_devices(environ) if gpus_per_task else None,
                       cpus_per_task, sorted(os.sched_getaffinity(0)))
    assert where is not None
    with spooled(sys.stdin.buffer) if piped else nullcontext(tasklist) as path:
        if dry_run:
            sys.exit(dry_run_command(path, where, the_handler, requeue_failed, accept_list))
        config = FarmConfig(
            tasklist=path,
            workdir=where,
            proc=len(slots),
            slots=slots,
            timeout=timeout,
            verbose=verbose,
            lease=lease,
            retries=retries,
            task_timeout=task_timeout,
            requeue_failed=requeue_failed,
            follow=follow,
            accept_list=accept_list,
            environ=environ,
            logs=logs,
            task_time=task_time,
            stop_margin=stop_margin,
            job_end=slurm_job_end(environ),
            halt=halt,
            quarantine=quarantine,
            mem_per_task=mem_per_task,
        )
        report = open_farm(config, the_runner, the_handler, lock_kind, make_display).run()
    ignore_stop_signals()  # the farm has ended: a late stop signal must not change the code
    name = click.get_current_context().info_name
    if report.error is not None:
        click.echo(f"{name}: error: {report.error}", err=True)
    elif report.quarantine is not None:
        click.echo(f"{name}: {report.quarantine}", err=True)
    sys.exit(report.exit_code)
