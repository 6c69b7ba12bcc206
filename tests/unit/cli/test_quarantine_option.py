"""``--quarantine K|off``: parsed with one-line errors."""

from __future__ import annotations

import click
import pytest

from taskfarmer.cli import main
from taskfarmer.cli.command import QuarantineRow


def test_a_number_of_failures_or_off() -> None:
    row = QuarantineRow()
    assert row.convert("5", None, None) == 5
    assert row.convert(" 1 ", None, None) == 1
    assert row.convert("OFF", None, None) is None
    for bad in ("0", "-3", "five", "2.5", ""):
        with pytest.raises(click.BadParameter, match="neither a number of failures"):
            row.convert(bad, None, None)


@pytest.mark.parametrize("value", ["0", "never"])
def test_a_bad_value_is_one_error_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["tasks.txt", "--quarantine", value])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("farmer: error: ")
    assert "--quarantine" in err and repr(value) in err
