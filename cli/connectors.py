"""``onceonly connectors ...``: how a department engineer registers and checks a connector.

Example::

    onceonly connectors register gongan-household.yaml   # validate, connect, 5 masked rows, store
    onceonly connectors list                             # last pull, cursor, rows, status
    onceonly connectors test gongan-household            # connect again, show sample rows
    onceonly connectors remove gongan-household
    onceonly connectors schema > registration.schema.json

``register`` checks everything before it stores anything: the file (its fields, no password
or token inside a URL), the contract it names (and the major version it pins), then the
connection, and the sample rows against the contract (missing columns, types that do not
convert). Then it stores the registration in the catalog (``connector_registrations``): the
daily flow runs what is registered there.

Prefect blocks (type ``onceonly-connector``) mirror the catalog's registrations; the daily
flow syncs them at each run on the Prefect API it runs against. ``register`` and ``remove``
save or delete the block at once only when ``PREFECT_API_URL`` names a server: they never
start Prefect's temporary server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onceonly.errors import ConfigurationError
from onceonly.privacy import mask_citizen_id, mask_name, scrub_text

if TYPE_CHECKING:
    from connectors.registration import Registration
    from contracts.compiler import CompiledContract
    from onceonly.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Registered connectors to department systems.")


@app.command("register")
def register(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The registration file (YAML).", dir_okay=False)
    ],
    rows: Annotated[int, typer.Option(help="Sample rows to show.")] = 5,
    block: Annotated[
        bool,
        typer.Option(
            help="Also save the connector's Prefect block now, when PREFECT_API_URL names a server "
            "(the daily flow syncs the blocks at each run anyway)."
        ),
    ] = True,
) -> None:
    """Validate a registration file, test the connection, check sample rows and register it."""
    from catalog import Catalog
    from connectors.registration import parse_registration
    from connectors.registry import register as store
    from onceonly.settings import Settings

    settings = Settings()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{file}: cannot read registration: {exc}") from exc
    reg = parse_registration(text, str(file))
    typer.echo(f"{file}: valid registration of {reg.type} connector {reg.name!r} ({reg.department})")
    compiled = _contract_of(reg, settings, source=str(file))  # before connecting: quick to fail
    sample = _sample(reg, settings, rows)
    _check_sample(sample, compiled, reg, source=str(file), refuse=True)
    _print_sample(sample, compiled)
    catalog = Catalog.connect(settings.catalog_url, create=True)
    try:
        new = store(catalog, reg, text)
    finally:
        catalog.dispose()
    typer.secho(f"{reg.name}: {'registered' if new else 'registration replaced'} in the catalog", fg="green")
    if block:
        _sync_block(reg.name, lambda: _save_block(reg))


@app.command("list")
def list_() -> None:
    """Registered connectors with their last pull, cursor, rows and status."""
    from sqlalchemy import select

    from catalog import Catalog, connector_registrations, connector_state
    from onceonly.settings import Settings

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    c = connector_registrations.c
    try:
        with catalog.read() as conn:
            regs = conn.execute(
                select(c.name, c.type, c.dataset, c.department, c.yaml_text)
                .where(c.removed_at.is_(None))
                .order_by(c.name)
            ).all()
            state = {r.connector: r for r in conn.execute(select(connector_state))}
    finally:
        catalog.dispose()
    if not regs:
        typer.echo("No connectors registered (onceonly connectors register FILE).")
        return
    from cli.console import console, table

    out = table("name", "type", "dataset", "department", "rows", "status", "last pull", "cursor / last error")
    for reg in regs:
        st = state.get(reg.name)
        last = st.last_pull_at.isoformat(timespec="seconds") if st and st.last_pull_at else "never"
        detail = ""
        if st and st.last_error:
            detail = f"[red]{_escape(scrub_text(st.last_error))}[/red]"
        elif st and st.cursor:
            detail = _escape(describe_cursor(st.cursor, _options(reg.yaml_text)))
        out.add_row(
            reg.name,
            reg.type,
            reg.dataset,
            reg.department,
            str(st.rows_pulled if st else 0),
            st.last_status if st else "-",
            last,
            detail,
        )
    console().print(out)


@app.command("test")
def test(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A registered connector's name.")],
    rows: Annotated[int, typer.Option(help="Sample rows to show.")] = 5,
) -> None:
    """Connect to a registered system and show sample rows, personal fields masked."""
    from catalog import Catalog
    from connectors.registry import registration_of
    from onceonly.settings import Settings

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        reg = registration_of(catalog, name)
    finally:
        catalog.dispose()
    compiled = _contract_of(reg, settings, source=f"connector {reg.name!r}")
    sample = _sample(reg, settings, rows)
    _check_sample(sample, compiled, reg, source=f"connector {reg.name!r}", refuse=False)
    _print_sample(sample, compiled)


@app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A registered connector's name.")],
    block: Annotated[
        bool,
        typer.Option(
            help="Also delete the connector's Prefect block now, when PREFECT_API_URL names a server "
            "(the daily flow syncs the blocks at each run anyway)."
        ),
    ] = True,
) -> None:
    """Remove a registered connector (the daily flow stops pulling it; its history stays)."""
    from catalog import Catalog
    from connectors.registry import remove as unregister
    from onceonly.settings import Settings

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        unregister(catalog, name)
    finally:
        catalog.dispose()
    typer.secho(f"{name}: removed from the catalog", fg="green")
    if block:
        _sync_block(name, lambda: _delete_block(name))


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of registration files (for editors and CI checks)."""
    from connectors.registration import registration_schema

    typer.echo(json.dumps(registration_schema(), indent=2, ensure_ascii=False))


