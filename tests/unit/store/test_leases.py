"""Lease names, farmer names and the heartbeat period: one home for each convention."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfarmer.hpc.identity import Identity
from taskfarmer.store import (
    DEFAULT_LEASE,
    LeaseName,
    StateStore,
    farmer_name,
    farmer_pid,
    heartbeat_period,
    live_name,
    make_lock,
    worker_name,
)


@pytest.mark.parametrize("farmer", ["n1.12-ab", "nid001.cluster.7-cd", "node.1-00"])
def test_lease_names_round_trip_even_when_the_farmer_name_has_dots(farmer: str) -> None:
    name = LeaseName(farmer, 3, 456, 2)
    assert str(name) == f"{farmer}.w3.456.2"
    assert LeaseName.parse(str(name)) == name
    dead = LeaseName(farmer, 3, 456, 2, dead=True)
    assert str(dead) == f"{farmer}.w3.456.2.dead"
    assert LeaseName.parse(str(dead)) == dead
    assert live_name(str(dead)) == str(name)


@pytest.mark.parametrize("junk", ["", "x", "n1.12-ab.w3.456", "n1.12-ab.wx.1.2", ".w1.2.3",
                                  "n1.12-ab.w3.456.2.tmp"])
def test_names_not_in_the_format_do_not_parse(junk: str) -> None:
    assert LeaseName.parse(junk) is None


def test_owned_by_matches_the_farmer_and_optionally_its_worker() -> None:
    name = LeaseName("n1.12-ab", 3, 456, 2)
    assert name.owned_by("n1.12-ab")
    assert not name.owned_by("n1.12-a") and not name.owned_by("n1.12-abc")
    assert name.owned_by("n1.12-ab", slot=3, pid=456)
    assert not name.owned_by("n1.12-ab", slot=4) and not name.owned_by("n1.12-ab", pid=457)
    assert worker_name("n1.12-ab", 3) == "n1.12-ab.w3"


def test_farmer_names_are_safe_path_components_and_carry_the_pid() -> None:
    assert farmer_name("n1", 12, "ab") == "n1.12-ab"
    assert farmer_name("rack 3/node", 7, "cd") == "rack_3_node.7-cd"
    assert farmer_name("", 7, "cd") == "node.7-cd"
    assert farmer_pid(farmer_name("a.b", 4321, "ef")) == 4321
    assert farmer_pid("not-a-farmer") is None


def test_heartbeat_period_is_a_quarter_lease_at_most_30_seconds() -> None:
    assert DEFAULT_LEASE == 300.0
    assert heartbeat_period(DEFAULT_LEASE) == 30.0
    assert heartbeat_period(40.0) == 10.0


def test_abandon_renames_only_the_live_leases_of_one_farmer(tmp_path: Path) -> None:
    store = StateStore(tmp_path, make_lock(tmp_path, "flock", {}))
    store.prepare()
    ours, dead_ours, other = (LeaseName("n1.1-aa", 0, 10, 1), LeaseName("n1.1-aa", 1, 11, 1),
                              LeaseName("n1.1-aab", 0, 12, 1))
    with store.locked():
        for name in (ours, dead_ours, other):
            store.register(str(name), Identity.current())
    (store.leases / str(dead_ours)).rename(store.leases / f"{dead_ours}.dead")
    (store.leases / "junk").write_text("")
    assert store.abandon("n1.1-aa") == [str(ours)]
    assert sorted(store.lease_names()) == sorted(
        [f"{ours}.dead", f"{dead_ours}.dead", str(other), "junk"])
