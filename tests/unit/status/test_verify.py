"""``farmer --verify``'s rules, judged on bytes alone (:mod:`taskfarmer.status.verify`)."""

from __future__ import annotations

from dataclasses import replace

from taskfarmer.hpc.identity import Identity
from taskfarmer.status.verify import (
    NOTE,
    PROBLEM,
    WARNING,
    Finding,
    LeaseView,
    WorkdirView,
    check,
    format_ids,
)

LEASE = "n1.7-ab.w0.8.1"
OWNER = Identity("h", "n1", 8, "b", "p", "1", {"farmer": "n1.7-ab", "worker": "0"}).to_text()
HEADER = b"id\tattempt\tnode\tfarmer\tslot\tstart\truntime\texit\tsignal\toutcome\tcommand\n"


def joblog(*rows: tuple[int, str]) -> bytes:
    return HEADER + b"".join(b"%d\t1\tn1\tn1.7-ab\t0\t1000\t0.100\t0\t0\t%s\techo\n"
                             % (task_id, outcome.encode()) for task_id, outcome in rows)


def toprocess(*ids: int) -> bytes:
    return b"".join(b"%d echo %d\n" % (task_id, task_id) for task_id in ids)


def ends(data: bytes) -> list[int]:
    return [index + 1 for index, byte in enumerate(data) if byte == ord("\n")]


#: 4 tasks: 0 finished, 1 failed, 2 running under LEASE, 3 pending.
TODO = toprocess(0, 1, 2, 3)
GOOD = WorkdirView(
    total=4, toprocess=TODO, cursor=ends(TODO)[2],
    finished=b"0 echo 0\n", failed=b"1 echo 1\n",
    claims=b"".join(b"%d %s %d\n" % (i, LEASE.encode(), ends(TODO)[i]) for i in range(3)),
    joblog=joblog((0, "finished"), (1, "failed")),
    leases=(LeaseView(LEASE, 1.0, OWNER),))


def problems(view: WorkdirView) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(f.file, f.what, f.ids) for f in check(view).findings if f.level == PROBLEM]


def test_a_consistent_workdir_counts_every_task_once() -> None:
    verdict = check(GOOD)
    assert verdict.consistent and verdict.findings == []
    assert (verdict.finished, verdict.failed, verdict.taken, verdict.pending) == (1, 1, 1, 1)
    assert verdict.lines() == ["consistent: 4 tasks: 1 finished, 1 failed, 1 pending, "
                               "1 running"]


def test_a_task_recorded_twice_or_in_both_files_is_a_problem() -> None:
    assert problems(replace(GOOD, finished=b"0 echo 0\n0 echo 0\n")) == [
        ("finished", "recorded twice", (0,))]
    both = check(replace(GOOD, failed=b"1 echo 1\n0 echo 0\n"))
    assert not both.consistent
    assert ("finished, failed", "recorded in both", (0,)) in [
        (f.file, f.what, f.ids) for f in both.findings]


def test_a_task_in_no_file_or_under_a_vanished_lease_is_lost() -> None:
    assert problems(replace(GOOD, leases=())) == [
        ("claims", "lost: last claimed by a lease that does not exist, and neither finished, "
         "failed nor pending", (2,))]
    # compacted when the last farmer left: no claims, toprocess is what is left to do
    compacted = replace(GOOD, toprocess=toprocess(3), cursor=0, claims=b"", leases=())
    assert check(replace(compacted, toprocess=toprocess(2, 3))).consistent
    assert problems(compacted) == [
        ("all state files", "lost: in no file (neither finished, failed, pending nor claimed)",
         (2,))]


def test_a_recorded_task_still_pending_would_run_again() -> None:
    view = replace(GOOD, finished=b"0 echo 0\n3 echo 3\n", joblog=joblog(
        (0, "finished"), (1, "failed"), (3, "finished")))
    assert problems(view) == [("toprocess", "recorded, and still pending after the cursor "
                                            "(would run again)", (3,))]


def test_torn_lines_malformed_lines_and_unknown_ids_name_their_file() -> None:
    torn = problems(replace(GOOD, failed=b"1 echo 1\n5 ech"))
    assert [(file, what.split(" (")[0]) for file, what, _ in torn] == [
        ("failed", "torn last line b'5 ech'")]
    bad = problems(replace(GOOD, finished=b"0 echo 0\nxx\n"))
    assert bad == [("finished", "malformed line (not 'ID task') on line 2", ())]
    badlog = problems(replace(GOOD, joblog=GOOD.joblog + b"2\tnot a line\n"))
    assert badlog == [("joblog", "malformed line (not \"the job log's columns\") on line 4",
                       ())]
    unknown = problems(replace(GOOD, finished=b"0 echo 0\n9 echo 9\n"))
    assert unknown == [("finished", "unknown task ID (only 4 imported)", (9,))]


