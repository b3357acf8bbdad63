"""``onceonly reminders``: 证照到期提醒, run once or listed.

Example::

    onceonly reminders run             # today (Asia/Shanghai), the windows of sharing/reminders.yaml
    onceonly reminders run --date 2026-12-03 --days 90
    onceonly reminders list --township 120114001000
    onceonly reminders list --status 已换证

``run`` runs the ``expiry-reminders`` flow (flows/reminders.py) in this process, on the Prefect
server in PREFECT_API_URL or a temporary one. ``list`` reads the catalog only; holders are
shown masked as in the township lists.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, help="证照到期提醒: certificates about to expire, reminded once.")


def _parse_day(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"an ISO date such as 2026-12-03, got {value[:40]!r}") from None


@app.command("run")
def run_command(
    date: Annotated[
        str | None,
        typer.Option(
            "--date", metavar="YYYY-MM-DD", help="The day to remind for (default: today, Asia/Shanghai)."
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=0,
            max=3660,
            help="Remind every type this many days before valid_to (instead of the file's windows).",
        ),
    ] = None,
) -> None:
    """Send the reminders due (each once), close renewed ones, write the lists and the outbox."""
    day = _parse_day(date)
    raise typer.Exit(0 if run_reminders(day=day, days=days) else 1)


def run_reminders(settings: Any = None, *, day: dt.date | None = None, days: int | None = None) -> bool:
    """Run the expiry-reminders flow once in this process (a temporary Prefect server unless
    PREFECT_API_URL names one) and print its summary; True when it completed. ``onceonly demo``
    calls it after the daily run."""
    from flows.reminders import expiry_reminders
    from flows.server import temporary_server
    from onceonly.privacy import scrub_text
    from onceonly.settings import Settings
    from sharing.reminders import reminders_dir

    settings = settings or Settings()
    with temporary_server():
        state = expiry_reminders(
            settings=settings, day=day.isoformat() if day else None, days=days, return_state=True
        )
    ok = bool(state.is_completed())
    typer.secho(scrub_text(state.message or state.name or ""), fg=None if ok else "red", err=not ok)
    if ok:
        typer.echo(f"证照到期提醒: lists and outbox under {reminders_dir(settings.home)}")
    return ok


@app.command("list")
def list_command(
    township: Annotated[
        str | None, typer.Option("--township", metavar="CODE", help="Only this township (12-digit code).")
    ] = None,
    status: Annotated[
        str, typer.Option("--status", help="待换证 (open, the default), 已换证, 已到期, 已失效, or all.")
    ] = "待换证",
    date: Annotated[
        str | None,
        typer.Option("--date", metavar="YYYY-MM-DD", help="Days left counted from this day (default today)."),
    ] = None,
) -> None:
    """The reminders sent, masked: township, type, certificate, holder, valid_to, state."""
    from catalog import Catalog
    from onceonly.errors import ConfigurationError
    from onceonly.settings import Settings
    from sharing.reminders import STATUSES, listed_reminders, load_policy

    statuses = STATUSES if status == "all" else (status,)
    if status != "all" and status not in STATUSES:
        raise ConfigurationError(f"unknown status {status!r}; known: {', '.join(STATUSES)}, all")
    day = _parse_day(date)
    if day is None:
        from zoneinfo import ZoneInfo

        day = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    settings = Settings()
    policy = load_policy(settings.reminders_file, settings.contracts_dir)
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            rows = [
                r
                for r in listed_reminders(conn, policy, day, township=township, statuses=statuses)
                if r.status in statuses
            ]
    finally:
        catalog.dispose()
    if not rows:
        typer.echo("no reminder" + (f" in township {township}" if township else "") + f" ({status})")
        return
    for r in rows:
        typer.echo(
            f"{r.township or '-'}  {r.type_name}  {r.cert_id}  {r.holder_shown}  {r.id_shown}  "
            f"有效期至 {r.valid_to.isoformat()}（{r.days_left} 天）  窗口 {r.window_days} 天  "
            f"提醒于 {r.sent_on.isoformat()}  {r.status}" + (f"  换证 {r.closed_by}" if r.closed_by else "")
        )
    typer.echo(f"{len(rows)} reminder(s)")


__all__ = ["app", "run_reminders"]
