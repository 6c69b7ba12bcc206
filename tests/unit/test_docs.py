"""The docs match the code: every option of ``farmer`` is in docs/cli.md, and every relative
link and ``#anchor`` of the Markdown docs resolves."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from taskfarmer.cli.command import cli

ROOT = Path(__file__).resolve().parents[2]
CLI_REFERENCE = ROOT / "docs" / "cli.md"
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                    ROOT / "tests" / "README.md", ROOT / "benchmarks" / "README.md"])

_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
#: ``[text](target)`` and ``![alt](target)``, with an optional ``"title"``.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def long_options(command: click.Command) -> list[str]:
    """Every ``--name`` of ``command``, ``--help`` included."""
    params = command.get_params(click.Context(command))
    return sorted({name for param in params for name in (*param.opts, *param.secondary_opts)
                   if name.startswith("--")})


def mentions(text: str, option: str) -> bool:
    """Whether ``option`` appears in ``text`` as a whole word (``--task-time`` is not found
    in ``--task-timeout``)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown document outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but ``-`` and ``_`` removed,
    spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """The anchors of ``document``'s headings; a repeated heading gets ``-1``, ``-2`` ... as
    on GitHub."""
    found: set[str] = set()
    repeats: dict[str, int] = {}
    for line in prose_lines(document.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = repeats.get(base, 0)
            repeats[base] = count + 1
            found.add(f"{base}-{count}" if count else base)
    return found


def links(document: Path) -> list[str]:
    """The targets of the links in ``document``'s prose (not in code)."""
    return [target for line in prose_lines(document.read_text(encoding="utf-8"))
            for target in _LINK.findall(_INLINE_CODE.sub("", line))]


def broken_links(document: Path) -> list[str]:
    """The relative links of ``document`` whose file or heading does not exist, each with
    the reason."""
    problems = []
    for target in links(document):
        if _EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.exists():
            problems.append(f"{target}: no such file {resolved}")
        elif anchor and resolved.suffix != ".md":
            problems.append(f"{target}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading '#{anchor}' in {resolved.name}")
    return problems


def test_every_long_option_is_in_the_cli_reference() -> None:
    options = long_options(cli)
    assert "--proc" in options and "--help" in options  # the command was read
    text = CLI_REFERENCE.read_text(encoding="utf-8")
    assert [option for option in options if not mentions(text, option)] == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(document: Path) -> None:
    assert links(document), f"{document} has no links: is the pattern still right?"
    assert broken_links(document) == []


def test_the_link_check_sees_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Time limits without `--signal`\n## Notes\n## Notes\n")
    document = tmp_path / "doc.md"
    document.write_text(
        "# Top\n[ok](other.md#time-limits-without---signal) [ok](other.md#notes-1) [ok](#top)\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [self](#nowhere)\n"
        "`[in code](missing-too.md)`\n```\n[in a block](missing-too.md)\n# not a heading\n```\n"
        "[web](https://example.org/x#y)\n")
    assert [problem.split(":")[0] for problem in broken_links(document)] == [
        "missing.md", "other.md#nope", "#nowhere"]


def test_an_option_inside_a_longer_one_does_not_count() -> None:
    assert mentions("`--task-time SECONDS`", "--task-time")
    assert not mentions("`--task-timeout SECONDS`", "--task-time")
