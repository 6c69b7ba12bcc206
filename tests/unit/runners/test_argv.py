"""Runner command lines: a shell task's argv."""

from __future__ import annotations

from taskfarmer.runners.basic import shell_argv


def test_shell_argv() -> None:
    assert shell_argv("echo 'a b' | wc") == ["/bin/sh", "-c", "echo 'a b' | wc"]
