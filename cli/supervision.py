"""``onceonly supervision …``: 审批与监管联动 — approvals pushed to the supervising department.

Example::

    onceonly supervision serve-demo          # the demo 市场监督管理局 endpoint, until Ctrl-C
    onceonly supervision run                 # push, pull receipts, announce the overdue (the flow)
    onceonly supervision status              # where each landed approval stands
    onceonly supervision status --json

``run`` needs the supervisor's token in the secret named by ``ONCEONLY_SUPERVISION_TOKEN_SECRET``
(default ``ONCEONLY_SECRET_SUPERVISION_TOKEN``: an environment variable or a Prefect Secret
block). ``serve-demo`` uses that variable's value too, or else the demo's own token (printed).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from onceonly.settings import Settings

app = typer.Typer(
    no_args_is_help=True, help="审批与监管联动: approvals pushed to their supervising department."
)

DEMO_SEED = 20261121


@app.command("run")
def run() -> None:
    """Run the supervision flow once: push new approvals, pull receipts and feedback, check overdue."""
    from flows.server import temporary_server
    from flows.supervision import supervision
    from onceonly.privacy import scrub_text
    from onceonly.settings import Settings

    settings = Settings()
    with temporary_server():
        state = supervision(settings=settings, return_state=True)
    ok = state.is_completed()
    typer.secho(scrub_text(state.message or state.name or ""), fg=None if ok else "red", err=not ok)
    raise typer.Exit(0 if ok else 1)


@app.command("status")
def status(
    limit: Annotated[int, typer.Option(help="Approvals listed (those waiting first).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Where each landed approval stands: pushed, read (签收), answered (监管结果), overdue."""
    import datetime as dt
    import json

    from catalog import Catalog
    from lake.parquet import ParquetLake
    from onceonly.settings import Settings
    from sharing.supervision import supervision_status

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        found = supervision_status(
            catalog,
            ParquetLake.of(settings),
            dataset=settings.supervision_dataset,
            unread_after=dt.timedelta(hours=settings.supervision_unread_hours),
            feedback_after=dt.timedelta(days=settings.supervision_feedback_days),
        )
    finally:
        catalog.dispose()
    rows = found.table(limit)
    if as_json:
        typer.echo(json.dumps({"summary": found.summary(), "approvals": rows}, ensure_ascii=False, indent=2))
        return
    from cli.console import console, table

    out = console()
    shown = table(
        "许可决定编号", "经营者", "镇街", "状态", "逾期", "监管案件号", "监管结果", title=found.summary()
    )
    for r in rows:
        shown.add_row(
            r["许可决定编号"], r["经营者"], r["镇街"], r["状态"], r["逾期"], r["监管案件号"], r["监管结果"]
        )
    out.print(shown)


def demo_supervisor(settings: Settings, *, seed: int = DEMO_SEED, **options: Any) -> Any:
    """The demo supervisor of ``settings`` (not started): its address from ``supervision_url``,
    its token the secret's value or the demo's, checking pushes with the district's verifier
    keys, its cases in ``departments/scjg/supervision.db``. ``options``: SupervisorEndpoint's."""
    from urllib.parse import urlparse

    from departments.supervisor import DEFAULT_PORT, SupervisorEndpoint, demo_supervision_token
    from evidence.keys import log_verifiers
    from evidence.note import open_note

    verifiers = log_verifiers(settings)
    url = urlparse(settings.supervision_url)
    token = os.environ.get(settings.supervision_token_secret) or demo_supervision_token(seed)
    options.setdefault("read_after", 0.0)
    options.setdefault("feedback_after", 30.0)
    return SupervisorEndpoint(
        token,
        lambda note: open_note(note, verifiers),
        host=url.hostname or "127.0.0.1",
        port=DEFAULT_PORT if url.port is None else url.port,  # 0: any free port (tests)
        db_path=settings.departments_dir / "scjg" / "supervision.db",
        **options,
    )


@app.command("serve-demo")
def serve_demo(
    seed: Annotated[int, typer.Option(help="Seed of the demo token.")] = DEMO_SEED,
    read_after: Annotated[float, typer.Option(help="Seconds before a case is read (签收).")] = 0.0,
    feedback_after: Annotated[float, typer.Option(help="Seconds before a case is answered.")] = 30.0,
    slow: Annotated[
        float, typer.Option(help="Misbehave: answer every request this many seconds late.")
    ] = 0.0,
    fail_status: Annotated[
        int | None, typer.Option(help="Misbehave: answer every request with this HTTP status (e.g. 503).")
    ] = None,
    duplicate_receipts: Annotated[
        bool, typer.Option("--duplicate-receipts", help="Misbehave: send every receipt twice, always.")
    ] = False,
) -> None:
    """Serve the demo 市场监督管理局 endpoint until interrupted: it checks each push's signature,
    opens one case per approval, reads and answers cases on its own (one in ten left unread,
    one in ten read and never answered)."""
    import time

    from departments.supervisor import SupervisorFaults, demo_supervision_token
    from onceonly.errors import ConfigurationError
    from onceonly.settings import Settings

    settings = Settings()
    faults = SupervisorFaults(delay_seconds=slow, status=fail_status, duplicate_receipts=duplicate_receipts)
    endpoint = demo_supervisor(
        settings, seed=seed, read_after=read_after, feedback_after=feedback_after, faults=faults
    )
    try:
        endpoint.start()
    except OSError as exc:
        endpoint.close()
        raise ConfigurationError(
            f"cannot serve the demo supervisor on {endpoint.host}:{endpoint.port} ({exc.strerror}); free the "
            "port or set ONCEONLY_SUPERVISION_URL"
        ) from exc
    name = settings.supervision_token_secret
    typer.echo(f"demo supervisor (天津市武清区市场监督管理局) serving on {endpoint.base_url}; Ctrl-C stops")
    if not os.environ.get(name):
        typer.echo(f"its token is the demo's: export {name}={demo_supervision_token(seed)}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.close()


__all__ = ["app", "demo_supervisor"]