# ------------------------------------------------------------------------------ blocks


def prefect_api_url() -> str | None:
    """The Prefect server named by ``PREFECT_API_URL`` (environment or ``.env``), if any."""
    return os.environ.get("PREFECT_API_URL") or None


def _sync_block(name: str, action: Any) -> None:
    """Run ``action`` (save or delete the block) if a Prefect server is named; else say when."""
    url = prefect_api_url()
    if url is None:
        typer.echo(
            f"{name}: Prefect block onceonly-connector/{name} will be brought up to date by the next run "
            "(no PREFECT_API_URL: no Prefect server is started for this command)"
        )
        return
    try:
        typer.echo(action())
    except ConfigurationError as exc:
        typer.secho(f"warning: {scrub_text(str(exc))}", fg="yellow", err=True)


def _save_block(reg: Registration) -> str:
    from connectors.block import save_block

    return f"{reg.name}: saved as Prefect block onceonly-connector/{save_block(reg)} on {prefect_api_url()}"


def _delete_block(name: str) -> str:
    from connectors.block import delete_block

    if delete_block(name):
        return f"{name}: Prefect block onceonly-connector/{name} deleted"
    return f"{name}: there was no Prefect block onceonly-connector/{name}"


# ------------------------------------------------------------------------------ sample rows


def _contract_of(reg: Registration, settings: Settings, *, source: str) -> CompiledContract:
    """The compiled contract ``reg`` delivers, after checking the major version it pins."""
    from contracts.compiler import compile_contract
    from contracts.model import contract_by_id
    from contracts.pinning import require_pinned_major
    from onceonly.errors import ContractError

    try:
        contract = contract_by_id(settings.contracts_dir, reg.dataset)
        compiled = compile_contract(contract)
    except ContractError as exc:
        raise ConfigurationError(f"{source}: connector {reg.name!r}: dataset {reg.dataset!r}: {exc}") from exc
    if reg.contract is None:
        typer.secho(
            f"warning: {source}: no contract major version pinned; "
            f"add `contract: {{major: {contract.major}}}`",
            fg="yellow",
            err=True,
        )
    else:
        try:
            require_pinned_major(reg, contract)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
    return compiled


def _sample(reg: Registration, settings: Settings, rows: int) -> Any:
    """``rows`` rows from the source (secrets from the environment; from Prefect Secret blocks
    too when PREFECT_API_URL names a server)."""
    from connectors import ChainedSecrets, EnvironmentSecrets, PrefectSecrets, create_connector
    from connectors.paths import SourcePaths

    resolvers: list[Any] = [EnvironmentSecrets()]
    if prefect_api_url() is not None:
        resolvers.append(PrefectSecrets())
    connector = create_connector(
        reg,
        settings.home,
        ChainedSecrets(*resolvers),
        paths=SourcePaths.of(settings),
        limits=settings.limits,
    )
    sample = connector.sample(rows)
    typer.secho(f"{reg.name}: connected; {sample.num_rows} sample rows (personal fields masked)", fg="green")
    return sample


