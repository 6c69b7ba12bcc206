"""The farmer loop's idle back-off while other farmers hold the remaining tasks."""

from __future__ import annotations

from taskfarmer.farm.farmer import IDLE_POLL_FIRST, POLL, idle_backoff


def test_waiting_for_other_farmers_backs_off_from_a_short_poll_to_the_long_one() -> None:
    sleeps, idle = [], IDLE_POLL_FIRST
    for _ in range(8):
        poll, idle = idle_backoff(idle, waiting=True)
        sleeps.append(poll)
    assert sleeps[0] == IDLE_POLL_FIRST and sleeps[-1] == POLL
    assert all(b == min(2 * a, POLL) for a, b in zip(sleeps, sleeps[1:]))
    assert idle_backoff(idle, waiting=False) == (POLL, IDLE_POLL_FIRST)  # working: start over
