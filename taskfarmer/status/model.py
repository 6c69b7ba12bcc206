"""What ``farmer --status`` reports: plain data, built by :class:`~.reader.StatusReader`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ExitCode


@dataclass(frozen=True)
class FarmerRow:
    """A live farmer, as its lease files and the job log show it."""

    farmer: str
    node: str
    pid: int
    workers: int
    heartbeat_age: float
    recent: int  # executions it recorded within the rate window
    rate: float | None  # per second, over the rate window
    live: bool = True  # its heartbeat is not overdue (two renewals)


@dataclass(frozen=True)
class LeaseRow:
    """A lease that has missed its renewals: it is or will be taken over."""

    name: str
    node: str
    heartbeat_age: float
    takeover_in: float  # seconds; <= 0: expired, the next farmer to look takes it over
    dead: bool  # half taken over already (``NAME.dead``)


@dataclass(frozen=True)
class RunningTask:
    """A task some lease holds."""

    id: int
    node: str
    farmer: str
    age: float | None
    line: str


@dataclass(frozen=True)
class FailedTask:
    """A task recorded in ``failed``."""

    id: int
    exit: int | None
    signal: int | None
    attempts: int
    log: str
    last_line: str
    line: str


@dataclass(frozen=True)
class QuarantinedNode:
    """A node's quarantine record (``WORKDIR/quarantine/NODE``)."""

    node: str
    since: float  # epoch seconds
    until: float
    active: bool  # in force now (farmers on the node refuse to start)
    handed_back: int  # tasks it handed back, uncounted
    reason: str


@dataclass(frozen=True)
class Status:
    """Everything ``--status`` shows."""

    workdir: str
    finished: int
    failed: int
    running: int  # running now: at most one per worker
    pending: int
    total: int
    percent: float
    rate: float | None  # tasks/s over the rate window, all farmers
    eta: float | None  # seconds; None without a live farmer
    farmers: list[FarmerRow] = field(default_factory=list)
    stale_leases: list[LeaseRow] = field(default_factory=list)
    running_tasks: list[RunningTask] = field(default_factory=list)
    running_more: int = 0
    failed_tasks: list[FailedTask] = field(default_factory=list)
    failed_more: int = 0
    consistent: bool = True  # read under the lock
    now: float = 0.0
    unimported: int = 0  # lines of TASKLIST not imported yet (a last one without newline too)
    claimed: int = 0  # taken by a worker, not running: in its chunk, or ended, not recorded
    files: int = 0  # files the workdir holds (the metadata cost of the run)
    log_files: int = 0  # of which in logs/
    files_per_task: float | None = None  # log files per finished or failed task
    #: State-file opens per recorded result of the farmers in the coherent mode (None: none)
    opens_per_task: float | None = None
    halted: str | None = None  # how the farm was halted (--halt: WORKDIR/halted), if it was
    quarantined: list[QuarantinedNode] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """Nothing pending, running or appended to the list (no lease left either)."""
        return (self.pending == 0 and self.running == 0 and self.claimed == 0
                and not self.farmers and not self.stale_leases and self.unimported == 0)

    @property
    def exit_code(self) -> ExitCode:
        """0 done without failures, 1 done with failures, 3 work left, 5 work left and the
        farm halted."""
        if not self.done:
            return ExitCode.HALTED if self.halted is not None else ExitCode.STOPPED
        return ExitCode.FAILED if self.failed else ExitCode.OK