def test_claims_must_match_the_toprocess_lines_before_the_cursor() -> None:
    swapped = GOOD.claims.replace(b"1 %s" % LEASE.encode(), b"3 %s" % LEASE.encode())
    found = problems(replace(GOOD, claims=swapped))
    assert found[0][0] == "claims" and found[0][2] == (3,)
    assert any("malformed line" in what for _, what, _ in problems(
        replace(GOOD, claims=GOOD.claims + b"- compact\n")))
    fewer = problems(replace(GOOD, claims=GOOD.claims.split(b"\n", 1)[1]))
    assert fewer == [("claims", "2 claim(s) for 3 toprocess line(s) before the cursor: "
                      "every task taken has exactly one", ())]


def test_the_job_log_never_shows_an_outcome_the_state_does_not_have() -> None:
    assert problems(replace(GOOD, joblog=joblog((0, "finished"), (1, "failed"),
                                                (2, "finished")))) == [
        ("joblog", "says finished, but the task is not in finished", (2,))]
    assert problems(replace(GOOD, joblog=joblog((0, "finished"), (0, "finished"),
                                                (1, "failed")))) == [
        ("joblog", "finished twice", (0,))]
    assert problems(replace(GOOD, joblog=joblog((0, "finished"), (1, "failed"),
                                                (3, "timed out"))))[0][2] == (3,)
    assert problems(replace(GOOD, joblog=joblog((0, "finished"), (1, "failed"),
                                                (3, "out of memory"))))[0][2] == (3,)
    # killed by the OOM killer or evicted, put back: not an outcome of the state
    assert check(replace(GOOD, joblog=joblog((0, "finished"), (1, "oom"), (1, "evicted"),
                                             (1, "out of memory"), (2, "oom")))).consistent
    # put back by --requeue-failed (an "ID 0" line in attempts): its failed line stays
    requeued = replace(GOOD, joblog=joblog((0, "finished"), (1, "failed"), (3, "failed")),
                       attempts=b"3 1\n3 0\n")
    assert check(requeued).consistent


def test_a_missing_job_log_line_is_a_note_not_a_problem() -> None:
    verdict = check(replace(GOOD, joblog=joblog((0, "finished"))))
    assert verdict.consistent
    assert [f.level for f in verdict.findings] == [NOTE]


def test_a_stale_lease_is_a_warning_naming_its_tasks() -> None:
    verdict = check(replace(GOOD, leases=(LeaseView(LEASE, 900.0, OWNER),)))
    assert verdict.consistent
    assert {(f.level, f.file) for f in verdict.findings} == {(WARNING, f"leases/{LEASE}")}
    assert [f.ids for f in verdict.findings if f.ids] == [(2,)]


def test_a_malformed_lease_file_is_a_problem() -> None:
    assert problems(replace(GOOD, leases=(LeaseView(LEASE, 1.0, "junk"),))) == [
        (f"leases/{LEASE}", "malformed lease (no node, pid or farmer line)", ())]
    assert problems(replace(GOOD, leases=(LeaseView(LEASE, 1.0, OWNER),
                                          LeaseView("stray", 1.0, OWNER)))) == [
        ("leases/stray", "not a lease name (FARMER.wSLOT.PID.N)", ())]


def test_a_lease_being_taken_over_still_holds_its_tasks() -> None:
    assert check(replace(GOOD, leases=(LeaseView(LEASE + ".dead", 1.0, OWNER),))).consistent


def test_a_pytaskfarmer_workdir_is_judged_against_its_tasklist() -> None:
    # no claims, no job log: a task in no file is lost (without the total: below the top ID)
    view = WorkdirView(total=3, toprocess=toprocess(2), cursor=0, finished=b"0 echo 0\n",
                       claims=None, joblog=None)
    assert problems(view) == [("all state files", "lost: in no file (neither finished, "
                               "failed, pending nor claimed)", (1,))]
    assert check(replace(view, total=None, toprocess=toprocess(1, 2))).consistent


def test_ids_are_shown_as_ranges_and_counted_past_the_limit() -> None:
    assert format_ids([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    assert format_ids(list(range(0, 100, 2)), limit=3) == "0, 2, 4 (+47 more)"
    assert Finding(PROBLEM, "claims", "lost", (4, 5)).line() == \
        "problem: claims: lost: 2 tasks 4-5"
