"""Is this node a black hole? The pure decision, rule by rule (taskfarmer.farm.blackhole)."""

from __future__ import annotations

from taskfarmer.farm.blackhole import (
    CHANCE,
    FAST_RATIO,
    KEEP_RUNTIMES,
    RECENT_MIN,
    ROW_HOLD,
    WAIT_LIMIT,
    Attempt,
    Decision,
    Evidence,
    by_chance,
    describe_row,
    fast,
    hold_limit,
    judge,
    recent_window,
)
from taskfarmer.logs.joblog import Entry

T0 = 1_000_000.0  # when the row began


def row(count: int = 5, exit: int = 127, runtime: float = 0.004, signal: int = 0
        ) -> list[Attempt]:
    return [Attempt(i, exit, signal, T0 + i * 0.01, runtime) for i in range(count)]


def entry(node: str, outcome: str, end: float, runtime: float = 2.0, task: int = 99) -> Entry:
    return Entry(task, 1, node, f"{node}.1-x", 0, end - runtime, runtime, 0, 0, outcome, "t")


def seen(*entries: Entry, active: bool = False, node: str = "a") -> Evidence:
    evidence = Evidence(others_active=active)
    return evidence.learn(entries, node)


def test_exit_126_and_127_are_fast_whatever_the_workdir_knows() -> None:
    assert fast(Attempt(1, 127, 0, T0, 30.0), None)
    assert fast(Attempt(1, 126, 0, T0, 0.5), 0.1)
    assert not fast(Attempt(1, 1, 0, T0, 0.001), None)  # nothing to compare with
    assert not fast(Attempt(1, 255, 127, T0, 0.001), None)  # killed by a signal, not exit 127


def test_other_failures_are_fast_when_much_shorter_than_the_median_success() -> None:
    assert fast(Attempt(1, 1, 0, T0, 0.099), FAST_RATIO * 0.1)
    assert not fast(Attempt(1, 1, 0, T0, 0.1), FAST_RATIO * 0.1)
    assert fast(Attempt(1, 139, 11, T0, 0.01), 1.0)  # a segfault in 10 ms


def test_a_row_is_held_while_the_running_task_could_still_be_a_fast_failure() -> None:
    assert hold_limit(None) == ROW_HOLD
    assert hold_limit(ROW_HOLD) == ROW_HOLD
    assert hold_limit(600.0) == 600.0 / FAST_RATIO


def test_fewer_than_k_hold_on_or_are_recorded_when_the_worker_leaves() -> None:
    evidence = seen(entry("b", "finished", T0))
    assert judge(row(4), evidence, 5).decision is Decision.HOLD
    assert judge(row(4), evidence, 5, final=True).decision is Decision.RECORD


def test_a_success_elsewhere_meanwhile_quarantines_with_the_evidence_in_the_reason() -> None:
    verdict = judge(row(5), seen(entry("b", "finished", T0 + 0.5, runtime=0.3)), 5)
    assert verdict.decision is Decision.QUARANTINE
    assert verdict.reason == ("5 tasks in a row failed fast (exit 127, in 0.004 s; successful "
                              "runs take 0.3 s) while tasks succeeded on node b (0 of the "
                              "other nodes' last 1 failed)")


def test_a_success_elsewhere_shortly_before_the_row_counts_an_old_one_does_not() -> None:
    window = recent_window(2.0)
    assert window == RECENT_MIN
    recent = seen(entry("b", "finished", T0 - window + 1))
    assert judge(row(), recent, 5).decision is Decision.QUARANTINE
    old = seen(entry("b", "finished", T0 - window - 1))
    assert judge(row(), old, 5).decision is Decision.RECORD
    # long tasks succeed rarely: two median runs count as recent
    assert recent_window(600.0) == 1200.0
    long_ago = seen(entry("b", "finished", T0 - 1000, runtime=600.0))
    assert judge(row(), long_ago, 5).decision is Decision.QUARANTINE


def test_a_success_of_this_node_during_the_row_means_the_tasks_not_the_node() -> None:
    evidence = seen(entry("b", "finished", T0 + 0.2), entry("a", "finished", T0 + 0.1))
    assert judge(row(), evidence, 5).decision is Decision.RECORD


def test_this_node_succeeding_before_the_row_quarantines() -> None:
    verdict = judge(row(), seen(entry("a", "finished", T0 - 3600)), 5)
    assert verdict.decision is Decision.QUARANTINE
    assert verdict.reason.endswith("after tasks succeeded on this node (0 of its last 1 "
                                   "failed)")


