"""TemplateTaskList in-process: placeholders, shell quoting, literal braces, errors."""

from __future__ import annotations

import pytest

from taskfarmer.errors import ConfigError
from taskfarmer.tasks import Task, TemplateTaskList


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
