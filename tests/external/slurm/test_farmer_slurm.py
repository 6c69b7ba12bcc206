"""The example batch scripts in ``examples/`` and the farmer inside them, on the real cluster.

Every test runs an example script unmodified (only sbatch options on the command line and
``FARMER_OPTS``/``FARMER_SRUN`` in the environment) on a tasklist of shell tasks. Each task
appends one line per execution to ``runs/ID`` (node, job, array element, restart count), and
"gated" tasks then wait until the test creates ``gate``: so "N tasks running" is "N lines in
``runs/``", and nothing depends on how fast the machine is.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from helpers.farmer import ids
from helpers.tmpfs import Tmpfs

from taskfarmer.timeline.events import COUNTERS_PID

from .cluster import JobInfo, SlurmCluster, SlurmError

pytestmark = pytest.mark.slurm

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

#: One execution of task $PROC_NUMBER: note where and in which job it runs, then, if gated,
#: wait for the gate (at most ~5 min, so that nothing outlives a broken test for long).
TASK_SH = """\
echo "${SLURMD_NODENAME:-?} job=${SLURM_JOB_ID:-?} array=${SLURM_ARRAY_TASK_ID:--}\
 restart=${SLURM_RESTART_COUNT:-0}" >> "$1/runs/$PROC_NUMBER"
if [ "$2" = gated ]; then
    i=0
    while [ ! -e "$1/gate" ]; do
        i=$((i + 1)); [ "$i" -lt 6000 ] || exit 1
        sleep 0.05
    done
