"""Which task a worker's death is charged to: none the first time a task's worker dies, the
task itself from the second time on."""

from __future__ import annotations

from taskfarmer.farm.deaths import Strikes


def test_a_task_is_charged_from_its_second_worker_death_on() -> None:
    strikes = Strikes()
    assert strikes.blame(5) is None  # the death may have had another cause
    assert strikes.blame(6) is None
    assert strikes.blame(5) == 5
    assert strikes.blame(5) == 5  # each later death costs another attempt (--retries)
    assert strikes.blame(6) == 6


def test_a_death_while_no_task_ran_is_charged_to_none() -> None:
    strikes = Strikes()
    assert strikes.blame(None) is None and strikes.blame(None) is None
    assert strikes.struck == set()
