"""The events of ``timeline.json``: Chrome trace-event JSON, as the Perfetto UI imports it.

What a workdir's timeline holds (each farmer writes its own, into the one shared file):

- **A process track per farmer**, titled ``NODE · job J.S · array A_T · restart R · farmer
  pid``: Perfetto titles a process group ``NAME PID`` (always; it shows no labels), so the
  name ends in the word the number completes. ``process_sort_index`` orders farmers by start
  in viewers that honour it (catapult; Perfetto v52 orders groups by slice count);
  ``process_labels`` repeats the SLURM ids for catapult.
- **A thread track per worker slot**, named ``worker``, tids from 1 (Perfetto titles it
  ``worker 1``). Never equal to the process id: a tid equal to its pid is a main thread.
- **A slice per execution** (``ph: X``), stopped and put-back ones included, named
  ``ID: command`` (shortened), with the outcome as category. Perfetto colours slices by name
  and ignores ``cname``, so every execution that did not finish also gets an instant event at
  its end on the same track, named by its outcome (``failed``, ``retry``, ``timed out``,
  ``out of memory``, ``stopped``, ``oom``, ``evicted``, ``put back``, ``discarded``,
  ``quarantined``): one colour per outcome, drawn at a fixed width.
  The same marker goes on the farmer's own track too: at whole-run zoom Perfetto draws one
  event per pixel of a track, and on a worker track of thousands of executions the markers
  lose that draw to the slices; on the farmer's track they are most of what there is.
- **Flows** (version 2: ``bind_id`` with ``flow_out``/``flow_in`` on the slices) from each
  execution of a task to its next one, whichever farmer or node runs it: the flow id is the
  task ID, so the next execution needs to know only that it is not the first.
- **Counters** ``tasks done/failed/running/pending`` for the whole workdir on the
  :data:`COUNTERS_PID` track (``all tasks · track 1``), one event with the four values
  whenever they change. ``running`` counts executions under way: a task leaves it when its
  execution ends, and enters ``done``, ``failed`` or ``pending`` when its result is recorded
  (held for :data:`taskfarmer.farm.recording.RESULT_HOLD`).
- **Instant events** on the farmer's track: farmer start (node, SLURM ids, ``--proc``), stop
  signal, lease taken over (whose, how many tasks), tasks appended to the tasklist, node
  quarantined (why, the tasks handed back), farmer end (exit code and reason).
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping
from typing import Any

Event = dict[str, Any]

#: The process track of the workdir-wide counters (never a farmer's: see :func:`choose_pid`).
COUNTERS_PID = 1
#: Longest command shown in a slice name (the whole command is in the slice's args).
NAME_COMMAND = 60
#: The outcome category of an execution that finished (no marker for it).
FINISHED = "finished"


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def choose_pid(os_pid: int, used: Collection[int], proc: int, farmer: str) -> int:
    """The process id of a farmer's track: its own pid if no other farmer's track has it.

    Pids repeat across nodes and restarts; then (and for pids that a worker tid or the
    counters track could equal) a stable hash of the farmer's unique name, moved on past
    the ids in use.
    """
    if os_pid > max(proc, COUNTERS_PID) and os_pid not in used:
        return os_pid
    pid = (zlib.crc32(farmer.encode()) & 0x3FFFFFFF) | 0x40000000
    while pid in used:
        pid += 1
    return pid


def process_title(node: str, labels: Mapping[str, str], own_pid: bool) -> str:
    """A farmer track's name; Perfetto appends the pid (``... farmer pid 4242``)."""
    parts = [node]
    if "job" in labels:
        step = f".{labels['step']}" if "step" in labels else ""
        parts.append(f"job {labels['job']}{step}")
    if "array_job" in labels:
        parts.append(f"array {labels['array_job']}_{labels.get('array_task', '')}")
    if "restart" in labels:
        parts.append(f"restart {labels['restart']}")
    parts.append("farmer pid" if own_pid else "farmer track")
    return " · ".join(parts)


def farmer_tracks(pid: int, title: str, labels: Mapping[str, str], order: int,
                  proc: int) -> list[Event]:
    """Metadata of a farmer's process track and its worker threads (tids 1..``proc``)."""
    events: list[Event] = [
        {"name": "process_name", "ph": "M", "pid": pid, "args": {"name": title}},
        {"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": order}},
    ]
    if labels:
        events.append({"name": "process_labels", "ph": "M", "pid": pid,
                       "args": {"labels": ", ".join(f"{k}={v}" for k, v in labels.items())}})
    for tid in range(1, proc + 1):
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                       "args": {"name": "worker"}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                       "args": {"sort_index": tid}})
    events.append({"name": "process_name", "ph": "M", "pid": COUNTERS_PID,
                   "args": {"name": "all tasks · track"}})
    return events


def execution(task_id: int, command: str, start: float, end: float, pid: int, tid: int,
              outcome: str, rerun: bool, args: dict[str, Any]) -> list[Event]:
    """The slice of one execution, its flow ends and, unless it finished, its end marker.

    ``rerun``: an earlier execution of this task exists (its slice has the flow's start).
    """
    short = command if len(command) <= NAME_COMMAND else command[: NAME_COMMAND - 1] + "…"
    start_us = _us(start)
    end_us = max(start_us, _us(end))
    event: Event = {"name": f"{task_id}: {short}", "cat": outcome, "ph": "X", "ts": start_us,
                    "dur": end_us - start_us, "pid": pid, "tid": tid,
                    "args": {"id": task_id, "command": command, "outcome": outcome, **args},
                    "bind_id": task_id, "flow_out": True}
    if rerun:
        event["flow_in"] = True
    events = [event]
    if outcome != FINISHED:
        marker = "timed out" if args.get("timed_out") else str(args.get("memory", outcome))
        events.append({"name": marker, "cat": outcome, "ph": "i", "s": "t", "ts": end_us,
                       "pid": pid, "tid": tid, "args": {"id": task_id}})
        events.append({"name": marker, "cat": outcome, "ph": "i", "s": "p", "ts": end_us,
                       "pid": pid, "args": {"id": task_id, "worker": tid}})
    return events


def instant(name: str, at: float, pid: int, args: dict[str, Any] | None = None) -> Event:
    """A marker on a farmer's process track (farmer start/end, stop signal, takeover)."""
    return {"name": name, "ph": "i", "s": "p", "ts": _us(at), "pid": pid,
            "args": dict(args or {})}


def counters(at: float, done: int, failed: int, running: int, pending: int) -> Event:
    """The workdir-wide task counters at ``at`` (four counter tracks ``tasks ...``)."""
    return {"name": "tasks", "ph": "C", "ts": _us(at), "pid": COUNTERS_PID,
            "args": {"done": done, "failed": failed, "running": running, "pending": pending}}
