"""Stop signals: the first one recorded, SIGHUP among them, exit codes that mean one."""

from __future__ import annotations

import signal

from taskfarmer.farm.signals import StopRequest, died_of_stop_signal


def test_stop_request_handler_records_the_first_signal_and_calls_back() -> None:
    calls = []
    stop = StopRequest()
    stop.on_stop(lambda: calls.append(1))
    assert not stop.requested
    stop.handle(signal.SIGUSR1)
    stop.handle(signal.SIGTERM)
    assert stop.requested and stop.describe() == "SIGUSR1" and calls == [1, 1]


def test_sighup_is_a_stop_signal_whose_handler_stops_the_farm() -> None:
    """A closed terminal (SIGHUP) stops like SIGTERM: the installed handler records it."""
    stop = StopRequest()
    previous = signal.getsignal(signal.SIGHUP)
    try:
        stop.install()
        handler = signal.getsignal(signal.SIGHUP)
        assert callable(handler)
        handler(signal.SIGHUP, None)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert stop.requested and stop.describe() == "SIGHUP"
    assert died_of_stop_signal(128 + signal.SIGHUP)


def test_died_of_stop_signal() -> None:
    assert died_of_stop_signal(-signal.SIGUSR1)
    assert died_of_stop_signal(128 + signal.SIGTERM)
    assert not died_of_stop_signal(1) and not died_of_stop_signal(-signal.SIGKILL)
