"""How ``farmer --status`` shows a :class:`~taskfarmer.status.Status`: rich tables, one JSON
document (``--json``), or tables refreshed in place (``--watch``)."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..status import Status

#: Seconds between refreshes of ``--watch``.
WATCH_INTERVAL = 2.0


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def clock_time(when: float) -> str:
    """``2024-05-01 14:02:03``, local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def to_json(status: Status) -> str:
    """The status as one JSON document (the fields of :class:`Status`, plus ``done`` and
    ``exit_code``)."""
    data = dataclasses.asdict(status)
    data.update(done=status.done, exit_code=status.exit_code)
    return json.dumps(data, indent=2)


def _state(status: Status) -> str:
    if status.done:
        return "done with failures" if status.failed else "done"
    if status.halted is not None:
        return "halted, work left"
    if any(farmer.live for farmer in status.farmers):
        return "running"
    return "work left, no farmer running"


def render(status: Status) -> RenderableType:
    """Totals, farmers, leases about to be taken over, running and failed tasks."""
    parts: list[RenderableType] = []
    rate = f"{status.rate:.1f} tasks/s" if status.rate is not None else "-"
    head = Text.assemble(
        (f"{status.workdir}: {_state(status)}\n", "bold"),
        (f"{status.finished} finished", "green"), ", ", (f"{status.failed} failed", "red"),
        ", ", (f"{status.running} running", "yellow"),
        f", {status.claimed} claimed" if status.claimed else "", f", {status.pending} pending, "
        f"{status.total} total: {status.percent:.1f}% done; rate {rate}, "
        f"ETA {duration(status.eta)}")
    if status.halted is not None and not status.done:
        head.append(f"\n{status.halted}: no farmer starts; fix the cause, then remove "
                    f"{status.workdir}/halted to farm on", "bold red")
    if status.unimported:
        head.append(f"\n{status.unimported} line(s) appended to the list, not imported yet "
                    "(a farmer imports them)")
    per_task = (f", {status.files_per_task:.3g} log file(s) per finished task"
                if status.files_per_task is not None else "")
    opens = (f"; {status.opens_per_task:.3g} state-file opens per task (coherent I/O)"
             if status.opens_per_task is not None else "")
    head.append(f"\nmetadata: {status.files} file(s) in the workdir, {status.log_files} in "
                f"logs/{per_task}{opens}", "dim")
    if not status.consistent:
        head.append("\n(read without the lock: counts may be off by a few)", "dim")
    parts.append(head)
    if status.farmers:
        table = Table(title="farmers", title_justify="left")
        for column in ("node", "pid", "workers", "heartbeat", "recent", "rate"):
            table.add_column(column, justify="left" if column == "node" else "right")
        for farmer in status.farmers:
            table.add_row(farmer.node, str(farmer.pid), str(farmer.workers),
                          f"{duration(farmer.heartbeat_age)} ago", str(farmer.recent),
                          f"{farmer.rate:.1f}/s" if farmer.rate is not None else "-")
        parts.append(table)
    if status.stale_leases:
        table = Table(title="leases missing their heartbeat", title_justify="left")
        for column in ("lease", "node", "heartbeat", "taken over"):
            table.add_column(column)
        for lease in status.stale_leases:
            when = ("now (half done)" if lease.dead
                    else f"in {duration(lease.takeover_in)}" if lease.takeover_in > 0
                    else "by the next farmer that looks (expired)")
            table.add_row(lease.name, lease.node, f"{duration(lease.heartbeat_age)} ago", when)
        parts.append(table)
    if status.quarantined:
        table = Table(title="quarantined nodes (farmers do not start there)",
                      title_justify="left")
        for column in ("node", "since", "until", "handed back", "reason"):
            table.add_column(column, justify="right" if column == "handed back" else "left")
        for node in status.quarantined:
            until = clock_time(node.until) if node.active else "expired"
            table.add_row(node.node, clock_time(node.since), until, str(node.handed_back),
                          node.reason)
        parts.append(table)
    if status.running_tasks:
        more = f" (and {status.running_more} more)" if status.running_more else ""
        table = Table(title=f"running tasks, longest first{more}", title_justify="left")
        for column in ("ID", "node", "age", "command"):
            table.add_column(column, justify="right" if column in ("ID", "age") else "left")
        for running in status.running_tasks:
            table.add_row(str(running.id), running.node, duration(running.age), running.line)
        parts.append(table)
    if status.failed_tasks:
        more = f" (and {status.failed_more} more)" if status.failed_more else ""
        table = Table(title=f"failed tasks, latest first{more}", title_justify="left")
        for column in ("ID", "exit", "attempts", "log", "last line of log"):
            table.add_column(column, justify="right" if column in ("ID", "attempts") else "left")
        for failed in status.failed_tasks:
            how = ("?" if failed.exit is None else f"signal {failed.signal}" if failed.signal
                   else str(failed.exit))
            table.add_row(str(failed.id), how, str(failed.attempts), failed.log,
                          failed.last_line)
        parts.append(table)
    return Group(*parts)


def watch(read: Callable[[], Status], console: Console,
          interval: float = WATCH_INTERVAL) -> Status:
    """Show the status refreshed in place until the farm is done or the user interrupts
    (Ctrl-C). Returns the last status read."""
    status = read()
    with Live(render(status), console=console, auto_refresh=False) as live:
        try:
            while not status.done:
                time.sleep(interval)
                status = read()
                live.update(render(status), refresh=True)
        except KeyboardInterrupt:
            pass
    return status