def test_tasks_that_fail_now_and_then_everywhere_do_not_quarantine_a_node_meeting_a_few() -> None:
    """Five in a row are unlikely by chance only if under 6% fail elsewhere (CHANCE)."""
    assert CHANCE ** (1 / 5) < 0.07
    some_fail = [entry("b", "failed" if i % 10 == 0 else "finished", T0 + 0.1)
                 for i in range(100)]  # 10%
    assert judge(row(), seen(*some_fail), 5).decision is Decision.RECORD
    few_fail = [entry("b", "failed" if i % 20 == 0 else "finished", T0 + 0.1)
                for i in range(100)]  # 5%
    assert judge(row(), seen(*few_fail), 5).decision is Decision.QUARANTINE
    assert judge(row(10), seen(*some_fail), 10).decision is Decision.QUARANTINE  # a longer row
    mine = [entry("a", "failed" if i % 10 == 0 else "finished", T0 - 100) for i in range(100)]
    assert judge(row(), seen(*mine), 5).decision is Decision.RECORD
    assert by_chance([], 5) == 1.0 and by_chance([True, False], 2) == 0.25


def test_a_failure_that_is_not_fast_by_the_median_success_breaks_the_case() -> None:
    slow = [*row(4, exit=1, runtime=0.01), Attempt(9, 1, 0, T0 + 1, 0.5)]
    evidence = seen(entry("b", "finished", T0, runtime=1.0))
    assert judge(slow, evidence, 5).decision is Decision.RECORD
    assert judge(row(5, exit=1, runtime=0.01), evidence, 5).decision is Decision.QUARANTINE


def test_tasks_failing_everywhere_are_the_tasks_fault() -> None:
    alone = seen()
    assert judge(row(50), alone, 5).decision is Decision.RECORD
    failing_elsewhere = seen(entry("b", "failed", T0 + 0.1), active=True)
    assert judge(row(), failing_elsewhere, 5).decision is Decision.RECORD
    retried_elsewhere = seen(entry("b", "retry", T0 + 0.1), active=True)
    assert judge(row(), retried_elsewhere, 5).decision is Decision.RECORD


def test_others_running_without_results_yet_wait_but_not_for_ever() -> None:
    evidence = seen(active=True)
    assert judge(row(), evidence, 5).decision is Decision.WAIT
    assert judge(row(), evidence, 5, waited=WAIT_LIMIT - 1).decision is Decision.WAIT
    assert judge(row(), evidence, 5, waited=WAIT_LIMIT).decision is Decision.RECORD
    assert judge(row(), evidence, 5, final=True).decision is Decision.RECORD
    # this node's own failures do not make others active, nor count as failures elsewhere
    ours = seen(entry("a", "failed", T0 + 0.1))
    assert judge(row(), ours, 5).decision is Decision.RECORD


def test_evidence_keeps_the_latest_of_each_kind_and_a_bounded_median() -> None:
    evidence = seen(entry("b", "finished", T0, runtime=1.0), entry("c", "finished", T0 + 5),
                    entry("b", "finished", T0 + 2, runtime=3.0), entry("a", "finished", T0 + 1),
                    entry("c", "timed out", T0 + 7), entry("b", "stopped", T0 + 9),
                    entry("b", "quarantined", T0 + 9))
    assert (evidence.own_success, evidence.other_success, evidence.other_node) == (
        T0 + 1, T0 + 5, "c")
    assert evidence.other_failure == T0 + 7
    assert evidence.reference == 2.0
    assert (evidence.own, evidence.others) == ((True,), (True, True, True, False))
    more = evidence.learn([entry("b", "finished", T0 + 10, runtime=0.5)] * KEEP_RUNTIMES, "a")
    assert len(more.runtimes) == KEEP_RUNTIMES and more.reference == 0.5
    assert (more.other_success, more.other_node) == (T0 + 10, "b")
    assert Evidence().reference is None


def test_learning_entries_together_or_one_by_one_gives_the_same_evidence() -> None:
    """The watch learns its own recorded results in batches (quarantine.NodeWatch.evidence):
    that must not change what it concludes, past the bounds too."""
    outcomes = ("finished", "failed", "timed out", "stopped", "finished")
    entries = [entry("abc"[i % 3], outcomes[i % 5], T0 + i, runtime=0.1 + i % 7, task=i)
               for i in range(KEEP_RUNTIMES * 2 + 11)]
    one_by_one = Evidence()
    for each in entries:
        one_by_one = one_by_one.learn([each], "a")
    assert Evidence().learn(entries, "a") == one_by_one
    assert Evidence().learn(entries[:100], "a").learn(entries[100:], "a") == one_by_one


def test_the_row_is_described_in_one_line() -> None:
    mixed = [Attempt(1, 127, 0, T0, 0.002), Attempt(2, 139, 11, T0, 0.004)]
    assert describe_row(mixed, None) == ("2 tasks in a row failed fast (exit 127, signal 11, "
                                         "in 0.002-0.004 s)")
