"""``onceonly deployments write``: the connector deployments of ``deployments/prefect.yaml``.

Example (from the repository root)::

    onceonly deployments write                                           # the catalog's registrations
    onceonly deployments write --registrations connectors/registrations  # the shipped files
    onceonly deployments write --file /srv/onceonly/prefect.yaml

Each registered connector gets a deployment ``pull-<name>`` on the cron of its registration's
``schedule:`` (``deployments.generate``); the hand-written deployments of the file are kept.
Apply the file with ``prefect deploy --all --prefect-file deployments/prefect.yaml`` (or restart
``make server``); a deployment removed from the file stays on the server until deleted there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from connectors.registration import Registration

app = typer.Typer(no_args_is_help=True, help="Prefect deployments: one per registered connector.")


@app.command("write")
def write(
    registrations: Annotated[
        Path | None,
        typer.Option(
            "--registrations",
            metavar="DIR",
            help="Read the registration files (*.yaml) of DIR instead of the catalog's registrations.",
            file_okay=False,
            exists=True,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            metavar="FILE",
            help="The Prefect project file to rewrite; default deployments/prefect.yaml of this checkout.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Rewrite the generated connector deployments of the Prefect project file."""
    from deployments.generate import PREFECT_FILE, deployment_name, write_connector_deployments

    regs = _from_directory(registrations) if registrations else _from_catalog()
    target = file or PREFECT_FILE
    change = write_connector_deployments(target, regs)
    source = str(registrations) if registrations else "the catalog"
    schedules = {deployment_name(r.name): r.schedule for r in regs}
    for name in change.added:
        typer.secho(f"  added    {name}  {_when(schedules[name])}", fg="green")
    for name in change.changed:
        typer.secho(f"  changed  {name}  {_when(schedules[name])}", fg="yellow")
    for name in change.removed:
        typer.secho(f"  removed  {name}", fg="red")
    total = len(regs)
    if not change.written:
        typer.echo(f"{target}: up to date ({total} connector deployments from {source})")
        return
    typer.echo(
        f"{target}: {len(change.added)} added, {len(change.changed)} changed, {len(change.removed)} removed, "
        f"{len(change.unchanged)} unchanged ({total} connector deployments from {source})"
    )
    typer.echo(f"apply it: ONCEONLY_REPO=$PWD prefect deploy --all --prefect-file {_shown(target)}")
    if change.removed:
        typer.echo(
            "removed deployments stay on the server until deleted: "
            + "; ".join(f"prefect deployment delete daily_sharing/{name}" for name in change.removed)
        )


def _when(schedule: str | None) -> str:
    return f"cron {schedule!r} Asia/Shanghai" if schedule else "no schedule (runs when started)"


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is under it (the command to paste)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _from_directory(directory: Path) -> list[Registration]:
    from connectors.registration import load_registrations
    from onceonly.errors import ConfigurationError

    found = load_registrations(directory)
    if not found:
        raise ConfigurationError(f"{directory}: no registration files (*.yaml)")
    return list(found.values())


def _from_catalog() -> list[Registration]:
    from catalog import Catalog
    from connectors.registry import registered
    from onceonly.errors import ConfigurationError
    from onceonly.settings import Settings

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        found = list(registered(catalog).values())
    finally:
        catalog.dispose()
    if not found:  # rather than remove every connector deployment of the file
        raise ConfigurationError(
            "no connector is registered in the catalog (onceonly connectors register FILE); "
            "or give --registrations DIR"
        )
    return found


__all__ = ["app"]
