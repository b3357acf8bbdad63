"""``onceonly run``: the daily sharing flow, once, with its summary.

Example::

    onceonly run                      # every registered connector
    onceonly run -c gongan-household  # only these
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.console import console
from onceonly.privacy import scrub_text

app = typer.Typer()


@app.command("run")
def run(
    connector: Annotated[
        list[str] | None, typer.Option("--connector", "-c", help="Only these connectors.")
    ] = None,
) -> None:
    """Run the daily sharing flow once (on the Prefect server in PREFECT_API_URL, or ephemeral)."""
    raise typer.Exit(0 if run_flow(connector) else 1)


def run_flow(connectors: list[str] | None) -> bool:
    from flows.daily_sharing import RunSummary, daily_sharing

    state = daily_sharing(connectors=connectors, return_state=True)
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, RunSummary):
        typer.secho(
            f"the flow failed before it could summarise: {scrub_text(str(summary))}", fg="red", err=True
        )
        return False
    _print_summary(summary)
    return not summary.failed


def _print_summary(s: Any) -> None:
    from rich.table import Table

    out = console()
    table = Table(title=f"OnceOnly daily sharing — run {s.run_id}", title_justify="left")
    for name in ("dataset", "connector", "pulled", "accepted", "quarantined", "certificates", "status"):
        table.add_column(
            name, justify="right" if name in {"pulled", "accepted", "quarantined", "certificates"} else "left"
        )
    for c in s.connectors:
        status = "ok" if c.status == "ok" else f"[red]{c.status}[/red]"
        table.add_row(
            c.dataset,
            c.connector,
            str(c.pulled),
            str(c.accepted),
            str(c.quarantined),
            str(c.certificates),
            status,
        )
    out.print(table)
    for c in s.connectors:
        if c.changes:  # snapshot change detection (connectors.snapshot)
            counts = ", ".join(f"{n} {kind}" for kind, n in c.changes.items())
            out.print(f"{c.connector}: snapshot changes: {counts}", highlight=False)
    for c in s.failed:
        out.print(f"[red]{c.connector}: {c.error}[/red]", markup=True, highlight=False)
    if s.pulled == 0 and not s.failed:
        out.print("Nothing new since the last run: 0 rows pulled, 0 certificates issued, 0 extracts written.")
    out.print(f"Transparency log: {s.tree_size} entries. Verifier key: {s.vkey}", highlight=False)
    out.print(f"Township extracts written this run: {len(s.extracts)}")
    out.print("Where everything lies:")
    for label, value in (
        ("home", s.home),
        ("catalog", s.catalog),
        ("lake", s.lake),
        ("extracts", s.extracts_dir),
    ):
        out.print(f"  {label:<9} {value}", highlight=False)


__all__ = ["app", "run_flow"]
