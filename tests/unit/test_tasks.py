"""Tasklist handlers in-process: reading a list (line limit, files that are not files), and
TemplateTaskList's placeholders, shell quoting, literal braces, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskfarmer.errors import ConfigError, TasklistError
from taskfarmer.tasks import MAX_LINE, ListTaskList, Task, TaskList, TemplateTaskList, raw_lines


def test_placeholders() -> None:
    handler = TemplateTaskList("reco --input {line} --output out/{stem}.root "
                               "--name {name} --dir {dir} --id {id} {id:04d}")
    assert handler.command(Task(7, "data/run1.root")) == (
        "reco --input data/run1.root --output out/run1.root --name run1.root --dir data "
        "--id 7 0007")
    assert handler.command(Task(0, "run.tar.gz")) == (
        "reco --input run.tar.gz --output out/run.tar.root --name run.tar.gz --dir . "
        "--id 0 0000")


def test_values_are_shell_quoted_by_default() -> None:
    handler = TemplateTaskList("wc -c {line} > out/{stem}.n")
    assert handler.command(Task(1, "my dir/a b.txt")) == "wc -c 'my dir/a b.txt' > out/'a b'.n"
    assert handler.command(Task(1, "x; rm -rf ~")) == "wc -c 'x; rm -rf ~' > out/'x; rm -rf ~'.n"
    raw = TemplateTaskList("tool {line}", quote="False")
    assert raw.command(Task(0, "--in a.root --events 10")) == "tool --in a.root --events 10"


def test_literal_braces() -> None:
    handler = TemplateTaskList("awk '{{print $1}}' {line} > ${{HOME}}/x")
    assert handler.command(Task(0, "f")) == "awk '{print $1}' f > ${HOME}/x"


@pytest.mark.parametrize("template, message", [
    ("reco {input}", "unknown placeholder {input} (known: {line}, {name}, {stem}, {dir}, {id}"),
    ("echo ${HOME} {line}", "unknown placeholder {HOME}"),
    ("echo {}", "unknown placeholder {}"),
    ("echo {line.upper}", "unknown placeholder {line.upper}"),
    ("awk '{print}' {line}", "unknown placeholder {print}"),
    ("echo {line", "expected '}' before end of string (write {{ and }} for literal braces)"),
    ("echo line}", "Single '}' encountered"),
    ("echo {id:q}", "Unknown format code 'q'"),
])
def test_template_errors(template: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TemplateTaskList(template)
    assert message in caught.value.reason


# -- reading a tasklist -------------------------------------------------------------------------

def test_the_last_line_is_a_task_without_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"echo a\n# note\necho b")
    assert list(ListTaskList().lines(path)) == ["echo a", "echo b"]


def test_a_line_over_the_limit_is_refused_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"echo a\n" + b"x" * MAX_LINE + b"\necho " + b"y" * MAX_LINE + b"\n")
    with pytest.raises(TasklistError) as caught:
        list(ListTaskList().lines(path))
    assert (caught.value.path, caught.value.line) == (path, 3)
    assert str(caught.value) == (f"{path}:3: line is longer than 1048576 bytes (1 MiB), the "
                                 "limit of a tasklist line")


def test_reading_a_file_of_one_endless_line_takes_bounded_memory() -> None:
    # /dev/zero is refused as not a file; a regular file's endless line is what raw_lines
    # bounds: every piece it yields is at most MAX_LINE + 2 bytes.
    with open("/dev/zero", "rb") as zero:
        first = next(raw_lines(zero))
    assert len(first) == MAX_LINE + 2
    with pytest.raises(TasklistError, match=":1: line is longer"):
        list(TaskList.parse(Path("z"), [first]))


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_tasklist_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path,
                                                                  kind: str) -> None:
    path = tmp_path / "list"
    if kind == "fifo":
        os.mkfifo(path)  # no writer: a blocking open would wait for ever
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(TasklistError) as caught:
        ListTaskList().lines(path)
    expected = {"fifo": "is a FIFO (named pipe), not a regular file",
                "device": "is a character device, not a regular file",
                "directory": "is a directory, not a tasklist"}[kind]
    assert caught.value.reason.startswith(expected)
