"""Fault sweep: make the k-th filesystem call of a small farm fail (or SIGKILL its process),
then rerun the farm without the fault and check that no task was lost or recorded twice.

The injector is ``tests/helpers/faultinject/sitecustomize.py`` (see its docstring). One sweep:

1. run the farm once in count mode: every filesystem call under the farm's directory, with
   its call site (the innermost ``taskfarmer`` frame);
2. for each chosen ``k`` (CI: the first call of every distinct site, plus a spread of others;
   ``TASKFARMER_FAULT_SWEEP=full``: every k) and fault (ENOSPC, EIO, kill), run the farm
   with the fault, then without it until it exits 0 or 1;
3. check the outcome (:func:`problems`).

Call counts differ a little from run to run (timing: heartbeats, polls), so the faulted call
is identified by what the injector logged when it fired, not by the count run.
"""

from __future__ import annotations

import errno as errno_names
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from taskfarmer.logs.reading import task_pieces

from .farmer import FARMER, farmer_env, ids, verify_problems

INJECTOR = Path(__file__).resolve().parent / "faultinject"
REPO = Path(__file__).resolve().parents[2]
#: Faults tried: an errno name, or "kill".
FAULTS = ("ENOSPC", "EIO", "kill")
TASKS = 20
#: Reruns (without the fault) allowed before the farm must be done.
RERUNS = 3
ERROR_LINE = re.compile(r"^farmer: error: (?P<path>/\S.*): cannot (?P<op>[^:]+): "
                        r"(?P<reason>[^:\n]+)$", re.MULTILINE)


@dataclass(frozen=True)
class Farm:
    """A small farm to sweep: its options, whether a task stops it (SIGTERM, once), and
    whether a task has its own worker's lease taken over (once) while it runs."""

    name: str
    options: tuple[str, ...] = ("-n", "2")
    stop_task: int | None = None
    take_over_task: int | None = None

    def output(self, task_id: int) -> bytes:
        """What task ``task_id`` prints (the line of :meth:`tasks`)."""
        line = task_id + 1
        return f"out{line}\n".encode() if line % 7 else f"err{line}\n".encode()

    def tasks(self, root: Path) -> list[str]:
        """The tasklist: ``echo``, every 7th fails; ``stop_task`` SIGTERMs the farmer once;
        ``take_over_task`` renames its worker's lease to ``NAME.dead`` once, the commit point
        of a takeover (as another farmer does, or this one after a lock failure): the worker
        then discards its result, and the farmer puts the task back."""
        lines = []
        for task in range(1, TASKS + 1):
            line = f"echo out{task}" if task % 7 else f"echo err{task}; exit 1"
            flag = marker(root)
            if task == self.stop_task:
                # The task's parent is a worker; the worker's parent the farmer's main process.
                line = (f"[ -e {flag} ] || {{ touch {flag}; "
                        f"kill -TERM $(cut -d' ' -f4 /proc/$PPID/stat); }}; {line}")
            if task == self.take_over_task:
                # Lease names are FARMER.wSLOT.PID.N, PID the worker's: the task's parent.
                line = (f"[ -e {flag} ] || {{ touch {flag}; "
                        f"for f in {root / 'wd' / 'leases'}/*.$PPID.*; do case $f in "
                        f"*.dead) ;; *) mv \"$f\" \"$f.dead\";; esac; done; }}; {line}")
            lines.append(line)
        return lines


FARMS = (
    Farm("plain"),
    Farm("retries", ("-n", "2", "--retries", "1")),
    Farm("stopped", ("-n", "2"), stop_task=8),
    # --lease 2: the farmer looks for leases to take over every 0.5 s (its own, renamed to
    # NAME.dead, among them), not every 75 s.
    Farm("taken-over", ("-n", "2", "--lease", "2"), take_over_task=9),
    Farm("packed", ("-n", "2", "--logs", "packed"), stop_task=8),
)


