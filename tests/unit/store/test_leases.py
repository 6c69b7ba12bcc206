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
from taskfarmer.store.filesystem import mount_entry
from taskfarmer.store.leases import (
    MIN_LEASE,
    caching_delay,
    lease_advice,
    lease_warning,
    shortest_lease,
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


# -- the shortest --lease a filesystem allows (pure rule) ------------------------------------

def test_a_local_filesystem_allows_the_shortest_lease() -> None:
    assert shortest_lease(False, "ext4", {}) == MIN_LEASE
    assert lease_advice(MIN_LEASE, False, "ext4", {}) is None


def test_nfs_with_close_to_open_needs_a_period_and_the_lateness_of_a_shared_filesystem() -> None:
    """lease/4 + 5 s < lease: 6.7 s."""
    assert shortest_lease(True, "nfs4", {"rw": "", "vers": "4.2"}) == 6.7
    assert shortest_lease(True, "lustre", {}) == 6.7
    assert lease_advice(7, True, "nfs4", {}) is None
    warning = lease_advice(5, True, "nfs4", {})
    assert warning is not None and "--lease 5 is shorter than 6.7 s" in warning
    assert "every 1.25 s" in warning and "nfs4 mount" in warning and "\n" not in warning


def test_nocto_adds_the_attribute_cache_to_what_a_lease_must_cover() -> None:
    assert caching_delay("nfs", {"nocto": ""}) == 60.0  # acregmax's default
    assert caching_delay("nfs4", {"nocto": "", "acregmax": "30"}) == 30.0
    assert caching_delay("nfs4", {"nocto": "", "actimeo": "10"}) == 10.0
    assert caching_delay("nfs4", {"nocto": "", "noac": ""}) == 0.0
    assert caching_delay("nfs4", {"acregmax": "30"}) == 0.0  # an open revalidates
    assert caching_delay("lustre", {"nocto": ""}) == 0.0
    assert shortest_lease(True, "nfs", {"nocto": ""}) == 86.7
    warning = lease_advice(60, True, "nfs", {"nocto": ""})
    assert warning is not None and "nfs mount (nocto)" in warning
    assert lease_advice(300, True, "nfs", {"nocto": ""}) is None


def test_no_warning_for_a_short_lease_on_this_machine_s_local_disk(tmp_path: Path) -> None:
    assert lease_warning(MIN_LEASE, tmp_path) is None


def test_mount_options_come_with_the_type() -> None:
    mountinfo = ("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
                 "40 22 0:50 / /mnt/nfs rw,relatime - nfs 10.0.0.1:/x "
                 "rw,vers=3,nocto,acregmax=30,addr=10.0.0.1\n")
    fstype, options = mount_entry(Path("/mnt/nfs/wd"), mountinfo)
    assert fstype == "nfs" and options["acregmax"] == "30" and "nocto" in options
    assert "relatime" in options
    assert mount_entry(Path("/home"), mountinfo)[0] == "ext4"
    assert mount_entry(Path("/x"), "") == (None, {})
