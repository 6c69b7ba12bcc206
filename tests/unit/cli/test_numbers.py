"""Every numeric option of ``farmer --help`` refuses NaN, infinities, 0 or negative values where
they mean nothing, huge values and words: one line, exit 2, before the workdir is touched (the
checks themselves: taskfarmer/cli/numbers.py; in-process, so the walk costs milliseconds)."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from taskfarmer.cli import main
from taskfarmer.cli.command import cli
from taskfarmer.cli.numbers import MAX_SECONDS, Checked, max_proc, seconds, whole

#: The values every numeric option is tried with.
VALUES = {"nan": "nan", "inf": "inf", "-inf": "-inf", "zero": "0", "negative": "-3",
          "huge": "1" + "0" * 30, "huge float": "1e30", "word": "many", "empty": ""}
#: The values that some option takes (0 retries, a margin of 0 s, task 0).
ACCEPTED = {("--retries", "zero"), ("--stop-margin", "zero"), ("--task-log", "zero")}


def numeric_options() -> list[str]:
    params = cli.get_params(click.Context(cli))
    return sorted(param.opts[0] for param in params
                  if isinstance(param, click.Option) and isinstance(param.type, Checked))


def test_every_numeric_option_is_checked_by_our_types() -> None:
    """A new option with a bare click number type (which takes NaN and inf) fails here."""
    params = cli.get_params(click.Context(cli))
    bare = [param.opts[0] for param in params
            if param.type.name in ("integer", "float", "integer range", "float range")]
    assert bare == []
    assert numeric_options() == ["--cpus-per-task", "--gpus-per-task", "--lease", "--proc",
                                 "--retries", "--stop-margin", "--task-log", "--task-time",
                                 "--task-timeout", "--timeout"]


@pytest.mark.parametrize("option, kind", [(option, kind) for option in numeric_options()
                                           for kind in sorted(VALUES)
                                           if (option, kind) not in ACCEPTED])
def test_a_bad_number_is_one_line_exit_2_and_no_workdir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        option: str, kind: str) -> None:
    monkeypatch.chdir(tmp_path)
    tasks = tmp_path / "t.txt"
    tasks.write_text("true\n")
    with pytest.raises(SystemExit) as done:
        main([str(tasks), option, VALUES[kind]])
    out, err = capsys.readouterr()
    assert done.value.code == 2
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("farmer: error: ") and option in err, err
    assert os.listdir(tmp_path) == ["t.txt"]  # no workdir, nothing else


def test_j_is_proc_and_proc_is_capped_per_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    context = cli.make_context("farmer", ["t", "-j", "3"])
    assert context.params["proc"] == 3
    cap = max_proc(os.cpu_count())
    assert cli.make_context("farmer", ["t", "-j", str(cap)]).params["proc"] == cap
    with pytest.raises(SystemExit) as done:
        main(["t", "-j", str(cap + 1)])
    assert done.value.code == 2
    assert capsys.readouterr().err == (
        f"farmer: error: Invalid value for '--proc' / '-n' / '-j': {cap + 1} is more than "
        f"{cap}, the most workers on a node of {os.cpu_count()} CPU(s) (64 per CPU, at least "
        "256)\n")


@pytest.mark.parametrize("text, least, above, message", [
    ("nan", 0, True, "'nan' is not a finite number of seconds (leave the option out for no "
                     "limit)"),
    ("-inf", 0, False, "'-inf' is not a finite number of seconds"),
    ("0", 0, True, "0 must be more than 0"),
    ("1.5", 2, False, "1.5 must be at least 2"),
    ("1e30", 0, True, f"1e30 is more than {MAX_SECONDS} seconds (365 days), the longest"),
    ("soon", 0, True, "'soon' is not a number of seconds"),
])
def test_seconds_refused(text: str, least: float, above: bool, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        seconds(text, least, above)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("option, hint", [
    ("--timeout", " (leave the option out for no limit)"),
    ("--lease", ""),  # it has a default: leaving it out is no limit only for limits
    ("--stop-margin", ""),
    ("--task-time", " (leave the option out to learn it)"),
])
def test_a_refused_infinity_says_what_leaving_the_option_out_means(
        option: str, hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["t", option, "inf"])
    assert done.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"'inf' is not a finite number of seconds{hint}\n")


def test_seconds_and_whole_numbers_accepted() -> None:
    assert seconds("0", 0) == 0.0
    assert seconds("2", 2) == 2.0
    assert seconds(str(MAX_SECONDS), 0, above=True) == MAX_SECONDS
    assert whole("0", 0) == 0
    assert whole("1000", 0, 1000) == 1000
    with pytest.raises(ValueError, match=r"^1001 is more than 1000, why$"):
        whole("1001", 0, 1000, ", why")
    with pytest.raises(ValueError, match=r"^'2\.5' is not a whole number$"):
        whole("2.5", 0)
    assert max_proc(1) == 256 and max_proc(8) == 512 and max_proc(None) == 256
