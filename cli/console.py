"""One console for every command: tables with a header row, plain aligned columns when piped.

Example::

    from cli.console import console, table
    t = table("name", "type", "rows", title="Connectors", right=frozenset({"rows"}))
    t.add_row("gongan-household", "sql", "5000")
    console().print(t)

On a terminal, ``table`` is a rich Table and ``console`` a rich Console. Piped (``| grep``,
``make demo | tee``, CI logs, tests), both are plain: a header row and columns aligned by
display width (a Chinese character is two columns), rich markup such as ``[red]…[/red]``
removed, and rich is not even imported (it costs 35 ms of a command's start). Anything else
rich can print (a rich Table built elsewhere) still goes through rich, 160 columns wide.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any

# rich markup tags ([red], [/red], [bold yellow], [/]); "\[" is an escaped bracket.
_MARKUP = re.compile(r"(?<!\\)\[/?[a-z][a-z #0-9_]*\]|(?<!\\)\[/\]")


def _is_terminal() -> bool:
    return sys.stdout.isatty()


def console() -> Any:
    """A rich Console on a terminal; else a plain console (rich Console(width=160) for rich objects)."""
    if _is_terminal():
        from rich.console import Console

        return Console()
    return PlainConsole()


def table(*columns: str, title: str | None = None, right: frozenset[str] = frozenset()) -> Any:
    """A table with a header row; ``right`` names the columns aligned right (numbers)."""
    if not _is_terminal():
        return PlainTable(columns, title=title, right=right)
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left")
    return t


def plain(text: str) -> str:
    """``text`` without rich markup (escaped brackets unescaped)."""
    return _MARKUP.sub("", text).replace("\\[", "[")


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal (East Asian wide and full-width characters: 2)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


class PlainTable:
    """The plain counterpart of a rich Table: ``add_row`` then print; a header row, aligned columns."""

    def __init__(self, columns: tuple[str, ...], *, title: str | None, right: frozenset[str]) -> None:
        self.columns = columns
        self.title = title
        self.right = right
        self.rows: list[list[str]] = []

    def add_row(self, *cells: Any) -> None:
        self.rows.append([plain("" if c is None else str(c)) for c in cells])

    def render(self) -> str:
        grid = [list(self.columns), *self.rows]
        widths = [max(width(row[i]) if i < len(row) else 0 for row in grid) for i in range(len(self.columns))]
        lines = [self.title] if self.title else []
        for row in grid:
            cells = []
            for i, name in enumerate(self.columns):
                cell = row[i] if i < len(row) else ""
                pad = " " * (widths[i] - width(cell))
                cells.append(pad + cell if name in self.right else cell + pad)
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)


class PlainConsole:
    """Prints plain tables and text (markup removed) to stdout; other objects through rich."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if all(isinstance(o, str | PlainTable) for o in objects):
            markup = kwargs.get("markup", True)
            parts = [
                o.render() if isinstance(o, PlainTable) else (plain(o) if markup else o) for o in objects
            ]
            sys.stdout.write(" ".join(parts) + "\n")
            return
        from rich.console import Console

        Console(width=160).print(*objects, **kwargs)


__all__ = ["PlainConsole", "PlainTable", "console", "plain", "table", "width"]
