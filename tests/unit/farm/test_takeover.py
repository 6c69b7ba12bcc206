"""When a lease may be taken over: by the process on our own machine, by a silence measured
on our own clock elsewhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Callable

import pytest

from taskfarmer.farm.takeover import Silence, expired
from taskfarmer.hpc.identity import Identity, is_stopped, process_start_time
from taskfarmer.store import LeaseInfo

ELSEWHERE = Identity("h2", "n2", 12345, "boot-b", "pidns-b", "1")


def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def info(owner: Identity, token: tuple[int, int, int] = (1, 1, 1), dead: bool = False,
         name: str = "f.w0.1.1") -> LeaseInfo:
    return LeaseInfo(name, heartbeat=0.0, owner=owner, dead=dead, token=token)


@pytest.fixture
def sleeper() -> Iterator[Identity]:
    """A live process of this machine, as a lease names its owner."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = Identity.current(environ={})
        yield Identity(me.host, me.node, child.pid, me.boot, me.pidns,
                       process_start_time(child.pid) or "")
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
        child.wait()


def test_a_silence_is_measured_from_when_we_first_saw_the_heartbeat() -> None:
    silence = Silence()
    assert silence.observe([info(ELSEWHERE)], now=100.0) == {"f.w0.1.1": 0.0}
    assert silence.observe([info(ELSEWHERE)], now=104.0) == {"f.w0.1.1": 4.0}
    # A heartbeat changes the token: silent again from now, whatever the clocks say.
    assert silence.observe([info(ELSEWHERE, token=(1, 2, 2))], now=105.0) == {"f.w0.1.1": 0.0}
    assert silence.observe([info(ELSEWHERE, token=(1, 2, 2))], now=108.5) == {"f.w0.1.1": 3.5}
    # A lease gone and back (a new file of the same name) starts over.
    assert silence.observe([], now=109.0) == {}
    assert silence.observe([info(ELSEWHERE, token=(1, 2, 2))], now=110.0) == {"f.w0.1.1": 0.0}


def test_elsewhere_a_lease_expires_after_a_silence_longer_than_the_lease() -> None:
    observer = Identity.current(environ={})
    assert not expired(info(ELSEWHERE), silent=3.0, lease=3.0, observer=observer)
    assert expired(info(ELSEWHERE), silent=3.1, lease=3.0, observer=observer)
    assert expired(info(ELSEWHERE, dead=True), silent=0.0, lease=3.0, observer=observer)


def test_on_our_machine_a_live_owner_is_never_taken_over(sleeper: Identity) -> None:
    observer = Identity.current(environ={})
    assert sleeper.same_machine(observer)
    assert not expired(info(sleeper), silent=1e9, lease=3.0, observer=observer)


def test_on_our_machine_a_stopped_owner_is_taken_over_once_silent(sleeper: Identity) -> None:
    observer = Identity.current(environ={})
    os.kill(sleeper.pid, signal.SIGSTOP)
    until(lambda: is_stopped(sleeper.pid))  # the target stops itself when it next runs
    assert not expired(info(sleeper), silent=2.0, lease=3.0, observer=observer)
    assert expired(info(sleeper), silent=3.5, lease=3.0, observer=observer)
    os.kill(sleeper.pid, signal.SIGCONT)
    until(lambda: not is_stopped(sleeper.pid))
    assert not expired(info(sleeper), silent=3.5, lease=3.0, observer=observer)


def test_on_our_machine_a_dead_owner_is_taken_over_at_once() -> None:
    observer = Identity.current(environ={})
    child = subprocess.Popen(["true"])
    start = process_start_time(child.pid) or "0"
    child.wait()
    gone = Identity(observer.host, observer.node, child.pid, observer.boot, observer.pidns,
                    start)
    assert expired(info(gone), silent=0.0, lease=300.0, observer=observer)
