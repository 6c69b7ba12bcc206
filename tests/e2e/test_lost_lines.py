"""A state line lost after it was written (a torn or zeroed write-back on a shared filesystem)
never loses its task: at rest, a claimed task recorded nowhere is put back and runs again."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers.farmer import no_traceback, run_farmer, write_tasklist

from taskfarmer.store.lines import line_ids

#: A task that waits until task 1 is recorded (results are recorded at the worker's next lock
#: hold), then zeroes the last line of ``finished``, newline included: what the NFSv4.2 lab saw,
#: a line that reached the server as NUL bytes.
ZERO_LAST_LINE = """
import sys, time
path = sys.argv[1]
while b"\\n1 " not in open(path, "rb").read():
    time.sleep(0.02)
with open(path, "r+b") as handle:
    data = handle.read()
    start = data.rfind(b"\\n", 0, len(data) - 1) + 1
    handle.seek(start)
    handle.write(b"\\0" * (len(data) - start))
"""


def runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_a_finished_line_zeroed_while_farming_runs_its_task_again(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    log = tmp_path / "runs"
    tasks = [f"echo {i} >> {log}" for i in range(4)]
    script = tmp_path / "zero.py"
    script.write_text(ZERO_LAST_LINE)
    tasks.insert(2, f"{sys.executable} {script} {workdir / 'finished'}")  # zeroes task 1's
    tasklist = write_tasklist(tmp_path / "tasks", tasks)
    result = run_farmer([str(tasklist), "--workdir", str(workdir), "-n", "1"])
    assert result.returncode == 0, result.stdout + result.stderr
    no_traceback(result.stdout, result.stderr)
    assert "1 task(s) claimed but recorded nowhere" in result.stdout + result.stderr
    assert sorted(line_ids(workdir / "finished")) == [0, 1, 2, 3, 4]  # each once
    assert sorted(runs(log)) == ["0", "1", "1", "2", "3"]  # task 1 ran again
    assert b"finished: " + b"\0" * len(f"1 {tasks[1]}\n") in (workdir / "torn").read_bytes()
    assert (workdir / "toprocess").read_text() == "" and (workdir / "claims").read_text() == ""


def test_a_farmer_starting_at_rest_puts_back_what_its_predecessor_lost(tmp_path: Path) -> None:
    """A workdir left at rest (no lease) before it was tidied, with task 2's ``finished``
    line torn to NUL bytes: the next farmer cuts them off into torn and stops (exit 2: the
    filesystem lost a write); the one after puts task 2 back and runs it."""
    workdir = tmp_path / "work"
    log = tmp_path / "runs"
    tasks = [f"echo {i} >> {log}" for i in range(4)]
    tasklist = write_tasklist(tmp_path / "tasks", tasks)
    first = run_farmer([str(tasklist), "--workdir", str(workdir), "-n", "1"])
    assert first.returncode == 0, first.stdout + first.stderr
    # What the workdir looked like before the tidy: every task taken, none left.
    toprocess = "".join(f"{i} {task}\n" for i, task in enumerate(tasks)).encode()
    claims, offset = [], 0
    for i, task in enumerate(tasks):
        offset += len(f"{i} {task}\n".encode())
        claims.append(f"{i} gone.1-abc.w0.1.1 {offset}\n")
    (workdir / "toprocess").write_bytes(toprocess)
    (workdir / "claims").write_text("".join(claims))
    finished = b"".join(f"{i} {tasks[i]}\n".encode() for i in (0, 1, 3))
    (workdir / "finished").write_bytes(finished + b"\0" * 78)
    log.unlink()
    stopped = run_farmer([str(tasklist), "--workdir", str(workdir), "-n", "1"])
    assert stopped.returncode == 2, stopped.stdout + stopped.stderr
    no_traceback(stopped.stdout, stopped.stderr)
    assert stopped.stderr.strip().splitlines() == [
        f"farmer: error: {workdir / 'finished'} (byte {len(finished)}): 78 byte(s) no farmer "
        f"wrote (78 NUL): the filesystem lost a write; they are cut off into torn, and a task "
        f"they recorded runs again at the next start. Check the workdir's filesystem, then "
        f"run again"]
    assert not log.exists()  # nothing ran
    assert (workdir / "torn").read_bytes() == b"finished: " + b"\0" * 78 + b"\n"
    result = run_farmer([str(tasklist), "--workdir", str(workdir), "-n", "1"])
    assert result.returncode == 0, result.stdout + result.stderr
    no_traceback(result.stdout, result.stderr)
    assert "claimed but recorded nowhere" in result.stdout + result.stderr
    assert sorted(line_ids(workdir / "finished")) == [0, 1, 2, 3]
    assert runs(log) == ["2"]
