"""One console for every command: tables with a header row, plain lines when piped.

Example::

    from cli.console import console, table
    t = table("name", "type", "rows", title="Connectors")
    t.add_row("gongan-household", "sql", "5000")
    console().print(t)

rich is imported on first use, not when the command line starts.
"""

from __future__ import annotations

from typing import Any


def console() -> Any:
    """A rich Console; piped output (``make demo | tee``, CI logs) is 160 columns wide, not 80."""
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=160)


def table(*columns: str, title: str | None = None, right: frozenset[str] = frozenset()) -> Any:
    """A rich Table with a header row; ``right`` names the columns aligned right (numbers)."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left")
    return t


__all__ = ["console", "table"]
