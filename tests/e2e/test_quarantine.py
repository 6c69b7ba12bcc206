"""A black-hole node quarantines itself: real farmers with different node names on one workdir
(``SLURMD_NODENAME``), tasks that fail fast on one node only."""

from __future__ import annotations

import json
import time
from pathlib import Path

from helpers.farmer import (
    ids,
    no_traceback,
    run_farmer,
    start_farmer,
    verify_problems,
    wait_for,
    write_tasklist,
)

QUARANTINED = 6
#: Fails at once ("command not found") on node a, runs a moment on any other.
ON_A_ONLY = '[ "$SLURMD_NODENAME" = a ] && exit 127; sleep 0.15'


def test_a_node_whose_tasks_fail_fast_quarantines_and_the_other_runs_them(tmp_path: Path
                                                                          ) -> None:
    count = 20
    tasks = write_tasklist(tmp_path / "t", [ON_A_ONLY] * count)
    workdir = tmp_path / "t_workdir"
    b = start_farmer([str(tasks), "-n", "1"], env={"SLURMD_NODENAME": "b"})
    wait_for(lambda: (workdir / "leases").is_dir() and any((workdir / "leases").iterdir()),
             what="node b's worker at work")
    a = run_farmer([str(tasks), "-n", "2"], env={"SLURMD_NODENAME": "a"})
    b_out, b_err = b.communicate(timeout=120)
    no_traceback(a.stdout, a.stderr, b_out, b_err)
    assert (a.returncode, b.returncode) == (QUARANTINED, 0), (a.stdout, a.stderr, b_out, b_err)
    [line] = a.stderr.splitlines()  # one line says why
    assert line.startswith("farmer: node a quarantined: ")
    assert "failed fast (exit 127" in line and "while tasks succeeded on node b" in line
    assert f"record {workdir / 'quarantine' / 'a'}" in line

    # nothing counted: every task finished once, on b; no attempt used up
    assert sorted(ids(workdir / "finished")) == list(range(count))
    assert ids(workdir / "failed") == []
    assert not (workdir / "attempts").exists() or (workdir / "attempts").read_text() == ""
    assert verify_problems(workdir) == []

    record = json.loads((workdir / "quarantine" / "a").read_text())
    handed = sorted(attempt["id"] for attempt in record["attempts"])
    assert record["node"] == "a" and record["until"] > time.time() + 3000
    assert len(handed) >= 5 and len(set(handed)) == len(handed)
    assert {attempt["exit"] for attempt in record["attempts"]} == {127}
    assert all(attempt["runtime"] < 0.15 for attempt in record["attempts"])
    joblog = [line.split("\t") for line in (workdir / "joblog").read_text().splitlines()[1:]]
    assert sorted(int(f[0]) for f in joblog if f[9] == "quarantined") == handed
    assert {f[2] for f in joblog if f[9] == "quarantined"} == {"a"}
    assert {f[2] for f in joblog if f[9] == "finished"} == {"b"}

    listed = run_farmer([str(tasks), "--quarantined"])
    assert (listed.returncode, listed.stdout) == (0, "a\n")
    shown = json.loads(run_farmer([str(tasks), "--status", "--json"]).stdout)
    assert [(q["node"], q["active"], q["handed_back"]) for q in shown["quarantined"]] == [
        ("a", True, len(handed))]
    events = json.loads((workdir / "timeline.json").read_text())
    assert [e["args"]["node"] for e in events if e["name"] == "node quarantined"] == ["a"]
    assert sorted(e["args"]["id"] for e in events
                  if e["ph"] == "X" and e["cat"] == "quarantined") == handed


def test_a_farmer_alone_whose_tasks_all_fail_records_them_failed(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["exit 127"] * 12)
    done = run_farmer([str(tasks), "-n", "2"], env={"SLURMD_NODENAME": "a"})
    assert done.returncode == 1, done.stderr
    assert sorted(ids(tmp_path / "t_workdir" / "failed")) == list(range(12))
    assert not (tmp_path / "t_workdir" / "quarantine").exists()
    assert "quarantine" not in done.stderr + done.stdout


def quarantine(workdir: Path, node: str, until: float) -> Path:
    (workdir / "quarantine").mkdir(parents=True, exist_ok=True)
    path = workdir / "quarantine" / node
    path.write_text(json.dumps({"node": node, "since": time.time() - 10, "until": until,
                                "reason": "5 tasks in a row failed fast", "attempts": []}))
    return path


def test_a_later_farmer_on_a_quarantined_node_refuses_with_one_line(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"])
    workdir = tmp_path / "t_workdir"
    record = quarantine(workdir, "a", time.time() + 600)
    refused = run_farmer([str(tasks)], env={"SLURMD_NODENAME": "a"})
    assert (refused.returncode, refused.stdout) == (QUARANTINED, "")
    [line] = refused.stderr.splitlines()
    assert line.startswith("farmer: error: node a is quarantined until ")
    assert f"remove {record} to farm on it again" in line
    assert not (workdir / "toprocess").exists()  # nothing was read or run

    off = run_farmer([str(tasks), "--quarantine", "off"], env={"SLURMD_NODENAME": "a"})
    assert off.returncode == 0, off.stderr
    quarantine(workdir, "a", time.time() - 1)  # expired
    with open(tasks, "a") as out:
        out.write("true\n")
    assert run_farmer([str(tasks)], env={"SLURMD_NODENAME": "a"}).returncode == 0
    assert sorted(ids(workdir / "finished")) == [0, 1]
    listed = run_farmer(["-w", str(workdir), "--quarantined"])
    assert (listed.returncode, listed.stdout) == (0, "\n")  # expired: excluded no more
