"""The ``onceonly`` command line's entry point: one root app over every stage's commands.

Example::

    onceonly demo --rows 5000                 # generate department systems if missing, run the flow
    onceonly connectors list
    onceonly certificates export 1.2.156.3005.2.... -o bundle.json
    onceonly verify bundle.json
    onceonly skip-check --subject 120114199003071234 --matter hukou-move-after-marriage
    onceonly --version

Every command module imports only typer and the standard library when the command line
starts; the stages (pyarrow, SQLAlchemy, pydantic-settings, rich, cryptography, Prefect,
Great Expectations) are imported inside the commands that need them, so ``onceonly --help``
and the commands that only read the catalog start quickly. ``tests/unit/cli/test_cli_startup.py``
holds it to that.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from cli import (
    alerts,
    audit,
    bottlenecks,
    catalog,
    certificates,
    connectors,
    contracts,
    counter,
    decisions,
    demo,
    deployments,
    extracts,
    keys,
    log,
    quarantine,
    reminders,
    run,
    sharing,
    supervision,
    witness,
)
from onceonly.errors import OnceOnlyError
from onceonly.files import restrict_new_files
from onceonly.privacy import install_log_masking, scrub_text

# rich_markup_mode=None: click's plain help (no rich import to print it; no type hint such as
# "<bool>" beside flags and --help).
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="OnceOnly: share department data once.",
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"onceonly {version('onceonly')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """OnceOnly: share department data once."""


app.add_typer(demo.app, name="demo")
app.add_typer(run.app)
app.add_typer(connectors.app, name="connectors")
app.add_typer(contracts.app, name="contracts")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(certificates.app, name="certificates")
app.command("verify")(certificates.verify)
app.add_typer(keys.app, name="keys")
app.add_typer(log.log_app, name="log")
app.add_typer(audit.app)
app.add_typer(sharing.app)
app.add_typer(catalog.app, name="catalog")
app.add_typer(witness.app, name="witness")
app.add_typer(counter.app)
app.add_typer(deployments.app, name="deployments")
app.add_typer(alerts.app, name="alerts")
app.add_typer(bottlenecks.app, name="bottlenecks")
app.add_typer(decisions.app, name="decisions")
app.add_typer(extracts.app, name="extracts")
app.command("verify-extract")(extracts.verify_extract_command)
app.add_typer(reminders.app, name="reminders")
app.add_typer(supervision.app, name="supervision")


def onceonly_home() -> str:
    """``ONCEONLY_HOME`` as the settings read it (names case-insensitive, default ``var``),
    without building them: pydantic-settings costs 0.1 s that most commands never need."""
    for name, value in os.environ.items():
        if name.upper() == "ONCEONLY_HOME":
            return value
    return "var"


def main() -> None:
    from dotenv import load_dotenv

    install_log_masking()
    restrict_new_files()  # what commands write under ONCEONLY_HOME may hold personal data: 600/700
    # Department secrets are resolved by name from the environment: let a local .env provide
    # them too (never overriding what the environment already says).
    load_dotenv(".env", override=False)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The ephemeral server's first start creates and migrates its database: on a slow machine
    # that took longer than Prefect's default 20 s, and the run failed before it began.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Keep Prefect's own database with everything else OnceOnly writes, unless told otherwise.
    from pathlib import Path

    os.environ.setdefault("PREFECT_HOME", str((Path(onceonly_home()) / "prefect").resolve()))
    try:
        app()
    except OnceOnlyError as exc:
        typer.secho(f"error: {scrub_text(str(exc))}", fg="red", err=True)
        sys.exit(2)
    except Exception as exc:
        problem = _settings_problem(exc)
        if problem is None:
            raise
        typer.secho(f"error: {scrub_text(problem)}", fg="red", err=True)
        sys.exit(2)


def _settings_problem(exc: Exception) -> str | None:
    """A settings value refused (``ONCEONLY_SIGNATURE_SUITE=rsa``), said in one line per field."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(exc, pydantic.ValidationError) or exc.title != "Settings":
        return None
    fields = "; ".join(
        f"ONCEONLY_{'.'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )
    return f"settings: {fields}"


if __name__ == "__main__":
    main()


__all__ = ["app", "main", "onceonly_home"]
