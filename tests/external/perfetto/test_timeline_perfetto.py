"""timeline.json opened in the real Perfetto UI (headless Chromium): what a user sees.

Each scenario runs the real farmer, then opens its workdir's timeline in the UI and asks the
UI's trace processor what it imported: no import errors or data losses; one slice per
execution (every task appends a line to ``runs/ID`` each time it starts: the ground truth,
stopped executions included); a flow from each execution of a task to its next one; the
workdir's counters ending at the state files' counts; worker threads ``worker`` with tids
from 1 in farmer processes titled by node and SLURM ids; the farmer instants. Screenshots of
the timeline and of the info/stats page are left in each test's tmp dir.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need
from helpers.farmer import ids, run_farmer, start_farmer, wait_for, write_tasklist
from helpers.perfetto_ui import CHROMIUM, PerfettoPage, perfetto_browser

from taskfarmer.timeline.events import COUNTERS_PID

EXECUTIONS = "select count(*) from slice where name glob '[0-9]*: *' and dur >= 0 " \
             "and track_id in (select id from thread_track)"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    need(os.path.exists(CHROMIUM), "Debian's chromium is not installed (.ci/run installs it)")
    with perfetto_browser() as new_page:
        yield new_page


def _task(runs: Path, number: int, body: str) -> str:
    """A task that notes each of its executions in ``runs/NUMBER`` before running ``body``."""
    return f"echo . >> {runs}/{number}; n=$(wc -l < {runs}/{number}); {body}"


def _tasklist(tmp_path: Path, bodies: list[str]) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    return write_tasklist(tmp_path / "t", [_task(runs, i, body) for i, body in enumerate(bodies)])


def _executions(tmp_path: Path) -> dict[int, int]:
    """Task number -> how many times it started (the tasks' own count)."""
    return {int(p.name): len(p.read_text().split()) for p in (tmp_path / "runs").iterdir()}


def _check(ui: PerfettoPage, tmp_path: Path, farmers: int, proc: int) -> None:
    """What every timeline must show in the UI."""
    workdir = tmp_path / "t_workdir"
    assert ui.problems() == []
    runs = _executions(tmp_path)
    assert ui.scalar(EXECUTIONS) == sum(runs.values())
    per_task = {row["task"]: row["n"] for row in ui.query(
        "select cast(substr(name, 1, instr(name, ':') - 1) as int) as task, count(*) as n "
        "from slice where name glob '[0-9]*: *' group by task")}
    assert per_task == runs
    # A flow from each execution to the next one of the same task, forward in time.
    flows = ui.query(
        "select o.name as out_name, i.name as in_name, o.ts < i.ts as forward from flow f "
        "join slice o on o.id = f.slice_out join slice i on i.id = f.slice_in")
    assert len(flows) == sum(n - 1 for n in runs.values())
    assert all(f["out_name"] == f["in_name"] and f["forward"] == 1 for f in flows), flows
    # Counters: the last values are the state files' counts.
    last = {row["name"]: row["value"] for row in ui.query(
        "select t.name, c.value from counter c join counter_track t on c.track_id = t.id "
        "where c.ts = (select max(ts) from counter where track_id = c.track_id)")}
    assert last == {"tasks done": len(ids(workdir / "finished")),
                    "tasks failed": len(ids(workdir / "failed")),
                    "tasks running": 0, "tasks pending": len(ids(workdir / "toprocess"))}
    # Tracks: farmer processes with workers 1..proc, none of them a "main thread".
    processes = ui.query(f"select upid, pid, name from process where pid != {COUNTERS_PID} "
                         "and name glob '* farmer *'")
    assert len(processes) == farmers
    for process in processes:
        # (the process's own metadata makes a nameless, empty main thread tid == pid)
        threads = ui.query(f"select tid, name, is_main_thread from thread "
                           f"where upid = {process['upid']} and tid != {process['pid']} "
                           "order by tid")
        assert [(t["tid"], t["name"]) for t in threads] == [
            (tid, "worker") for tid in range(1, proc + 1)][: len(threads)]
        assert not any(t["is_main_thread"] for t in threads)
    marks = [row["name"] for row in ui.query(
        "select s.name from slice s join process_track p on s.track_id = p.id order by s.ts")]
    assert marks.count("farmer start") == farmers and marks.count("farmer end") == farmers


def _shoot(ui: PerfettoPage, tmp_path: Path) -> str:
    """Screenshots of the timeline and info pages; the info page's text, whose stats table
    must show no import error or data loss (rows ``name<TAB>value<TAB>type``)."""
    ui.show_timeline(tmp_path / "timeline.png")
    text = ui.show_info(tmp_path / "info.png")
    rows = [line.split("\t") for line in text.splitlines() if line.count("\t") == 2]
    stats = [row for row in rows if row[2].split(" ")[0] in ("info", "error", "data_loss")]
    assert len(stats) > 100  # the whole table was read
    assert [row for row in stats if row[2].split(" ")[0] != "info" and row[1] != "0"] == []
    return text


def test_failures_and_retries_in_perfetto(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    tasks = _tasklist(tmp_path, [
        "echo hello", "false", "[ $n -ge 2 ]", "exit 3", "sleep 0.5",
        "[ $n -ge 2 ] || exec sleep 30", "echo bye"])
    result = run_farmer([str(tasks), "-n", "2", "--retries", "1", "--task-timeout", "1"])
    assert result.returncode == 1, result.stderr
    ui = browser()
    seconds = ui.open(tmp_path / "t_workdir" / "timeline.json")
    _check(ui, tmp_path, farmers=1, proc=2)
    markers = {row["name"]: row["n"] for row in ui.query(
        "select name, count(*) as n from slice where dur = 0 and name not glob '[0-9]*' "
        "and track_id in (select id from thread_track) group by name")}
    # false and exit 3: retry then failed; the flaky task: retry; the slow one: timed out.
    assert markers == {"retry": 3, "failed": 2, "timed out": 1}
    on_farmer_track = {row["name"]: row["n"] for row in ui.query(  # seen at whole-run zoom
        "select s.name, count(*) as n from slice s join process_track p on s.track_id = p.id "
        "where s.name not glob 'farmer *' group by s.name")}
    assert on_farmer_track == markers
    categories = {row["category"] for row in ui.query("select distinct category from slice "
                                                      "where name glob '[0-9]*: *'")}
    assert categories == {"finished", "retry", "failed"}
    names = [row["name"] for row in ui.query("select name from slice where name glob '1: *'")]
    assert len(names) == 2 and all(  # the long command shortened to NAME_COMMAND characters
        name.startswith("1: echo . >> ") and name.endswith("…") and len(name) == 3 + 60
        for name in names)
    text = _shoot(ui, tmp_path)
    assert "trace_type\tjson" in text and "errors detected" not in text
    print(f"loaded in {seconds:.1f} s")


def test_three_farmers_at_once_in_perfetto(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    tasks = _tasklist(tmp_path, ["sleep 0.05"] * 45)
    farmers = [start_farmer([str(tasks), "-n", "2"]) for _ in range(3)]
    for farmer in farmers:
        farmer.communicate(timeout=120)
        assert farmer.returncode == 0
    ui = browser()
    ui.open(tmp_path / "t_workdir" / "timeline.json")
    _check(ui, tmp_path, farmers=3, proc=2)
    assert ui.scalar(EXECUTIONS) == 45
    _shoot(ui, tmp_path)


def test_stopped_by_sigusr1_and_resumed_in_perfetto(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    # The first execution of tasks 0-2 hangs until stopped; the second finishes.
    tasks = _tasklist(tmp_path, ["[ $n -ge 2 ] || exec sleep 300"] * 3 + ["true"])
    farmer = start_farmer([str(tasks), "-n", "3"])
    runs = tmp_path / "runs"
    wait_for(lambda: len(list(runs.iterdir())) == 3, what="three tasks running")
    farmer.send_signal(signal.SIGUSR1)
    farmer.communicate(timeout=60)
    assert farmer.returncode == 3
    assert run_farmer([str(tasks), "-n", "2"]).returncode == 0
    ui = browser()
    ui.open(tmp_path / "t_workdir" / "timeline.json")
    _check(ui, tmp_path, farmers=2, proc=3)
    stopped = ui.query("select name, dur from slice where category = 'stopped' "
                       "and name glob '[0-9]*: *'")
    assert len(stopped) == 3 and all(row["dur"] > 0 for row in stopped)
    assert ui.scalar("select count(*) from slice where name = 'stop: SIGUSR1'") == 1
    _shoot(ui, tmp_path)


def _slurm_env(node: str, restart: str) -> dict[str, str]:
    return {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURMD_NODENAME": node,
            "SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2",
            "SLURM_RESTART_COUNT": restart}


def test_slurm_nodes_and_a_lease_takeover_in_perfetto(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    """node01 dies (SIGKILL) mid-run; node02 (its restart) takes its lease over and finishes."""
    pids = tmp_path / "pids"
    hang_once = f"[ $n -ge 2 ] || {{ echo $$ >> {pids}; exec sleep 300; }}"
    tasks = _tasklist(tmp_path, [hang_once] * 2 + ["sleep 0.1"] * 6)
    doomed = start_farmer([str(tasks), "-n", "2"], env=_slurm_env("node01", "0"))
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2,
             what="node01 running two tasks")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.communicate(timeout=30)
    _kill_leftovers(pids)
    result = run_farmer([str(tasks), "-n", "2"], env=_slurm_env("node02", "1"))
    assert result.returncode == 0, result.stderr
    ui = browser()
    ui.open(tmp_path / "t_workdir" / "timeline.json")
    assert ui.problems() == []
    titles = sorted(row["name"] for row in ui.query("select name from process "
                                                    "where name glob '* farmer *'"))
    assert titles == [f"{node} · job 4242.0 · array 4240_2 · restart {restart} · farmer pid"
                      for node, restart in (("node01", 0), ("node02", 1))]
    takeover = ui.query("select s.name, a.int_value as tasks from slice s "
                        "join args a on a.arg_set_id = s.arg_set_id "
                        "where s.name = 'lease taken over' and a.key = 'args.tasks'")
    assert sum(row["tasks"] for row in takeover) == 2
    node01 = ui.scalar("select count(*) from slice s join thread_track t on s.track_id = t.id"
                       " join thread using (utid) join process p using (upid)"
                       " where p.name glob 'node01 *' and s.name glob '[0-9]*: *'")
    assert node01 == 0  # its executions were killed with it: no result, no slice
    last = {row["name"]: row["value"] for row in ui.query(
        "select t.name, c.value from counter c join counter_track t on c.track_id = t.id "
        "where c.ts = (select max(ts) from counter where track_id = c.track_id)")}
    assert last == {"tasks done": 8, "tasks failed": 0, "tasks running": 0,
                    "tasks pending": 0}
    _shoot(ui, tmp_path)


def _kill_leftovers(pids: Path) -> None:
    """SIGKILL the tasks the killed farmer left running (the kernel killed its workers)."""
    for pid in pids.read_text().split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