def _check_sample(
    sample: Any, compiled: CompiledContract, reg: Registration, *, source: str, refuse: bool
) -> None:
    """The sample against the contract: refused (``refuse``) or warned about, naming each problem."""
    from contracts.conform import check_sample

    found = check_sample(sample, compiled)
    for warning in found.warnings:
        typer.secho(f"warning: {source}: {warning}", fg="yellow", err=True)
    if not found.problems:
        return
    message = (
        f"{source}: connector {reg.name!r} does not deliver dataset {reg.dataset!r} as contract "
        f"{compiled.ref} ({compiled.contract.source}) says: " + "; ".join(found.problems)
    )
    if refuse:
        raise ConfigurationError(message + ". Nothing was stored.")
    typer.secho(f"warning: {message}", fg="yellow", err=True)


def _print_sample(sample: Any, compiled: CompiledContract) -> None:
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


# ------------------------------------------------------------------------------ cursors


def _options(yaml_text: str) -> dict[str, Any]:
    """The registration's options, read plainly (listing needs no connector type loaded)."""
    import yaml

    try:
        data = yaml.safe_load(yaml_text)
    except yaml.YAMLError:
        return {}
    options = data.get("options") if isinstance(data, dict) else None
    return options if isinstance(options, dict) else {}


def describe_cursor(cursor: dict[str, Any], options: dict[str, Any]) -> str:
    """A short, masked summary of a stored cursor, for people (the raw cursor is for the flow).

    ``updated_at ≤ 2026-11-20 10:00, id 4711`` (SQL keyset), ``file 3 (orders.csv, sha 1a2b3c4d…),
    row 2000`` (files), ``snapshot generation 7f3e…`` (change detection).
    """
    if "snapshot" in cursor or "staged" in cursor:
        if cursor.get("staged"):
            before = f"; last complete {_short(cursor.get('snapshot'))}" if cursor.get("snapshot") else ""
            staged, rows = _short(cursor["staged"]), cursor.get("rows", 0)
            return f"snapshot generation {staged} being landed, row {rows}{before}"
        return f"snapshot generation {_short(cursor.get('snapshot'))}"
    if "done" in cursor or "current" in cursor:
        read = len(cursor.get("done") or [])
        current = cursor.get("current")
        if isinstance(current, dict):
            return (
                f"file {read + 1} ({current.get('file', '?')}, sha {_short(current.get('sha256'))}), "
                f"row {current.get('rows', 0)}; {read} file(s) read before"
            )
        return f"{read} file(s) read"
    if "watermark" in cursor:
        sql = options.get("cursor") if isinstance(options.get("cursor"), dict) else None
        http = options.get("incremental") if isinstance(options.get("incremental"), dict) else None
        if sql is not None:
            column, tiebreak = sql.get("column", "watermark"), sql.get("tiebreak", "tiebreak")
            text = f"{column} ≤ {_value(cursor['watermark'])}, {tiebreak} {_value(cursor.get('tiebreak'))}"
        elif http is not None:
            text = f"{http.get('field', 'watermark')} ≤ {_value(cursor['watermark'])}"
            if cursor.get("key") is not None:
                text += f", {http.get('key', 'key')} {_value(cursor['key'])}"
        else:
            text = f"watermark {_value(cursor['watermark'])}"
        return scrub_text(text)
    shown = {k: v for k, v in cursor.items() if k != "columns"}
    return scrub_text(json.dumps(shown, ensure_ascii=False, default=str))[:80] if shown else "-"


def _value(value: Any) -> str:
    """A cursor value as written: ``{"type": "datetime", "value": ...}`` or plain."""
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    text = str(value)
    if len(text) >= 16 and text[4:5] == "-" and text[10:11] == "T":  # ISO time: as people write it
        text = text.replace("T", " ", 1)
        if text.endswith(":00") and len(text) == 19:
            text = text[:16]
    return scrub_text(text if len(text) <= 40 else text[:39] + "…")


def _short(digest: Any) -> str:
    text = str(digest or "?")
    return text if len(text) <= 12 else text[:8] + "…"


def _escape(text: str) -> str:
    """Text shown in a rich table cell: ``[`` would start markup."""
    return text.replace("[", r"\[")


__all__ = ["app", "describe_cursor", "prefect_api_url"]
