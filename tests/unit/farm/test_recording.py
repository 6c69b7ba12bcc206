"""The settlement of held results (``plan``): the RESULT_HOLD rules, without a store; the
words the job log and the timeline use."""

from __future__ import annotations

from dataclasses import replace

from taskfarmer.farm.memory import EVICTED, OOM, OUT_OF_MEMORY
from taskfarmer.farm.recording import RESULT_HOLD, Plan, Result, outcome_word, plan
from taskfarmer.store import Outcome
from taskfarmer.tasks import Task

ENDED = 1000.0  # monotonic clock

#: The lease the worker holds.
LEASE = "node.1-ab.w0.11.2"


def settle(results: list[Result], now: float, stop_at: float | None, final: bool) -> Plan:
    """:func:`plan` for the worker holding :data:`LEASE`."""
    return plan(results, now, stop_at, final, LEASE)


def ended(task_id: int, at: float = ENDED, stopped: str | None = None,
          lease: str = LEASE) -> Result:
    """Task ``task_id`` exited 0 at ``at`` (``stopped``: cut short by that stop)."""
    return Result(Task(task_id, "true"), "true", 0, 0.0, 1.0, at, stopped=stopped, lease=lease)


def test_a_result_is_held_until_it_is_a_hold_old() -> None:
    result = ended(0)
    assert settle([result], ENDED + RESULT_HOLD * 0.9, None, final=False) == Plan(keep=(result,))
    assert settle([result], ENDED + RESULT_HOLD * 1.1, None, final=False) == Plan(record=(result,))


def test_the_results_recorded_are_the_old_enough_prefix() -> None:
    old, young = ended(0, ENDED - 1.0), ended(1, ENDED)
    assert settle([old, young], ENDED, None, final=False) == Plan(record=(old,), keep=(young,))
    # Held on behind a young one, even if old: results are settled in the order they ended.
    assert settle([young, old], ENDED, None, final=False) == Plan(keep=(young, old))


def test_before_leaving_a_stop_changes_nothing() -> None:
    result = ended(0)
    now = ENDED + RESULT_HOLD * 2
    assert settle([result], now, ENDED, final=False) == Plan(record=(result,))


def test_leaving_without_a_stop_records_even_the_youngest() -> None:
    result = ended(0)
    assert settle([result], ENDED, None, final=True) == Plan(record=(result,))


def test_leaving_puts_back_a_result_that_ended_within_the_hold_before_the_stop() -> None:
    """SLURM signalled the whole step: the task's command died, its shell exited 0 first."""
    result = ended(0)
    now = ENDED + 5.0
    assert settle([result], now, ENDED + RESULT_HOLD / 2, final=True) == Plan(put_back=(result,))
    assert settle([result], now, ENDED - 1.0, final=True) == Plan(put_back=(result,))  # after it


def test_leaving_records_a_result_that_ended_a_hold_before_the_stop() -> None:
    result = ended(0)
    assert settle([result], ENDED + 5.0, ENDED + RESULT_HOLD * 1.1, final=True) == \
        Plan(record=(result,))


def test_a_stopped_result_goes_back_once_settled() -> None:
    stopped = ended(0, stopped="SIGTERM")
    assert settle([stopped], ENDED, None, final=False) == Plan(keep=(stopped,))
    assert settle([stopped], ENDED + 1.0, None, final=False) == Plan(put_back=(stopped,))
    assert settle([stopped], ENDED, None, final=True) == Plan(put_back=(stopped,))


def test_leaving_after_a_stop_keeps_the_order_the_results_ended_in() -> None:
    old, recent = ended(0, ENDED - 1.0), ended(1, ENDED)
    stopped = ended(2, ENDED + 0.5, stopped="SIGUSR1")
    decided = settle([old, recent, stopped], ENDED + 1.0, ENDED + RESULT_HOLD / 2, final=True)
    assert decided == Plan(record=(old,), put_back=(recent, stopped))


def test_a_result_claimed_under_a_lease_since_taken_over_is_discarded_at_once() -> None:
    """The task ran while its lease was taken over (and put back by the taker): recording
    it under the worker's new lease would record it twice."""
    mine = ended(1, at=ENDED - 1.0)
    orphan = ended(2, lease="node.1-ab.w0.11.1")
    young_orphan = ended(3, at=ENDED + 1.0, lease="node.1-ab.w0.11.1")
    stopped_orphan = ended(4, stopped="SIGTERM", lease="node.1-ab.w0.11.1")
    decided = plan([mine, orphan, young_orphan, stopped_orphan], ENDED, None, final=False,
                   lease=LEASE)
    assert decided == Plan(record=(mine,), discard=(orphan, young_orphan, stopped_orphan))
    assert plan([orphan], ENDED, ENDED, final=True, lease=LEASE) == Plan(discard=(orphan,))


def test_memory_words_in_the_job_log_and_the_timeline() -> None:
    killed = Result(Task(0, "x"), "x", -9, 0.0, 1.0, ENDED, memory=OUT_OF_MEMORY)
    assert outcome_word(Outcome.FAILED, killed) == OUT_OF_MEMORY
    assert outcome_word(Outcome.RETRY, killed) == "retry"
    assert outcome_word(Outcome.FAILED, replace(killed, memory=None)) == "failed"
    assert ended(0, stopped="SIGTERM").put_back_as == "stopped"
    assert ended(0, stopped=OOM).put_back_as == OOM
    assert ended(0, stopped=EVICTED).put_back_as == EVICTED
    # put back for memory is a stop of its own: back into toprocess with the worker's queue
    assert settle([ended(0, stopped=OOM)], ENDED, None, final=True).put_back == (
        ended(0, stopped=OOM),)
