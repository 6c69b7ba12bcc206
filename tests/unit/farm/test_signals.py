"""Stop signals: the first one recorded, SIGHUP among them, exit codes that mean one."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

from helpers.threads import blocked_in

from taskfarmer.farm.signals import (
    HANDLED_SIGNALS,
    StopRequest,
    died_of_stop_signal,
    start_thread,
)


def test_stop_request_handler_records_the_first_signal_and_calls_back() -> None:
    calls = []
    stop = StopRequest()
    stop.on_stop(lambda: calls.append(1))
    assert not stop.requested
    stop.handle(signal.SIGUSR1)
    stop.handle(signal.SIGTERM)
    assert stop.requested and stop.describe() == "SIGUSR1" and calls == [1, 1]


def test_a_signal_arriving_as_the_first_handler_starts_does_not_replace_it() -> None:
    """Python runs a second handler at the first bytecode of the first one (its eval breaker
    is checked on entry): the SIGTERM handler then runs before the SIGUSR1 handler recorded
    anything. A trace hook runs the nested call exactly there."""
    stop = StopRequest()

    def nest(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is StopRequest.handle.__code__ \
                and frame.f_locals["signum"] == signal.SIGUSR1:
            sys.setprofile(None)
            stop.handle(signal.SIGTERM, frame)

    sys.setprofile(nest)
    try:
        stop.handle(signal.SIGUSR1)
    finally:
        sys.setprofile(None)
    assert stop.describe() == "SIGUSR1"


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


def test_a_helper_thread_leaves_the_handled_signals_to_the_main_thread() -> None:
    """The kernel gives a process's signal to any thread that does not block it."""
    release = threading.Event()
    thread = start_thread(release.wait, "helper")
    try:
        assert set(HANDLED_SIGNALS) <= blocked_in(thread)
        assert not set(HANDLED_SIGNALS) & set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    finally:
        release.set()
        thread.join()
