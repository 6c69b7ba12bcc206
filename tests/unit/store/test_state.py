"""StateStore's *locked* methods refuse to run outside ``store.locked()``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from taskfarmer.store import StateStore, make_lock

CALLS: dict[str, Callable[[StateStore], object]] = {
    "cursor": lambda store: store.cursor(),
    "pending": lambda store: store.pending(),
    "pending_count": lambda store: store.pending_count(5),
    "any_leases": lambda store: store.any_leases(),
    "requeue": lambda store: store.requeue([]),
    "requeue_failed": lambda store: store.requeue_failed(),
    "attempt_count": lambda store: store.attempt_count(0),
    "running_tasks": lambda store: store.running_tasks("x"),
    "revoke": lambda store: store.revoke("x"),
    "needs_adoption": lambda store: store.needs_adoption(),
    "initialize": lambda store: store.initialize(["a"]),
    "repair": lambda store: store.repair(),
    "tidy": lambda store: store.tidy(),
}


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path, make_lock(tmp_path, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(["a", "b"])
    return store


@pytest.mark.parametrize("method", sorted(CALLS))
def test_a_locked_method_outside_the_lock_raises(store: StateStore, method: str) -> None:
    with pytest.raises(AssertionError, match=rf"StateStore\.{method} needs store\.locked\(\)"):
        CALLS[method](store)
    with store.locked():
        CALLS[method](store)  # and runs inside it


def test_methods_without_the_lock_need_none(store: StateStore) -> None:
    assert store.peek_cursor() == 0
    assert store.lease_names() == [] and store.lease_infos() == []
    assert store.initialized()