fi
"""


class Campaign:
    """A tasklist of ``quick`` tasks followed by ``gated`` ones, and its workdir."""

    def __init__(self, root: Path, quick: int, gated: int) -> None:
        self.root = root
        self.quick = list(range(quick))
        self.gated = list(range(quick, quick + gated))
        self.tasklist = root / "tasks.txt"
        self.workdir = root / "tasks.txt_workdir"
        (root / "runs").mkdir()
        (root / "task.sh").write_text(TASK_SH)
        kinds = ["quick"] * quick + ["gated"] * gated
        self.tasklist.write_text("".join(f"sh {root}/task.sh {root} {kind} {i}\n"
                                         for i, kind in enumerate(kinds)))

    @property
    def all(self) -> list[int]:
        return self.quick + self.gated

    def open_gate(self) -> None:
        (self.root / "gate").touch()

    def execution_counts(self) -> dict[int, int]:
        """Task ID -> how many times it ran."""
        return {task: len(records) for task, records in self.executions().items()}

    def executions(self) -> dict[int, list[dict[str, str]]]:
        """Task ID -> one record per execution: node, job, array, restart."""
        runs: dict[int, list[dict[str, str]]] = {}
        for path in (self.root / "runs").iterdir():
            for line in path.read_text().split("\n")[:-1]:  # whole lines only
                node, *fields = line.split()
                record = dict(field.split("=", 1) for field in fields)
                runs.setdefault(int(path.name), []).append({"node": node, **record})
        return runs

    def started(self, restart: int = 0) -> dict[int, dict[str, str]]:
        """Gated tasks that started in run ``restart`` of the job: ID -> the record."""
        return {task: record for task, records in self.executions().items()
                for record in records
                if task in self.gated and record["restart"] == str(restart)}

    def state(self, name: str) -> list[int]:
        return ids(self.workdir / name)

    def leases(self) -> list[str]:
        return sorted(p.name for p in (self.workdir / "leases").iterdir())

    def output(self) -> str:
        """Every job output file of the campaign (``job-*.out``), for messages and greps."""
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted(self.root.glob("job-*.out")))

    def timeline(self) -> list[dict]:
        return json.loads((self.workdir / "timeline.json").read_text())

    def assert_complete(self) -> None:
        """Every task in ``finished`` exactly once; ``failed``, ``toprocess`` and leases empty."""
        assert sorted(self.state("finished")) == self.all, self.output()
        assert self.state("failed") == [], self.output()
        assert self.state("toprocess") == [], self.output()
        assert self.leases() == []


@pytest.fixture
def make_campaign(slurm: SlurmCluster, tmp_path: Path) -> Iterator[Callable[..., Campaign]]:
    """``make_campaign(quick=, gated=)``: a campaign in a new directory under the test's tmp
    dir. Opens every gate afterwards, so that no gated task outlives a failed test."""
    campaigns: list[Campaign] = []

    def make(quick: int = 0, gated: int = 0) -> Campaign:
        root = tmp_path / f"campaign{len(campaigns)}"
        root.mkdir()
        campaigns.append(Campaign(root, quick, gated))
        return campaigns[-1]

    yield make
    for campaign in campaigns:
        campaign.open_gate()


def _wait_started(slurm: SlurmCluster, campaign: Campaign, count: int, restart: int = 0,
                  timeout: float = 60) -> dict[int, dict[str, str]]:
    """Wait until ``count`` gated tasks of run ``restart`` have started; return them."""
    def enough() -> dict[int, dict[str, str]] | None:
        started = campaign.started(restart)
        return started if len(started) >= count else None

    return slurm.wait_for(enough, timeout, what=lambda: f"{count} gated tasks of run {restart}: "
                          f"{campaign.executions()}\n{campaign.output()}")


def _submit(slurm: SlurmCluster, script: str, campaign: Campaign, farmer_opts: str = "",
            srun: bool = False, **opts: object) -> str:
    env = {"FARMER_OPTS": farmer_opts, "FARMER_SRUN": "1" if srun else "0"}
    opts.setdefault("output", str(campaign.root / "job-%j.out"))
    return slurm.sbatch(EXAMPLES / script, campaign.tasklist, env=env, cwd=campaign.root,
                        **opts)  # type: ignore[arg-type]


def _wait_done(slurm: SlurmCluster, job: str, campaign: Campaign,
               states: tuple[str, ...] = ("COMPLETED",), timeout: float = 90) -> list[JobInfo]:
    """Wait until every record of ``job`` (every array element) is in ``states``."""
    try:
        return slurm.wait_jobs(job, states, timeout=timeout)
    except (SlurmError, TimeoutError) as error:
        raise AssertionError(f"{error}\n{campaign.output()}") from error


def _farmer_tracks(events: list[dict]) -> dict[int, dict[str, object]]:
    """Farmer track id -> its name, labels and worker tids, from the metadata events."""
    tracks: dict[int, dict[str, object]] = {}
    for event in events:
        if event["ph"] != "M" or event["pid"] == COUNTERS_PID:
            continue
        track = tracks.setdefault(event["pid"], {"labels": {}, "workers": set()})
        if event["name"] == "process_name":
            track["name"] = event["args"]["name"]
        elif event["name"] == "process_labels":
            track["labels"] = dict(item.split("=", 1)
                                   for item in event["args"]["labels"].split(", "))
        elif event["name"] == "thread_name":
            assert event["args"]["name"] == "worker"
            track["workers"].add(event["tid"])  # type: ignore[union-attr]
    return tracks


Make = Callable[..., Campaign]


def test_multinode_job_uses_both_nodes(slurm: SlurmCluster, make_campaign: Make) -> None:
    """slurm_multinode.sh: one farmer per node; 2 CPUs per task -> 2 tasks at once on each."""
    campaign = make_campaign(gated=12)
    job = _submit(slurm, "slurm_multinode.sh", campaign, nodes=2, cpus_per_task=2)
    running = _wait_started(slurm, campaign, 4)
    assert Counter(r["node"] for r in running.values()) == {"n1": 2, "n2": 2}
    campaign.open_gate()
    assert _wait_done(slurm, job, campaign)[0].exit_code == 0
    campaign.assert_complete()
    assert campaign.execution_counts() == dict.fromkeys(campaign.all, 1)

    # The node name (not the shared hostname) in log lines, timeline tracks and events.
    output = campaign.output()
    for node in ("n1", "n2"):
        assert re.search(rf" {node}:\d+: ", output), output
    events = campaign.timeline()
    tracks = _farmer_tracks(events)
    assert sorted(str(t["name"]).split(" · ")[0] for t in tracks.values()) == ["n1", "n2"]
    for track in tracks.values():
        labels = track["labels"]
        assert labels["job"] == job and labels["node"] == str(track["name"]).split(" · ")[0]
        assert f" · job {job}." in str(track["name"])
        assert track["workers"] == {1, 2}  # default --proc 2
    hosts = {e["args"]["id"]: e["args"]["host"] for e in events if e["ph"] == "X"}
    assert hosts == {task: records[0]["node"] for task, records in campaign.executions().items()}


def test_array_job_shares_the_tasklist(slurm: SlurmCluster, make_campaign: Make) -> None:
    """slurm_array.sh: 4 one-CPU elements (2 per node) farm one list; --proc 1 from SLURM."""
    campaign = make_campaign(gated=10)
    job = _submit(slurm, "slurm_array.sh", campaign, array="0-3", cpus_per_task=1,
                  output=str(campaign.root / "job-%A_%a.out"))
    running = _wait_started(slurm, campaign, 4)
    assert sorted(r["array"] for r in running.values()) == ["0", "1", "2", "3"]
    assert Counter(r["node"] for r in running.values()) == {"n1": 2, "n2": 2}
    campaign.open_gate()
    records = _wait_done(slurm, job, campaign)
    assert [r.exit_code for r in records] == [0, 0, 0, 0]
    campaign.assert_complete()
    assert campaign.execution_counts() == dict.fromkeys(campaign.all, 1)

    tracks = _farmer_tracks(campaign.timeline())
    labels = sorted((t["labels"]["array_job"], t["labels"]["array_task"])  # type: ignore[index]
                    for t in tracks.values())
    assert labels == [(job, str(i)) for i in range(4)]
    assert all(t["workers"] == {1} for t in tracks.values())  # default --proc 1


def test_array_element_stopped_by_usr1(slurm: SlurmCluster, make_campaign: Make) -> None:
    """``--signal=B:USR1@T`` reaches the farmer of slurm_array.sh (it ``exec``s the farmer):
    that element stops with exit code 3, and another element runs its tasks."""
    campaign = make_campaign(gated=6)
    job = _submit(slurm, "slurm_array.sh", campaign, array="0-1", cpus_per_task=2,
                  output=str(campaign.root / "job-%A_%a.out"))
    running = _wait_started(slurm, campaign, 4)
    stopped = {task for task, record in running.items() if record["array"] == "0"}
    assert len(stopped) == 2

    slurm.scancel(f"{job}_0", "--batch", "--signal=USR1")
    info = _wait_done(slurm, f"{job}_0", campaign, states=("FAILED",))[0]
    assert info.exit_code == 3
    assert "stopped by SIGUSR1, work left" in campaign.output()
    assert campaign.state("failed") == []
    campaign.open_gate()
    assert _wait_done(slurm, f"{job}_1", campaign)[0].exit_code == 0
    campaign.assert_complete()
    assert campaign.execution_counts() == {
        task: 2 if task in stopped else 1 for task in campaign.all}
    again = {task for task, records in campaign.executions().items() if len(records) == 2}
    assert {campaign.executions()[task][1]["array"] for task in again} == {"1"}


def test_usr1_to_the_job_step_puts_running_tasks_back(slurm: SlurmCluster, make_campaign: Make
                                                      ) -> None:
    """``scancel --signal=USR1`` (what ``--signal=USR1@T`` does) reaches the farmers and their
    tasks: the tasks in flight go back to toprocess, none to failed; a new job finishes them.

    (A gated task's shell never exits 0 once its ``sleep`` is killed: it loops until it gets
    the signal itself. A task like ``sleep 30; echo done`` can instead end with exit code 0
    before its worker sees the signal, and is then recorded as finished: see docs/slurm.md.)
    """
    campaign = make_campaign(quick=6, gated=8)
    job = _submit(slurm, "slurm_multinode.sh", campaign, nodes=2, cpus_per_task=2)
    in_flight = set(_wait_started(slurm, campaign, 4))
    slurm.wait_for(lambda: len(campaign.state("finished")) == 6, 30, what="the quick tasks")

    slurm.scancel(job, "--signal=USR1")
    info = _wait_done(slurm, job, campaign, states=("FAILED",))[0]
    output = campaign.output()
    assert info.exit_code == 3, output
    assert output.count("stopped by SIGUSR1, work left") == 2, output
    assert campaign.state("failed") == []
    assert sorted(campaign.state("finished")) == campaign.quick
    assert campaign.state("toprocess") == campaign.gated  # compacted: every gated task once
    assert len(in_flight) == 4 and in_flight <= set(campaign.gated)
    assert campaign.leases() == []

    campaign.open_gate()
    job = _submit(slurm, "slurm_multinode.sh", campaign, nodes=2, cpus_per_task=2)
    assert _wait_done(slurm, job, campaign)[0].exit_code == 0
    campaign.assert_complete()
    assert campaign.execution_counts() == {
        task: 2 if task in in_flight else 1 for task in campaign.all}


def _run_requeued_campaign(slurm: SlurmCluster, campaign: Campaign, job: str, running: int,
                           *signal_args: str) -> set[int]:
    """Signal the job (``scancel SIGNAL_ARGS``) once ``running`` gated tasks run; let it requeue
    itself and finish. Returns the tasks that were in flight at the signal."""
    in_flight = set(_wait_started(slurm, campaign, running))
    # Tasks that already ended must be recorded before the signal: a result is recorded only
    # 0.1 s after its task ended, and one that ended just before a stop is put back (and runs
    # again), which would make the execution counts below depend on timing.
    done = set(campaign.execution_counts()) - set(campaign.gated)  # gated ones never end yet
    slurm.wait_for(lambda: done <= set(campaign.state("finished")), 60,
                   what="ended tasks recorded")
    slurm.scancel(job, *signal_args)
    # The second run starts by itself (SLURM holds it for cred_expire + 1 s), the gate still
    # shut: the first run has ended by then.
    _wait_started(slurm, campaign, running, restart=1)
    assert campaign.state("failed") == []
    campaign.open_gate()
    info = _wait_done(slurm, job, campaign)[0]
    assert (info.exit_code, info.restarts) == (0, 1), campaign.output()
    campaign.assert_complete()
    assert campaign.execution_counts() == {
        task: 2 if task in in_flight else 1 for task in campaign.all}
    return in_flight


def test_requeue_example_continues_after_usr1(slurm: SlurmCluster, make_campaign: Make,
                                              slurm_timings: dict[str, float]) -> None:
    """slurm_requeue.sh signalled as ``--signal=B:USR1@T`` does (``scancel --batch``): the
    batch script passes USR1 to the farmer, requeues the job, and the campaign completes."""
    campaign = make_campaign(quick=2, gated=6)
    start = time.monotonic()
    job = _submit(slurm, "slurm_requeue.sh", campaign, cpus_per_task=2)
    _run_requeued_campaign(slurm, campaign, job, 2, "--batch", "--signal=USR1")
    slurm_timings["requeue example: sbatch, USR1, requeue, done"] = time.monotonic() - start

    output = campaign.output()  # --open-mode=append (in the script): both runs are in it
    for text in ("run 1 on", "got SIGUSR1, passing it on", "farmer exited with code 3",
                 f"job {job} requeued", "run 2 on", "farmer exited with code 0"):
        assert text in output, output
    restarts = sorted(t["labels"].get("restart", "0")  # type: ignore[union-attr]
                      for t in _farmer_tracks(campaign.timeline()).values())
    assert restarts == ["0", "1"]


def test_requeue_example_ends_the_campaign_on_a_full_filesystem(slurm: SlurmCluster,
                                                               make_campaign: Make,
                                                               tmpfs: Tmpfs) -> None:
    """Exit code 2 (the workdir's filesystem is over its file-count quota) is not requeued:
    the job fails with 2; once the quota is raised, the campaign submitted again completes."""
    campaign = make_campaign(quick=40)
    tmpfs.mount("nr_inodes=30")
    workdir = tmpfs.path / "wd"
    # A log file per task (the example's --logs packed would stay under the quota; FARMER_OPTS
    # comes after it, so this wins)
    job = _submit(slurm, "slurm_requeue.sh", campaign, f"--workdir {workdir} --logs flat",
                  cpus_per_task=2)
    info = _wait_done(slurm, job, campaign, states=("FAILED",))[0]
    output = campaign.output()
    assert (info.exit_code, info.restarts) == (2, 0), output
    assert "farmer exited with code 2" in output and "requeued" not in output, output
    assert "farmer: error: " in output and "No space left on device" in output, output
    tmpfs.remount("nr_inodes=100000")
    job = _submit(slurm, "slurm_requeue.sh", campaign, f"--workdir {workdir}", cpus_per_task=2)
    info = _wait_done(slurm, job, campaign)[0]
    assert (info.exit_code, info.restarts) == (0, 0), campaign.output()
    assert sorted(ids(workdir / "finished")) == campaign.all
    assert ids(workdir / "toprocess") == []


def test_requeue_example_step_variant_on_two_nodes(slurm: SlurmCluster, make_campaign: Make
                                                   ) -> None:
    """FARMER_SRUN=1: the farmers run as a job step on both nodes and get USR1 from SLURM
    directly (``--signal=USR1@T``, no ``B:``); the job requeues itself and completes."""
    campaign = make_campaign(gated=10)
    job = _submit(slurm, "slurm_requeue.sh", campaign, srun=True, nodes=2, cpus_per_task=2)
    _run_requeued_campaign(slurm, campaign, job, 4, "--signal=USR1")
    runs = campaign.executions()
    assert {r["node"] for records in runs.values() for r in records} == {"n1", "n2"}
    assert "got SIGUSR1" not in campaign.output()  # the batch script was not signalled


def test_requeue_example_cancelled_puts_tasks_back(slurm: SlurmCluster, make_campaign: Make
                                                   ) -> None:
    """scancel (SIGTERM to every process): the script waits for the farmer to put its tasks
    back, and does not requeue."""
    campaign = make_campaign(gated=4)
    job = _submit(slurm, "slurm_requeue.sh", campaign, cpus_per_task=2)
    in_flight = set(_wait_started(slurm, campaign, 2))
    slurm.scancel(job)
    slurm.wait_for(lambda: "farmer exited with code 3" in campaign.output(), 30,
                   what=lambda: f"the farmer's exit: {campaign.output()}")
    info = _wait_done(slurm, job, campaign, states=("CANCELLED",))[0]
    assert info.restarts == 0
    assert "requeued" not in campaign.output()
    assert campaign.state("failed") == []
    assert campaign.state("finished") == []
    assert campaign.state("toprocess") == campaign.gated
    assert len(in_flight) == 2
    assert campaign.leases() == []


def test_farmers_on_two_nodes_keep_their_leases(slurm: SlurmCluster, make_campaign: Make
                                                ) -> None:
    """Both simulated nodes share hostname, boot and PID namespace, so each farmer can look up
    the other's pids: a live farmer's tasks must never look dead, even with a short --lease."""
    lease = 5.0
    campaign = make_campaign(gated=8)
    job = _submit(slurm, "slurm_multinode.sh", campaign, farmer_opts=f"--lease {lease:g}",
                  nodes=2, cpus_per_task=2)
    _wait_started(slurm, campaign, 4)
    leases = campaign.leases()
    owners = [dict(line.split("=", 1) for line in
                   (campaign.workdir / "leases" / name).read_text().splitlines())
              for name in leases]
    assert len({o["host"] for o in owners}) == 1  # one hostname ...
    assert sorted(o["node"] for o in owners) == ["n1", "n1", "n2", "n2"]  # ... two nodes
    assert sorted(name.split(".")[0] for name in leases) == ["n1", "n1", "n2", "n2"]

    # The tasks run for 2.5 leases while each farmer looks at the other's leases every
    # lease/4: not one may be taken over (a lease file goes) or run twice.
    start = time.monotonic()
    while time.monotonic() - start < 2.5 * lease:
        assert campaign.leases() == leases
        assert len(campaign.executions()) == 4
        time.sleep(0.2)
    campaign.open_gate()
    assert _wait_done(slurm, job, campaign)[0].exit_code == 0
    campaign.assert_complete()
    assert campaign.execution_counts() == dict.fromkeys(campaign.all, 1)
    output = campaign.output()
    assert "took over lease" not in output and "was taken over" not in output, output


#: A task that succeeds (0.2 s) anywhere until task 2 has run; after that it fails at once with
#: 127 on n1 (as on a node whose environment broke): n1 succeeded before, n2 still works.
BREAKING_TASK_SH = """\
echo "${SLURMD_NODENAME:-?} job=${SLURM_JOB_ID:-?} array=- restart=0" >> "$1/runs/$2"
if [ "$SLURMD_NODENAME" = n1 ] && [ -e "$1/broken" ]; then exit 127; fi
sleep 0.2
if [ "$2" -ge 2 ]; then touch "$1/broken"; fi
"""


def test_requeue_example_resubmits_away_from_a_quarantined_node(slurm: SlurmCluster,
                                                                make_campaign: Make) -> None:
    """n1 breaks after three tasks: its farmer quarantines it (exit 6), hands the fast failures
    back, and slurm_requeue.sh submits itself again with --exclude=n1; the new job finishes
    the list on n2, nothing failed."""
    campaign = make_campaign(quick=12)
    (campaign.root / "task.sh").write_text(BREAKING_TASK_SH)
    campaign.tasklist.write_text("".join(f"sh {campaign.root}/task.sh {campaign.root} {i}\n"
                                         for i in campaign.all))
    job = _submit(slurm, "slurm_requeue.sh", campaign, cpus_per_task=1, nodelist="n1")
    info = _wait_done(slurm, job, campaign)[0]
    output = campaign.output()
    assert info.exit_code == 0, output
    assert "farmer exited with code 6" in output, output
    assert "node n1 quarantined: submitted again, excluding n1" in output, output
    [second] = re.findall(r"Submitted batch job (\d+)", output)
    resubmitted = _wait_done(slurm, second, campaign)[0]
    second_output = (campaign.root / f"farmer-{second}.out").read_text()
    assert (resubmitted.exit_code, resubmitted.nodes) == (0, "n2"), second_output
    assert resubmitted.fields["ExcNodeList"] == "n1"
    campaign.assert_complete()
    record = json.loads((campaign.workdir / "quarantine" / "n1").read_text())
    assert "after tasks succeeded on this node" in record["reason"]
    handed = {attempt["id"] for attempt in record["attempts"]}
    assert len(handed) >= 5
    runs = campaign.executions()
    assert all([r["node"] for r in runs[task]] == ["n1", "n2"] for task in handed)
    assert all(len(runs[task]) == 1 for task in set(campaign.all) - handed)
