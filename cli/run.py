"""``onceonly run``: the daily sharing flow, once, with its summary.

Example::

    onceonly run                      # every registered connector
    onceonly run -c gongan-household  # only these
    onceonly watch                    # freshness, key age and the audit, once (flows/watch.py)
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.console import console
from cli.console import table as _table
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


def run_flow(connectors: list[str] | None, settings: Any = None) -> bool:
    """Run the daily flow in this process and print its summary; True when every connector landed.

    Connector names are checked before anything slow starts. Without ``PREFECT_API_URL`` the
    flow runs against a temporary Prefect server that dies with this process.
    """
    from catalog import Catalog
    from connectors.registry import register_directory, registered
    from flows.server import temporary_server
    from onceonly.errors import ConfigurationError
    from onceonly.settings import Settings

    settings = settings or Settings()
    catalog = Catalog.connect(settings.catalog_url)
    try:
        register_directory(catalog, settings.registrations_dir)
        known = registered(catalog)
    finally:
        catalog.dispose()
    unknown = [name for name in connectors or [] if name not in known]
    if unknown:
        raise ConfigurationError(
            f"no connector named {', '.join(map(repr, unknown))} is registered "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
    built: list[Any] = []

    def build_flow() -> None:  # while the temporary server starts: the flow's imports take ~2 s
        from flows.daily_sharing import daily_sharing
        from flows.runners import task_runner_for

        built.append(daily_sharing.with_options(task_runner=task_runner_for(settings)))

    with temporary_server(while_starting=build_flow):
        state = built[0](connectors=connectors, settings=settings, return_state=True)
    from flows.daily_sharing import summary_of

    summary = summary_of(state, settings)
    if summary is None:
        outcome = state.result(raise_on_failure=False)
        typer.secho(
            f"the run {state.state_details.flow_run_id} stopped before it could summarise: "
            f"{scrub_text(str(outcome))}",
            fg="red",
            err=True,
        )
        return False
    _print_summary(summary)
    return summary.ok


@app.command("watch")
def watch(
    audit: Annotated[bool, typer.Option(help="Also run the audit (log, catalog, lake, extracts).")] = True,
) -> None:
    """Check each dataset's freshness against its SLA, the signing keys' age, and the audit, once."""
    from flows.server import temporary_server
    from flows.watch import watch as watch_flow
    from onceonly.settings import Settings

    settings = Settings()
    with temporary_server():
        state = watch_flow(settings=settings, audit=audit, return_state=True)
    ok = state.is_completed()
    typer.secho(scrub_text(state.message or state.name or ""), fg=None if ok else "red", err=not ok)
    raise typer.Exit(0 if ok else 1)


def _print_summary(s: Any) -> None:
    from rich.markup import escape

    out = console()
    numbers = frozenset({"pulled", "accepted", "quarantined", "certificates", "seconds"})
    table = _table(
        "dataset",
        "connector",
        "pulled",
        "accepted",
        "quarantined",
        "certificates",
        "seconds",
        "status",
        title=f"OnceOnly daily sharing — run {s.run_id}",
        right=numbers,
    )
    for c in s.connectors:
        status = "ok" if c.status == "ok" else f"[red]{c.status}[/red]"
        table.add_row(
            c.dataset,
            c.connector,
            f"{c.pulled:,}",
            f"{c.accepted:,}",
            f"{c.quarantined:,}",
            f"{c.certificates:,}",
            f"{c.seconds:.1f}",
            status,
        )
    out.print(table)
    for dead in s.crashed_runs:
        out.print(f"Run {dead} had died without finishing: marked crashed, its connectors taken over.")
    if s.recovered.get("published") or s.recovered.get("discarded"):
        out.print(
            f"Recovered what dead runs left: {s.recovered.get('published', 0)} committed batch(es) published "
            f"to the lake, {s.recovered.get('discarded', 0)} uncommitted discarded."
        )
    for c in s.connectors:
        if c.changes:  # snapshot change detection (connectors.snapshot)
            counts = ", ".join(f"{n} {kind}" for kind, n in c.changes.items())
            out.print(f"{c.connector}: snapshot changes: {counts}", highlight=False)
        if c.cancelled:
            out.print(
                f"{c.connector}: {c.cancelled} certificate(s) 注销 (source records deleted)", highlight=False
            )
    for c in s.failed:
        out.print(f"[red]{escape(c.connector)} {c.status}: {escape(c.error or '')}[/red]", highlight=False)
    if s.pulled == 0 and not s.failed:
        out.print("Nothing new since the last run: 0 rows pulled, 0 certificates issued.")
    if s.expired:
        out.print(f"Expired (失效) this run: {s.expired} certificate(s) past their validity.")
    out.print(f"Transparency log: {s.tree_size} entries. Verifier key: {s.vkey}", highlight=False)
    out.print(f"Township extracts written this run: {s.extracts}")
    time_line = s.time_line()
    if time_line:
        out.print(time_line, highlight=False)
    out.print("Where everything lies:")
    for label, value in (
        ("home", s.home),
        ("catalog", s.catalog),
        ("lake", s.lake),
        ("extracts", s.extracts_dir),
    ):
        out.print(f"  {label:<9} {value}", highlight=False)
    out.print(f"Prefect flow run: {s.run_id} (the catalog's runs.run_id)", highlight=False)


__all__ = ["app", "run_flow"]
