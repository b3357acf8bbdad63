"""The ``onceonly`` command line.

Example::

    onceonly demo --rows 5000                 # generate department systems if missing, run the flow
    onceonly connectors list
    onceonly certificates export 1.2.156.3005.2.... -o bundle.json
    onceonly verify bundle.json
    onceonly skip-check --subject 120114199003071234 --matter hukou-move-after-marriage

Heavy modules (Prefect, Great Expectations) are imported inside the commands that need them,
so ``onceonly --help`` and ``onceonly verify`` stay quick.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from typing import Annotated, Any
from urllib.parse import urlparse

import typer
from dotenv import load_dotenv

from cli.certificates import app as certificates_app
from cli.certificates import verify as verify_command
from cli.connectors import app as connectors_app
from cli.console import console
from cli.contracts import app as contracts_app
from cli.keys import app as keys_app
from cli.log import log_app
from cli.quarantine import app as quarantine_app
from onceonly.errors import ConfigurationError, OnceOnlyError
from onceonly.privacy import install_log_masking, scrub_text
from onceonly.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="OnceOnly: share department data once.")
demo_app = typer.Typer(help="Demo department systems and the demo run.")
matters_app = typer.Typer(no_args_is_help=True, help="The matters catalogue.")
app.add_typer(demo_app, name="demo")
app.add_typer(connectors_app, name="connectors")
app.add_typer(certificates_app, name="certificates")
app.command("verify")(verify_command)
app.add_typer(matters_app, name="matters")
app.add_typer(contracts_app, name="contracts")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(keys_app, name="keys")
app.add_typer(log_app, name="log")

DEMO_SEED = 20261121


def main() -> None:
    install_log_masking()
    # Department secrets are resolved by name from the environment: let a local .env provide
    # them too (never overriding what the environment already says).
    load_dotenv(".env", override=False)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The ephemeral server's first start creates and migrates its database: on a slow machine
    # that took longer than Prefect's default 20 s, and the run failed before it began.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Keep Prefect's own database with everything else OnceOnly writes, unless told otherwise.
    os.environ.setdefault("PREFECT_HOME", str((Settings().home / "prefect").resolve()))
    try:
        app()
    except OnceOnlyError as exc:
        typer.secho(f"error: {scrub_text(str(exc))}", fg="red", err=True)
        sys.exit(2)


# ----------------------------------------------------------------------------------- demo


@demo_app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    rows: Annotated[
        int | None, typer.Option(help="Rows per demo department system (default: as generated, else 5000).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated data.")] = DEMO_SEED,
    reset: Annotated[
        bool, typer.Option("--reset", help="Start over: delete the catalog, lake, extracts and demo systems.")
    ] = False,
) -> None:
    """Generate the demo department systems if missing, then run the daily sharing flow."""
    if ctx.invoked_subcommand:
        return
    from departments import DEFAULT_ROWS, LicenceApi, demo_token, generate_if_missing

    settings = _demo_settings()
    if reset:
        _reset_demo(settings)
    existing = _demo_manifest(settings)
    wanted = rows or (existing.rows if existing else DEFAULT_ROWS)
    if existing and (existing.rows, existing.seed) != (wanted, seed) and _catalog_has_data(settings):
        raise ConfigurationError(
            f"the demo systems in {settings.departments_dir} hold {existing.rows} rows "
            f"(seed {existing.seed}) and the catalog already holds their certificates; regenerating "
            f"with {wanted} rows (seed {seed}) would mix two worlds. Start over with "
            "`onceonly demo --reset` (make demo RESET=1)."
        )
    manifest, generated = generate_if_missing(settings.departments_dir, rows=wanted, seed=seed)
    typer.echo(
        f"Demo department systems {'generated' if generated else 'already present'} in "
        f"{settings.departments_dir} ({manifest.rows} rows each, seed {manifest.seed})."
    )
    if not os.environ.get("SCJG_API_TOKEN"):  # unset or left empty in .env: the demo's own token
        os.environ["SCJG_API_TOKEN"] = demo_token(seed)
    host, port = _demo_api_address(settings)
    db = settings.departments_dir / "scjg" / "licences.db"
    api = _start_api(LicenceApi(db, token=os.environ["SCJG_API_TOKEN"], host=host, port=port))
    try:
        typer.echo(f"市场监管 licence API serving on {api.base_url}")
        ok = _run_flow(None)
    finally:
        api.stop()
    raise typer.Exit(0 if ok else 1)


def _demo_manifest(settings: Settings) -> Any:
    from departments import Manifest

    try:
        return Manifest.load(settings.departments_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _catalog_has_data(settings: Settings) -> bool:
    if settings.database_url:
        return True
    return (settings.home / "catalog.db").exists()


def _start_api(api: Any) -> Any:
    try:
        return api.start()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve the demo licence API on {api.host}:{api.port} ({exc.strerror}); free the port or "
            "change options.base_url in connectors/registrations/scjg-licences.yaml"
        ) from exc


def _reset_demo(settings: Settings) -> None:
    """Delete what the demo generated and landed; keys and the remembered passphrase stay."""
    import shutil

    if settings.database_url:
        raise ConfigurationError(
            "--reset deletes only the embedded SQLite catalog; drop your database yourself"
        )
    for path in (settings.departments_dir, settings.lake_dir, settings.extracts_dir):
        shutil.rmtree(path, ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        (settings.home / f"catalog.db{suffix}").unlink(missing_ok=True)
    typer.echo(f"Reset: removed the demo systems, catalog, lake and extracts under {settings.home}")


@demo_app.command("generate")
def demo_generate(
    rows: Annotated[int, typer.Option(help="Rows per demo department system.")] = 5000,
    seed: Annotated[int, typer.Option()] = DEMO_SEED,
) -> None:
    """(Re)generate the demo department systems under ONCEONLY_HOME/departments."""
    from departments import generate_all

    settings = Settings()
    generate_all(settings.departments_dir, rows=rows, seed=seed)
    typer.echo(f"Generated {rows} rows per department in {settings.departments_dir}")


@demo_app.command("add-updates")
def demo_add_updates(
    rows: Annotated[int, typer.Option(help="New rows per department.")] = 100,
    seed: Annotated[int, typer.Option()] = DEMO_SEED + 1,
) -> None:
    """Append new records to each demo department system, as between two daily runs."""
    from departments import add_updates

    settings = Settings()
    add_updates(settings.departments_dir, rows=rows, seed=seed)
    typer.echo(f"Added {rows} new rows to each department in {settings.departments_dir}")


@demo_app.command("serve")
def demo_serve(seed: Annotated[int, typer.Option()] = DEMO_SEED) -> None:
    """Serve the demo 市场监管 licence API until interrupted (for `onceonly run` / connector tests)."""
    import time

    from departments import LicenceApi, demo_token

    settings = Settings()
    host, port = _demo_api_address(settings)
    token = os.environ.get("SCJG_API_TOKEN") or demo_token(seed)
    api = _start_api(
        LicenceApi(settings.departments_dir / "scjg" / "licences.db", token=token, host=host, port=port)
    )
    typer.echo(f"serving on {api.base_url}; token in SCJG_API_TOKEN (or the demo token); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()


def _demo_settings() -> Settings:
    """Settings for the demo: a passphrase for the signing key is generated once and remembered."""
    settings = Settings()
    if settings.key_passphrase is None:
        path = settings.home / "secrets" / "key-passphrase"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
            typer.echo(
                f"Generated a passphrase for the demo signing key and stored it in {path} (mode 600). "
                "In production set ONCEONLY_KEY_PASSPHRASE instead."
            )
        os.environ["ONCEONLY_KEY_PASSPHRASE"] = path.read_text().strip()
        settings = Settings()
    return settings


def _demo_api_address(settings: Settings) -> tuple[str, int]:
    from connectors import load_registrations

    regs = load_registrations(settings.registrations_dir)
    http = [r for r in regs.values() if r.type == "http"]
    url = urlparse(http[0].options["base_url"]) if http else urlparse("http://127.0.0.1:18930")
    return url.hostname or "127.0.0.1", url.port or 80


# ------------------------------------------------------------------------------------ run


@app.command("run")
def run(
    connector: Annotated[
        list[str] | None, typer.Option("--connector", "-c", help="Only these connectors.")
    ] = None,
) -> None:
    """Run the daily sharing flow once (on the Prefect server in PREFECT_API_URL, or ephemeral)."""
    raise typer.Exit(0 if _run_flow(connector) else 1)


def _run_flow(connectors: list[str] | None) -> bool:
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
        out.print(
            "Nothing new since the last run: 0 rows pulled, 0 certificates issued, 0 extracts written."
        )
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


# -------------------------------------------------------------------------- township side


@app.command("skip-check")
def skip_check_command(
    subject: Annotated[str, typer.Option(help="Citizen ID number or USCC of the applicant.")],
    matter: Annotated[str, typer.Option(help="Matter code (see `onceonly matters list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    record_use_for: Annotated[
        str | None,
        typer.Option(
            "--record-use",
            metavar="TOWNSHIP",
            help="Record each skipped material as a use of shared data by this township in the log.",
        ),
    ] = None,
) -> None:
    """For this subject and matter: which materials may be skipped, with the certificate or reason."""
    from catalog import Catalog
    from contracts.model import certificate_datasets
    from sharing.matters import load_matters
    from sharing.skipcheck import skip_check

    settings = Settings()
    catalogue = load_matters(settings.matters_file)
    issued_by = certificate_datasets(settings.contracts_dir)
    catalog = Catalog.connect(settings.catalog_url, create=False)
    if record_use_for is None:
        with catalog.read() as conn:
            answer = skip_check(conn, catalogue.get(matter), subject, issued_by)
    else:
        from evidence.keys import open_key_store
        from evidence.log import TransparencyLog
        from evidence.merkle import tree_hash

        key = open_key_store(settings).load(settings.log_origin)
        log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
        with catalog.begin() as conn:
            answer = skip_check(
                conn, catalogue.get(matter), subject, issued_by, log=log, township=record_use_for
            )
    if as_json:
        typer.echo(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
        return
    typer.secho(f"{answer.matter_name} ({answer.matter}) for {answer.subject}", bold=True)
    for m in answer.materials:
        if m.skippable:
            typer.secho(f"  ✔ {m.material}: may be skipped — certificate {m.certificate_id}", fg="green")
        else:
            typer.secho(f"  ✘ {m.material}: required — {m.reason}", fg="yellow")


@matters_app.command("list")
def matters_list() -> None:
    """Matters in the catalogue and their materials."""
    from sharing.matters import load_matters

    for m in load_matters(Settings().matters_file).matters:
        typer.echo(f"{m.code:<36}{m.name}  [{m.department}]")
        for mat in m.materials:
            types = ", ".join(mat.certificate_types) or "no e-certificate yet"
            typer.echo(f"    - {mat.name}: {types}")


if __name__ == "__main__":
    main()
