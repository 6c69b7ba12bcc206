"""End-to-end tests of the ``farmer`` command with real task processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers.farmer import (
    alive,
    ids,
    pids_in,
    run_farmer,
    signal_tree,
    start_farmer,
    stop,
    wait_for,
    write_tasklist,
)

from taskfarmer.timeline.events import COUNTERS_PID


def test_runs_every_task_through_a_shell(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "tasks.txt", [
        "# a comment",
        "echo hello > out_$PROC_NUMBER",
        "",
        "echo 'a b' | wc -w > words",
        "X=1; test \"$X\" = 1 && echo quoted > vars",
        "exit 7",
        "kill -9 $$",
    ])
    result = run_farmer([str(tasks), "--proc", "2"], cwd=tmp_path)
    workdir = tmp_path / "tasks.txt_workdir"
    assert result.returncode == 1, result.stderr  # done, some failed
    assert sorted(ids(workdir / "finished")) == [0, 1, 2]
    assert sorted(ids(workdir / "failed")) == [3, 4]
    assert (workdir / "toprocess").read_text() == ""
    assert (workdir / "failed").read_text().count("exit 7") == 1
    assert (tmp_path / "out_0").read_text() == "hello\n"
    assert (tmp_path / "words").read_text().strip() == "2"
    assert (tmp_path / "vars").read_text() == "quoted\n"


def test_task_output_and_proc_number(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo out $PROC_NUMBER; echo err >&2"] * 3)
    result = run_farmer([str(tasks), "-n", "3", "-w", str(tmp_path / "w")])
    assert result.returncode == 0, result.stderr
    for task_id in range(3):
        log = (tmp_path / "w" / "logs" / f"log_{task_id}").read_text()
        assert log == f"out {task_id}\nerr\n"


def test_crlf_tasklist(tmp_path: Path) -> None:
    tasks = tmp_path / "t"
    tasks.write_bytes(b"echo one\r\n\r\n#c\r\necho two\r\n")
    result = run_farmer([str(tasks), "-n", "1"])
    assert result.returncode == 0
    assert (tmp_path / "t_workdir" / "finished").read_text() == "0 echo one\n1 echo two\n"


def test_restart_after_completion_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    tasks = write_tasklist(tmp_path / "t", [f"echo {i} >> {marker}" for i in range(5)])
    assert run_farmer([str(tasks), "-n", "2"]).returncode == 0
    assert run_farmer([str(tasks), "-n", "2"]).returncode == 0
    assert sorted(marker.read_text().split()) == [str(i) for i in range(5)]


def test_second_run_continues_where_the_first_stopped(tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    tasks = write_tasklist(tmp_path / "t", [f"echo {i} >> {marker}" for i in range(4)])
    workdir = tmp_path / "t_workdir"
    workdir.mkdir()
    (workdir / "toprocess").write_text(f"2 echo 2 >> {marker}\n3 echo 3 >> {marker}\n")
    (workdir / "finished").write_text(f"0 echo 0 >> {marker}\n1 echo 1 >> {marker}\n")
    assert run_farmer([str(tasks)]).returncode == 0
    assert sorted(marker.read_text().split()) == ["2", "3"]
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3]


def test_farmers_on_one_workdir_share_the_tasks(tmp_path: Path) -> None:
    """Several farmers started together: every task runs and is recorded exactly once."""
    runs = tmp_path / "runs"
    count = 300
    tasks = write_tasklist(tmp_path / "t", [f"echo {i} >> {runs}" for i in range(count)])
    farmers = [start_farmer([str(tasks), "-n", "2"]) for _ in range(4)]
    codes = [f.wait(timeout=300) for f in farmers]
    assert codes == [0, 0, 0, 0]
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == list(range(count))
    assert sorted(int(x) for x in runs.read_text().split()) == list(range(count))
    assert (workdir / "toprocess").read_text() == ""
    assert not os.listdir(workdir / "leases")


def test_long_tasks_among_short_ones_run_side_by_side(tmp_path: Path) -> None:
    """Short tasks make chunks grow; four long tasks in the middle of the list must still run
    on every slot at once, not one after the other in one worker's chunk: each waits (at most
    a minute) until all four have started, and fails if they never do."""
    started = tmp_path / "started"
    started.mkdir()
    barrier = (f"touch {started}/$$; n=0; while [ $(ls {started} | wc -l) -lt 4 ]; do "
               "n=$((n+1)); [ $n -gt 600 ] && exit 1; sleep 0.1; done")
    tasks = write_tasklist(tmp_path / "t", ["true"] * 300 + [barrier] * 4 + ["true"] * 300)
    done = run_farmer([str(tasks), "-n", "4"], timeout=240)
    assert done.returncode == 0, done.stderr
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == list(range(604))
    assert ids(workdir / "failed") == []


def _long_tasks(tmp_path: Path, count: int, body: str = "sleep 300") -> Path:
    """Tasks that record their pid, then run ``body`` (in the task's process group)."""
    pids = tmp_path / "pids"
    pids.mkdir()
    return write_tasklist(tmp_path / "t", [
        f"echo $$ > {pids}/{i}.pid; {body} & echo $! >> {pids}/{i}.pid; wait"
        for i in range(count)])


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_requeues_running_tasks(tmp_path: Path, sig: int) -> None:
    tasks = _long_tasks(tmp_path, 5)
    farmer = start_farmer([str(tasks), "-n", "3"])
    wait_for(lambda: len(list((tmp_path / "pids").glob("*.pid"))) == 3
             and len(pids_in(tmp_path / "pids")) == 3, what="3 tasks running")
    wait_for(lambda: all(len(p.read_text().split()) == 2
                         for p in (tmp_path / "pids").glob("*.pid")), what="children started")
    result = stop(farmer, sig)
    assert result.returncode == 3, result.stderr
    workdir = tmp_path / "t_workdir"
    assert ids(workdir / "toprocess") == [0, 1, 2, 3, 4]
    assert ids(workdir / "failed") == [] and ids(workdir / "finished") == []
    task_pids = [int(x) for p in (tmp_path / "pids").glob("*.pid")
                 for x in p.read_text().split()]
    assert len(task_pids) == 6
    wait_for(lambda: not any(alive(pid) for pid in task_pids), timeout=10,
             what="task processes gone")
    # The timeline shows the three cut executions, each with its end marker, and the stop.
    timeline = json.loads((workdir / "timeline.json").read_text())
    executions = [e for e in timeline if e["ph"] == "X"]
    assert sorted(e["args"]["id"] for e in executions) == [0, 1, 2]
    assert {e["cat"] for e in executions} == {"stopped"}
    assert [e["name"] for e in timeline if e["ph"] == "i" and e["s"] == "t"] == ["stopped"] * 3
    stops = [e for e in timeline if e["name"].startswith("stop: ")]
    assert [e["args"]["stop"] for e in stops] == [signal.Signals(sig).name]


def test_tasks_signalled_with_the_farmer_are_requeued_not_failed(tmp_path: Path) -> None:
    """SLURM signals every process of a step: the tasks die of SIGUSR1 too."""
    tasks = write_tasklist(tmp_path / "t", [f"sleep 300 # {tmp_path}"] * 4)
    farmer = start_farmer([str(tasks), "-n", "2"])
    workdir = tmp_path / "t_workdir"
    marker = str(tmp_path)  # in every task's command line, to find our task processes

    def running() -> int:
        found = subprocess.run(["pgrep", "-f", f"sleep 300 # {marker}"], capture_output=True)
        return found.stdout.count(b"\n")

    wait_for(lambda: running() == 2, what="2 tasks running")
    signal_tree(farmer.pid, signal.SIGUSR1)
    _, err = farmer.communicate(timeout=30)
    assert farmer.returncode == 3, err
    assert ids(workdir / "failed") == []
    assert sorted(ids(workdir / "toprocess")) == [0, 1, 2, 3]


def test_task_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    tasks = _long_tasks(tmp_path, 1, body="trap '' TERM; sleep 300")
    farmer = start_farmer([str(tasks), "-n", "1"])
    wait_for(lambda: len(pids_in(tmp_path / "pids")) == 1
             and len((tmp_path / "pids" / "0.pid").read_text().split()) == 2,
             what="task running")
    result = stop(farmer, signal.SIGUSR1)
    assert result.returncode == 3
    task_pids = [int(x) for x in (tmp_path / "pids" / "0.pid").read_text().split()]
    wait_for(lambda: not any(alive(pid) for pid in task_pids), timeout=10,
             what="stubborn task killed")
    assert ids(tmp_path / "t_workdir" / "toprocess") == [0]


def test_timeout_stops_and_requeues(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true", "true", "sleep 300", "sleep 300"])
    result = run_farmer([str(tasks), "-n", "2", "--timeout", "2"])
    assert result.returncode == 3, result.stderr
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == [0, 1]
    assert ids(workdir / "toprocess") == [2, 3]
    assert "stopped by timeout" in result.stdout
    again = run_farmer([str(tasks), "-n", "2", "--timeout", "1"])
    assert again.returncode == 3
    assert sorted(ids(workdir / "finished")) == [0, 1]


def test_timeline_is_valid_trace_json(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", [f"echo {i}" for i in range(6)] + ["false"])
    assert run_farmer([str(tasks), "-n", "2"]).returncode == 1
    assert run_farmer([str(tasks), "-n", "2"]).returncode == 1  # a second farmer appends
    events = json.loads((tmp_path / "t_workdir" / "timeline.json").read_text())
    complete = [e for e in events if e["ph"] == "X"]
    assert sorted(e["args"]["id"] for e in complete) == list(range(7))
    assert {e["args"]["exit"] for e in complete} == {0, 1}
    assert all(e["dur"] >= 0 and e["ts"] > 1_600_000_000_000_000 for e in complete)
    names = [e for e in events if e["ph"] == "M" and e["name"] == "process_name"
             and e["pid"] != COUNTERS_PID]
    assert len(names) == 2 and len({e["pid"] for e in names}) == 2
    assert all(e["args"]["name"].endswith(" · farmer pid") for e in names)
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e["name"] == "thread_name"}
    assert sorted(tid for pid, tid in threads if pid == names[0]["pid"]) == [1, 2]
    assert all((e["pid"], e["tid"]) in threads for e in complete)
    order = [e["args"]["sort_index"] for e in events if e["name"] == "process_sort_index"]
    assert order == [1, 2]


def test_rerun_log_is_appended_with_a_separator(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo run"])
    workdir = tmp_path / "t_workdir"
    assert run_farmer([str(tasks)]).returncode == 0
    (workdir / "toprocess").write_text("0 echo run\n")
    (workdir / "finished").write_text("")
    assert run_farmer([str(tasks)]).returncode == 0
    log = (workdir / "logs" / "log_0").read_text().splitlines()
    assert log[0] == "run" and "runs again" in log[1] and log[2] == "run"


def test_verbose_lines_and_pytaskfarmer_verbose_value(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"])
    result = run_farmer([str(tasks), "--verbose", "True"])
    assert result.returncode == 0, result.stderr
    assert "start task 0: true" in result.stdout and "end task 0: exit 0" in result.stdout
    quiet = run_farmer([str(tasks), "-w", str(tmp_path / "w2"), "-v", "0"])
    assert quiet.returncode == 0 and "start task" not in quiet.stdout


def test_lock_lives_in_scratch(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    tasks = write_tasklist(tmp_path / "t", ["true"])
    assert run_farmer([str(tasks)], env={"SCRATCH": str(scratch)}).returncode == 0
    assert len(list(scratch.glob("taskfarmer_*.lock"))) == 1
    assert not (tmp_path / "t_workdir" / "lock").exists()


def test_soft_lock(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", [f"echo {i}" for i in range(20)])
    farmers = [start_farmer([str(tasks), "-n", "2"], env={"TASKFARMER_LOCK": "soft"})
               for _ in range(2)]
    assert [f.wait(timeout=120) for f in farmers] == [0, 0]
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == list(range(20))
    assert not (workdir / "lock").exists()  # a soft lock is removed on release


@pytest.mark.parametrize("args, words", [
    (["--proc", "0"], "--proc"),
    (["--proc", "many"], "--proc"),
    (["--timeout", "-5"], "--timeout"),
    (["--timeout", "nan"], "--timeout"),  # once: workers started and killed for ever
    (["--task-timeout", "inf"], "--task-timeout"),  # once: tracebacks from setitimer
    (["-j", "1000000000"], "--proc"),  # once: memory without end
    (["--bogus"], "--bogus"),
    (["--runner", "nosuch"], "nosuch"),
    (["--tasklist", "nosuch"], "nosuch"),
    (["--lock", "weird"], "--lock"),
    (["--mem-per-task", "nan"], "--mem-per-task"),
    (["--mem-per-task", "-2G"], "--mem-per-task"),
    (["--mem-per-task", "5X"], "--mem-per-task"),
])
def test_bad_options_give_one_line(tmp_path: Path, args: list, words: str) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"])
    result = run_farmer([str(tasks), *args])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "t_workdir").exists()


def test_missing_tasklist(tmp_path: Path) -> None:
    result = run_farmer([str(tmp_path / "nope.txt")])
    assert result.returncode == 2
    assert result.stderr.strip() == f"farmer: error: {tmp_path / 'nope.txt'}: no such tasklist"
    assert not (tmp_path / "nope.txt_workdir").exists()  # a typo leaves nothing behind


def test_tasklist_with_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    tasks = tmp_path / "t"
    tasks.write_bytes(b"echo ok\n# fine\necho \xff\xfe bad\n")
    result = run_farmer([str(tasks)])
    assert result.returncode == 2
    assert result.stderr.strip() == f"farmer: error: {tasks}:3: line is not valid UTF-8"
    assert not (tmp_path / "t_workdir" / "toprocess").exists()


def test_tasklist_with_nul_byte(tmp_path: Path) -> None:
    tasks = tmp_path / "t"
    tasks.write_bytes(b"echo \x00 x\n")
    result = run_farmer([str(tasks)])
    assert result.returncode == 2 and f"{tasks}:1: line contains a NUL byte" in result.stderr


def test_unwritable_workdir(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_farmer([str(tasks), "-w", str(blocker / "sub")])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot create directory" in result.stderr and "Traceback" not in result.stderr


def test_read_only_workdir(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        tasks = write_tasklist(tmp_path / "t", ["true"])
        workdir = tmp_path / "ro"
        workdir.mkdir()
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                                str(workdir)], capture_output=True)
        if mount.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs: {mount.stderr.decode().strip()}")
        try:
            result = run_farmer([str(tasks), "-w", str(workdir)])
        finally:
            subprocess.run(["umount", str(workdir)], check=True)
    else:
        tasks = write_tasklist(tmp_path / "t", ["true"])
        workdir = tmp_path / "ro"
        workdir.mkdir()
        workdir.chmod(0o500)
        result = run_farmer([str(tasks), "-w", str(workdir)])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_version_and_help() -> None:
    assert run_farmer(["--version"]).stdout.startswith("farmer, version")
    helptext = run_farmer(["--help"]).stdout
    for option in ("--proc", "--timeout", "--workdir", "--verbose", "--runner", "--tasklist",
                   "Exit codes"):
        assert option in helptext


def test_stop_signal_while_reading_a_big_tasklist_exits_cleanly(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", [f"echo {i}" for i in range(300_000)])
    farmer = start_farmer([str(tasks), "-n", "1"])
    workdir = tmp_path / "t_workdir"
    wait_for(lambda: (workdir / "toprocess.tmp").exists() or (workdir / "toprocess").exists(),
             what="initialisation started")
    result = stop(farmer, signal.SIGUSR1)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    finished = ids(workdir / "finished")
    assert sorted(finished + ids(workdir / "toprocess")) == list(range(300_000))


def test_the_stats_file_gets_the_farmer_s_lock_holds(tmp_path: Path) -> None:
    """``TASKFARMER_STATS`` (benchmarks): one JSON line per farmer run, appended."""
    stats = tmp_path / "stats.jsonl"
    tasks = write_tasklist(tmp_path / "tasks", ["true"] * 20)
    for _ in range(2):
        result = run_farmer([str(tasks), "-n", "2"], env={"TASKFARMER_STATS": str(stats)})
        assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in stats.read_text().splitlines())
    assert first["holds"] >= 2 and first["handovers"] == 0  # one node
    assert second["holds"] >= 1 and second["farmer"] != first["farmer"]
