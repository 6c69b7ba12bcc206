"""``--list-runners`` / ``--list-tasklists``: the definitions a catalog holds, as a table."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.table import Table

from ..registry import Catalog

_HEADERS = ("NAME", "CLASS", "DEFINED IN", "NOTE")


def print_listing(catalog: Catalog, out: TextIO, terminal: bool) -> None:
    """Print every definition of ``catalog``, where it comes from and what became of it.

    A rich table on a ``terminal``; otherwise aligned plain-text columns, a line each.
    """
    rows = [(e.name, e.class_path, e.origin, e.note) for e in catalog.listing()]
    if terminal:
        table = Table(title=f"{catalog.kind.noun}s".capitalize())
        for header in _HEADERS:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(file=out).print(table)
        return
    widths = [max(len(row[column]) for row in [_HEADERS, *rows]) for column in range(3)]
    for row in [_HEADERS, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        out.write("  ".join([*cells, row[3]]).rstrip() + "\n")