@dataclass(frozen=True)
class Call:
    """One filesystem call seen by the injector."""

    number: int
    pid: int
    op: str
    site: str
    path: str

    @classmethod
    def parse(cls, line: str) -> Call:
        number, pid, op, site, path = line.split(" ", 4)
        return cls(int(number), int(pid), op, site, path)


@dataclass
class Outcome:
    """What one faulted run and its reruns did."""

    fault: Fault
    hit: Call | None
    codes: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line naming k, the fault, the call site and what went wrong."""
        fault = self.fault
        where = f"{self.hit.op} at {self.hit.site} on {self.hit.path}" if self.hit else \
            f"not reached: {fault.site or 'call ' + str(fault.k)}"
        what = fault.fault + (" from then on" if fault.persist else "")
        return f"k={fault.k} {what} ({where}); exit codes {self.codes}: " + \
            "; ".join(self.problems)


def _environment(root: Path, mode: str, k: int = 0, fault: str = "EIO",
                 persist: bool = False, site: str = "", after: bool = False
                 ) -> dict[str, str]:
    return farmer_env({
        "FAULT_SITE": site,
        "FAULT_AFTER": str(marker(root)) if after else "",
        "PYTHONPATH": f"{INJECTOR}{os.pathsep}{REPO}",
        "FAULT_ROOT": str(root),
        "FAULT_MODE": mode,
        "FAULT_K": str(k),
        "FAULT_ERRNO": fault if fault != "kill" else "EIO",
        "FAULT_PERSIST": "1" if persist else "0",
        "FAULT_COUNTER": str(root.parent / f"{root.name}.counter"),
        "FAULT_LOG": str(root.parent / f"{root.name}.log"),
        "SCRATCH": str(root / "scratch"),
    })


def prepare(root: Path, farm: Farm) -> None:
    """A fresh directory for one run of ``farm``: tasklist and SCRATCH."""
    if root.exists():
        shutil.rmtree(root)
    (root / "scratch").mkdir(parents=True)
    (root / "tasks").write_text("".join(line + "\n" for line in farm.tasks(root)))
    for name in (".counter", ".log"):
        Path(f"{root}{name}").unlink(missing_ok=True)


def marker(root: Path) -> Path:
    """The file the ``stop_task`` or ``take_over_task`` of a farm in ``root`` creates."""
    return root / "stopped"


def run(root: Path, farm: Farm, mode: str = "", k: int = 0, fault: str = "EIO",
        persist: bool = False, site: str = "", timeout: float = 120, after: bool = False
        ) -> subprocess.CompletedProcess:
    """Run ``farm`` in ``root`` (with the injector in ``mode``; "" for none); ``after``:
    only the calls made once :func:`marker` exists count."""
    env = _environment(root, mode, k, fault, persist, site, after) if mode else farmer_env(
        {"PYTHONPATH": str(REPO), "SCRATCH": str(root / "scratch")})
    return subprocess.run([*FARMER, str(root / "tasks"), "-w", str(root / "wd"),
                           *farm.options], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL, cwd=root.parent,
                          start_new_session=True)


def logged(root: Path) -> list[Call]:
    """The calls the injector logged for the last run in ``root``."""
    path = Path(f"{root}.log")
    if not path.exists():
        return []
    return [Call.parse(line) for line in path.read_text().splitlines() if line]


def count(root: Path, farm: Farm, after: bool = False) -> list[Call]:
    """Every filesystem call of one run of ``farm`` (which must succeed); ``after``: those
    made once :func:`marker` exists."""
    prepare(root, farm)
    done = run(root, farm, "count", after=after)
    assert done.returncode in (0, 1, 3), done.stderr
    return logged(root)


@dataclass(frozen=True)
class Fault:
    """One fault to try: at the ``k``-th call (of ``site`` if given), ``fault``; with
    ``persist``, every later call fails too (the disk stays full)."""

    k: int
    fault: str
    site: str = ""
    persist: bool = False
    after: bool = False  # counted from when the farm's marker() exists


def choose(calls: Sequence[Call], full: bool, covered: set[str] = frozenset(),
           extra: int = 6) -> list[Fault]:
    """The faults to try.

    Full mode: every call with each fault, and a persistent EIO from the first call of every
    site. Else (CI), every distinct site not in ``covered`` (tried with another farm) once,
    at its first call (targeted by site, so it is hit even if timing shifts the count), with
    ENOSPC, EIO and a kill in turn, and a persistent EIO on every tenth site; plus ``extra``
    calls spread over the run (more when sites are ``covered``: the farm's own situations)
    with each fault in turn.
    """
    sites = sorted({call.site for call in calls})
    if full:
        return [Fault(call.number, fault) for call in calls for fault in FAULTS] + \
            [Fault(1, "EIO", site, persist=True) for site in sites]
    chosen: list[Fault] = []
    for index, site in enumerate(site for site in sites if site not in covered):
        chosen.append(Fault(1, FAULTS[index % 3], site))
        if index % 10 == 9:
            chosen.append(Fault(1, "EIO", site, persist=True))
    if covered:
        extra *= 2
    step = max(1, len(calls) // extra)
    chosen += [Fault(call.number, FAULTS[i % 3]) for i, call in enumerate(calls[step // 2::step])]
    return chosen


def problems(root: Path, result: subprocess.CompletedProcess, fault: str,
             hit: Call | None) -> list[str]:
    """What is wrong with a faulted run's outcome (checked before the reruns)."""
    found = []
    if "Traceback" in result.stderr:
        found.append("traceback: " + result.stderr[-800:])
    code = result.returncode
    if fault == "kill":
        return found
    if code in (0, 1):
        found += state_problems(root)
    elif code == 2:
        if hit is None:
            found.append(f"exit code 2 with no fault: {result.stderr[-600:]}")
        reason = os.strerror(getattr(errno_names, fault))
        if hit is not None and not any(m["reason"] == reason
                                       for m in ERROR_LINE.finditer(result.stderr)):
            found.append(f"no 'farmer: error: PATH: cannot OP: {reason}' line: "
                         + result.stderr[-600:])
    elif code != 3:
        found.append(f"exit code {code}: {result.stderr[-600:]}")
    return found


def state_problems(root: Path) -> list[str]:
    """What is wrong with a workdir whose farm says it is done."""
    workdir = root / "wd"
    found = []
    recorded = ids(workdir / "finished") + ids(workdir / "failed")
    if sorted(recorded) != list(range(TASKS)):
        missing = sorted(set(range(TASKS)) - set(recorded))
        twice = sorted({i for i in recorded if recorded.count(i) > 1})
        found.append(f"tasks missing {missing}, recorded twice {twice}")
    for name in ("toprocess", "claims"):
        path = workdir / name
        if path.exists() and path.stat().st_size:
            found.append(f"{name} not empty: {path.read_text()[:200]!r}")
    try:
        json.loads((workdir / "timeline.json").read_text())
    except (OSError, ValueError) as error:
        found.append(f"timeline.json: {error}")
    return found + verify_problems(workdir, {"SCRATCH": str(root / "scratch")})


def log_problems(root: Path, farm: Farm) -> list[str]:
    """What is wrong with the task logs of a done farm: a recorded task without a complete
    execution that printed its output, or a piece holding anything else (another task's
    output, or two executions glued)."""
    if "--logs" not in farm.options:
        return []
    workdir = root / "wd"
    found = []
    recorded = ids(workdir / "finished") + ids(workdir / "failed")
    logs = task_pieces(workdir / "logs", workdir / "joblog", [], recorded)
    for task_id in recorded:
        pieces = logs.get(task_id, [])
        texts = [b"".join(piece.chunks()) for piece in pieces]
        wanted = farm.output(task_id)
        if any(text not in (b"", wanted) for text in texts):
            found.append(f"task {task_id}'s log holds {texts}")
        if not any(text == wanted and piece.outcome is not None
                   for text, piece in zip(texts, pieces)):
            found.append(f"task {task_id} has no complete execution in its log: {pieces}")
    return found


def sweep_one(root: Path, farm: Farm, fault: Fault) -> Outcome:
    """Run ``farm`` with ``fault``, then without it until done; check."""
    prepare(root, farm)
    result = run(root, farm, "kill" if fault.fault == "kill" else "fail", fault.k,
                 fault.fault, fault.persist, fault.site, after=fault.after)
    hits = logged(root)
    outcome = Outcome(fault, hits[0] if hits else None, [result.returncode])
    outcome.problems += problems(root, result, fault.fault, outcome.hit)
    for _ in range(RERUNS):
        if outcome.codes[-1] in (0, 1):
            break
        rerun = run(root, farm)
        outcome.codes.append(rerun.returncode)
        if "Traceback" in rerun.stderr:
            outcome.problems.append("traceback in a rerun: " + rerun.stderr[-800:])
    if outcome.codes[-1] not in (0, 1):
        outcome.problems.append(f"reruns do not finish: {rerun.stderr[-600:]}")
    else:
        outcome.problems += state_problems(root) + log_problems(root, farm)
    return outcome


def after_marker(calls: Sequence[Call], full: bool) -> list[Fault]:
    """Faults at the first call of every site seen once the marker exists (counted with
    ``after``): full mode, each site fails once (ENOSPC and EIO alternating) and SIGKILLs
    its process once; else (CI) each site gets one of ENOSPC, EIO and a kill, in turn."""
    sites = sorted({call.site for call in calls})
    if full:
        return [Fault(1, fault, site, after=True)
                for index, site in enumerate(sites) for fault in (FAULTS[index % 2], "kill")]
    return [Fault(1, FAULTS[index % 3], site, after=True) for index, site in enumerate(sites)]


def sweep(base: Path, farm: Farm, full: bool, jobs: int = 3, after: bool = False
          ) -> tuple[list[Call], list[Outcome]]:
    """Count ``farm``'s calls, then try the chosen faults ``jobs`` at a time; ``after``: at
    every call site reached once the farm's marker exists (:func:`after_marker`)."""
    calls = count(base / f"{farm.name}-count", farm, after)
    covered: set[str] = set()
    if farm != FARMS[0] and not full and not after:
        covered = {call.site for call in count(base / f"{FARMS[0].name}-count", FARMS[0])}
    plan = after_marker(calls, full) if after else choose(calls, full, covered)

    def one(index: int) -> Outcome:
        root = base / f"{farm.name}-{index}"
        try:
            outcome = sweep_one(root, farm, plan[index])
        except subprocess.TimeoutExpired as error:  # a farm that hangs names its fault too
            outcome = Outcome(plan[index], None, [], [f"hangs: {error}"])
        if not outcome.problems:
            shutil.rmtree(root, ignore_errors=True)
        return outcome

    with ThreadPoolExecutor(jobs) as pool:
        outcomes = list(pool.map(one, range(len(plan))))
    return calls, outcomes


def main(argv: Sequence[str]) -> int:
    """``python3 -m helpers.faultsweep BASE [full]`` in ``tests/``: sweep every farm, summarise."""
    import time

    base = Path(argv[0])
    full = len(argv) > 1 and argv[1] == "full"
    failures = 0
    sites = set()
    tried = 0
    began = time.monotonic()
    only = os.environ.get("FARMS", "")
    for farm in FARMS:
        if only and farm.name not in only.split(","):
            continue
        calls, outcomes = sweep(base, farm, full, jobs=int(os.environ.get("JOBS", "3")))
        tried += len(outcomes)
        sites |= {o.hit.site for o in outcomes if o.hit}
        bad = [o for o in outcomes if o.problems]
        failures += len(bad)
        print(f"{farm.name}: {len(calls)} calls, {len({c.site for c in calls})} sites, "
              f"{len(outcomes)} faults, {len(bad)} bad", flush=True)
        for outcome in bad:
            print("  " + outcome.describe(), flush=True)
    print(f"{tried} faults, {len(sites)} distinct call sites hit, {failures} bad, "
          f"{time.monotonic() - began:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
