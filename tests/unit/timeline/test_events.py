"""Timeline events: the farmer's track pid and process titles."""

from __future__ import annotations

from taskfarmer.timeline.events import choose_pid, process_title


def test_track_pids_are_the_farmers_own_unless_taken() -> None:
    assert choose_pid(4242, [], 16, "n1.4242-ab") == 4242
    taken = choose_pid(4242, [4242], 16, "n2.4242-cd")
    assert taken not in (4242, 1) and taken > 16
    assert choose_pid(4242, [4242, taken], 16, "n2.4242-cd") == taken + 1
    assert choose_pid(1, [], 16, "c.1-ef") > 16  # PID 1 in a container: tid 1 would clash
    assert choose_pid(8, [], 16, "c.8-ef") > 16
    assert process_title("n1", {}, True) == "n1 · farmer pid"
    labels = {"job": "12", "step": "0", "array_job": "10", "array_task": "2", "restart": "1"}
    assert process_title("n1", labels, False) == (
        "n1 · job 12.0 · array 10_2 · restart 1 · farmer track")
