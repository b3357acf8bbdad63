"""``onceonly extracts``: township extracts (数据回流) — write, list, catch up — and
``onceonly verify-extract``.

Example::

    onceonly extracts write                          # every township with changes (flows/township_return.py)
    onceonly extracts write --full -t 120114001000   # a full snapshot, on demand
    onceonly extracts list -t 120114001000
    onceonly extracts since 3 -t 120114001000 --to /media/usb   # what a station with number 3 applies
    onceonly verify-extract var/extracts/township=120114001000/extract=000004

An extract folder (Parquet, XLSX, rows.sha256, a signed manifest) verifies offline with the
district's verifier key: ``verify-extract`` names a changed file and a changed row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, help="Township extracts (数据回流): write, list, catch up.")

_TOWNSHIP_HELP = "A 12-digit township code of the district's region list."


def _township(code: str) -> str:
    from contracts.checks import load_region_codes
    from onceonly.privacy import mask_typed

    if not (len(code) == 12 and code.isdigit() and code in load_region_codes(code[:6])):
        raise typer.BadParameter(
            f"'{mask_typed(code)}' is not a township code of the region list", param_hint="--township"
        )
    return code


@app.command("write")
def write_command(
    full: Annotated[
        bool, typer.Option("--full", help="A full snapshot (else: the changes since the last).")
    ] = False,
    township: Annotated[
        list[str] | None, typer.Option("--township", "-t", help=f"Only these townships. {_TOWNSHIP_HELP}")
    ] = None,
) -> None:
    """Write the next extract of every township with changes (or of the ones named), as the
    ``township-return`` flow (on the Prefect server in PREFECT_API_URL, or ephemeral)."""
    from cli.console import console, table
    from flows.server import temporary_server
    from flows.township_return import township_return
    from onceonly.privacy import scrub_text
    from onceonly.settings import Settings

    townships = [_township(t) for t in township] if township else None
    settings = Settings()
    with temporary_server():
        state = township_return(full=full, townships=townships, settings=settings, return_state=True)
    ok = state.is_completed()
    rows = state.result(raise_on_failure=False) if ok else None
    if isinstance(rows, list) and rows:
        shown = table(*rows[0].keys(), title="数据回流")
        for row in rows:
            shown.add_row(*("-" if v is None else str(v) for v in row.values()))
        console().print(shown)
    typer.secho(scrub_text(state.message or state.name or ""), fg=None if ok else "red", err=not ok)
    if ok:
        typer.echo(f"extracts in {settings.extracts_dir}; check one with `onceonly verify-extract FOLDER`")
    raise typer.Exit(0 if ok else 1)


def _catalog() -> Any:
    from catalog import Catalog
    from onceonly.settings import Settings

    return Catalog.connect(Settings().catalog_url, create=False)


def _print(records: list[Any], as_json: bool, base: Path) -> None:
    from cli.console import console, table

    if as_json:
        typer.echo(
            json.dumps(
                [r.to_json() | {"folder": str(base / r.path)} for r in records], ensure_ascii=False, indent=2
            )
        )
        return
    shown = table("township", "no", "kind", "follows", "rows", "changes", "checkpoint", "manifest", "folder")
    for r in records:
        changes = ", ".join(f"{k} {v}" for k, v in r.changes.items() if v) or "-"
        shown.add_row(
            r.township,
            str(r.extract_no),
            r.kind,
            str(r.previous_no or "-"),
            str(r.rows),
            changes,
            str(r.tree_size),
            r.manifest_sha256[:16],
            str(base / r.path),
        )
    console().print(shown)


@app.command("list")
def list_command(
    township: Annotated[str | None, typer.Option("--township", "-t", help=_TOWNSHIP_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """The extracts written, by township and number."""
    from onceonly.settings import Settings
    from sharing.extracts import list_extracts

    catalog = _catalog()
    try:
        with catalog.read() as conn:
            records = list_extracts(conn, _township(township) if township else None)
    finally:
        catalog.dispose()
    _print(records, as_json, Settings().extracts_dir)


@app.command("since")
def since_command(
    number: Annotated[int, typer.Argument(metavar="N", help="The extract number the station has (0: none).")],
    township: Annotated[str, typer.Option("--township", "-t", help=_TOWNSHIP_HELP)],
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Copy each extract folder here (700/600), to hand to the station."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """What a station that has extract N applies, in order, to catch up (each follows the one before)."""
    from onceonly.errors import CatalogRefused
    from onceonly.files import private_dir, write_atomic
    from onceonly.settings import Settings
    from sharing.extracts import ExtractNotFound, extracts_since

    code = _township(township)
    catalog = _catalog()
    try:
        with catalog.read() as conn:
            records = extracts_since(conn, code, number)
    except ExtractNotFound as exc:
        raise CatalogRefused(str(exc)) from None
    finally:
        catalog.dispose()
    base = Settings().extracts_dir
    _print(records, as_json, base)
    if not as_json:
        if records:
            typer.echo(f"apply in this order: {', '.join(str(r.extract_no) for r in records)}")
        else:
            typer.echo(f"township {code}: nothing after extract {number}; the station is up to date")
    if to is not None:
        for r in records:
            target = private_dir(to / Path(r.path).name)
            for name in _extract_files(base / r.path):
                write_atomic(target / name, (base / r.path / name).read_bytes())
        typer.echo(f"{len(records)} extract folder(s) copied to {to}", err=as_json)


def _extract_files(folder: Path) -> list[str]:
    """What an extract folder hands on: its manifest and the files the manifest lists (nothing
    else a crash or a hand left beside them)."""
    from sharing.extract_manifest import MANIFEST_FILE

    text = (folder / MANIFEST_FILE).read_text(encoding="utf-8").split("\n\n", 1)[0]
    listed = [str(f["name"]) for f in json.loads(text).get("files", [])]
    return [MANIFEST_FILE, *(n for n in listed if n == Path(n).name and n not in (".", ".."))]


def verify_extract_command(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="An extract folder (township=…/extract=…).")],
    trusted_key: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-key", "--key", help="The district's verifier key (vkey); default: this home's keys."
        ),
    ] = None,
) -> None:
    """Check a township extract offline: its signed manifest and checkpoint, every file and every
    row; exit 0 and VALID, or non-zero naming the changed file or row."""
    from cli.offline import checked, trusted_verifiers
    from sharing.extract_manifest import verify_extract

    report = checked(lambda: verify_extract(folder, trusted_verifiers(trusted_key)))
    typer.secho(f"VALID: {report.summary}", fg="green")
    if not report.follows_checked and report.manifest.get("previous"):
        typer.echo(
            f"note: the extract it follows (number {report.manifest['previous']['extract_no']}) is not "
            "beside it: the chain was not checked",
            err=True,
        )


def show_for_demo(settings: Any) -> None:
    """For ``onceonly demo``: each township's newest extract, checked offline as a station would."""
    from catalog import Catalog
    from evidence.keys import log_verifiers
    from onceonly.errors import VerificationFailed
    from sharing.extract_manifest import verify_extract
    from sharing.extracts import list_extracts

    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        with catalog.read() as conn:
            newest = {r.township: r for r in list_extracts(conn)}
    finally:
        catalog.dispose()
    verifiers = log_verifiers(settings)
    typer.echo(f"数据回流: {len(newest)} township(s), newest extracts in {settings.extracts_dir}")
    valid = []
    for record in newest.values():
        folder = settings.extracts_dir / record.path
        try:
            valid.append(verify_extract(folder, verifiers).summary)
        except VerificationFailed as exc:
            typer.secho(f"  INVALID: {exc}", fg="red")
    if valid:
        typer.echo(f"  {len(valid)} verified offline as a station would, e.g. VALID: {valid[0]}")
    typer.echo("  a station that has number N catches up with `onceonly extracts since N --township CODE`")


__all__ = ["app", "show_for_demo", "verify_extract_command"]
