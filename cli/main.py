"""The ``onceonly`` command line's entry point: one root app over every stage's commands.

Example::

    onceonly demo --rows 5000                 # generate department systems if missing, run the flow
    onceonly connectors list
    onceonly certificates export 1.2.156.3005.2.... -o bundle.json
    onceonly verify bundle.json
    onceonly skip-check --subject 120114199003071234 --matter hukou-move-after-marriage

Heavy modules (Prefect, Great Expectations, pyarrow, SQLAlchemy) are imported inside the
commands that need them, so ``onceonly --help`` stays quick.
"""

from __future__ import annotations

import os
import sys

import typer
from dotenv import load_dotenv

from cli import (
    audit,
    catalog,
    certificates,
    connectors,
    contracts,
    demo,
    keys,
    log,
    quarantine,
    run,
    sharing,
)
from onceonly.errors import OnceOnlyError
from onceonly.files import restrict_new_files
from onceonly.privacy import install_log_masking, scrub_text
from onceonly.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="OnceOnly: share department data once.")
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


def main() -> None:
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
    os.environ.setdefault("PREFECT_HOME", str((Settings().home / "prefect").resolve()))
    try:
        app()
    except OnceOnlyError as exc:
        typer.secho(f"error: {scrub_text(str(exc))}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()


__all__ = ["app", "main"]
