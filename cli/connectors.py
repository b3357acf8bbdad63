"""``onceonly connectors ...``: how a department engineer registers and checks a connector.

Example::

    onceonly connectors register gongan-household.yaml   # validate, connect, 5 masked rows, store
    onceonly connectors list                             # last pull, cursor, rows, status
    onceonly connectors test gongan-household            # connect again, show sample rows
    onceonly connectors remove gongan-household
    onceonly connectors schema > registration.schema.json

``register`` stores the registration in the catalog (``connector_registrations``): the daily
flow runs what is registered there. It also saves a Prefect block of type
``onceonly-connector`` (see ``connectors.block``) so operators see the connector in the UI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import console
from onceonly.errors import ConfigurationError
from onceonly.privacy import mask_citizen_id, mask_name, scrub_text
from onceonly.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Registered connectors to department systems.")


@app.command("register")
def register(
    file: Annotated[Path, typer.Argument(help="The registration file (YAML).", dir_okay=False)],
    rows: Annotated[int, typer.Option(help="Sample rows to show.")] = 5,
    block: Annotated[bool, typer.Option(help="Also save the connector as a Prefect block.")] = True,
) -> None:
    """Validate a registration file, test the connection, show sample rows and register it."""
    from catalog import Catalog
    from connectors.registration import parse_registration
    from connectors.registry import register as store

    settings = Settings()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{file}: cannot read registration: {exc}") from exc
    reg = parse_registration(text, str(file))
    typer.echo(f"{file}: valid registration of {reg.type} connector {reg.name!r} ({reg.department})")
    _show_sample(reg, settings, rows)
    catalog = Catalog.connect(settings.catalog_url, create=True)
    try:
        new = store(catalog, reg, text)
    finally:
        catalog.dispose()
    typer.secho(f"{reg.name}: {'registered' if new else 'registration replaced'} in the catalog", fg="green")
    if block:
        from connectors.block import save_block

        try:
            typer.echo(f"{reg.name}: saved as Prefect block onceonly-connector/{save_block(reg)}")
        except ConfigurationError as exc:
            typer.secho(f"warning: {scrub_text(str(exc))}", fg="yellow", err=True)


@app.command("list")
def list_() -> None:
    """Registered connectors with their last pull, cursor, rows and status."""
    from rich.table import Table
    from sqlalchemy import select

    from catalog import Catalog, connector_state
    from connectors.registry import registered

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        regs = registered(catalog)
        with catalog.read() as conn:
            state = {r.connector: r for r in conn.execute(select(connector_state))}
    finally:
        catalog.dispose()
    table = Table(
        "name", "type", "dataset", "department", "rows", "status", "last pull", "cursor / last error"
    )
    for name, reg in sorted(regs.items()):
        st = state.get(name)
        last = st.last_pull_at.isoformat(timespec="seconds") if st and st.last_pull_at else "never"
        detail = ""
        if st and st.last_error:
            detail = f"[red]{scrub_text(st.last_error)}[/red]"
        elif st and st.cursor:
            shown = {k: v for k, v in st.cursor.items() if k != "columns"}
            detail = scrub_text(json.dumps(shown, ensure_ascii=False))[:120]
        table.add_row(
            name,
            reg.type,
            reg.dataset,
            reg.department,
            str(st.rows_pulled if st else 0),
            st.last_status if st else "-",
            last,
            detail,
        )
    if not regs:
        typer.echo("No connectors registered (onceonly connectors register FILE).")
        return
    console().print(table)


@app.command("test")
def test(
    name: str,
    rows: Annotated[int, typer.Option(help="Sample rows to show.")] = 5,
) -> None:
    """Connect to a registered system and show sample rows, personal fields masked."""
    from catalog import Catalog
    from connectors.registry import registration_of

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        reg = registration_of(catalog, name)
    finally:
        catalog.dispose()
    _show_sample(reg, settings, rows)


@app.command("remove")
def remove(
    name: str,
    block: Annotated[bool, typer.Option(help="Also delete the connector's Prefect block.")] = True,
) -> None:
    """Remove a registered connector (the daily flow stops pulling it; its history stays)."""
    from catalog import Catalog
    from connectors.block import delete_block
    from connectors.registry import remove as unregister

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        unregister(catalog, name)
    finally:
        catalog.dispose()
    typer.secho(f"{name}: removed from the catalog", fg="green")
    if not block:
        return
    try:
        if delete_block(name):
            typer.echo(f"{name}: Prefect block onceonly-connector/{name} deleted")
    except ConfigurationError as exc:
        typer.secho(f"warning: {scrub_text(str(exc))}", fg="yellow", err=True)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of registration files (for editors and CI checks)."""
    from connectors.registration import registration_schema

    typer.echo(json.dumps(registration_schema(), indent=2, ensure_ascii=False))


def _show_sample(reg: Any, settings: Settings, rows: int) -> None:
    """Connect through ``reg`` and print ``rows`` rows with personal fields masked."""
    from connectors import ChainedSecrets, EnvironmentSecrets, PrefectSecrets, create_connector
    from contracts.compiler import compile_contract
    from contracts.model import contract_by_id
    from onceonly.errors import ContractError

    try:
        compiled = compile_contract(contract_by_id(settings.contracts_dir, reg.dataset))
    except ContractError as exc:
        raise ConfigurationError(f"connector {reg.name!r}: dataset {reg.dataset!r}: {exc}") from exc
    connector = create_connector(reg, settings.home, ChainedSecrets(EnvironmentSecrets(), PrefectSecrets()))
    sample = connector.sample(rows)
    typer.secho(f"{reg.name}: connected; {sample.num_rows} sample rows (personal fields masked)", fg="green")
    id_columns = {r.column for r in compiled.rules if r.check == "gb11643_citizen_id"}
    for row in sample.to_pylist():
        shown = {k: _mask_field(k, v, compiled.personal_columns, id_columns) for k, v in row.items()}
        typer.echo("  " + scrub_text(json.dumps(shown, ensure_ascii=False, default=str)))


def _mask_field(column: str, value: Any, personal: frozenset[str], id_columns: set[str]) -> Any:
    if value is None:
        return None
    if column in id_columns:
        return mask_citizen_id(str(value))
    if column in personal:
        return mask_name(str(value))
    return value


__all__ = ["app"]
