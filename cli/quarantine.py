"""``onceonly quarantine``: what the contracts kept back, and what each department must fix.

Example::

    onceonly quarantine list --dataset household --status open
    onceonly quarantine show 17
    onceonly quarantine report --department 公安 --output gongan-fixes.csv

On screen and in ``--json``, source keys are masked by the contract's classification of their
key columns (restricted, confidential, secret: ``lake.quarantine.masked_source_key``), and any
citizen ID number left in a value is masked too. ``report --output`` writes the department's own
source keys in clear (mode 600), so the department can find the rows to correct in its system;
send that file to that department only; a key a spreadsheet would run as a formula (``=…``,
``+…``, ``@…``) is written there with a leading ``'`` (``onceonly.cells``). Departments are
those of the connectors registered in the catalog (``onceonly connectors register``), removed
connectors included.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onceonly.privacy import scrub_text

if TYPE_CHECKING:
    pass

app = typer.Typer(no_args_is_help=True, help="Rows kept back by the data contracts, and what to fix.")


def _catalog() -> Any:
    from catalog import Catalog
    from onceonly.settings import Settings

    return Catalog.connect(Settings().catalog_url, create=False)


class _Keys:
    """Source keys for screens, masked by the classification of each dataset's contract."""

    def __init__(self) -> None:
        from onceonly.settings import Settings

        self.contracts_dir = Settings().contracts_dir
        self._compiled: dict[str, Any] = {}

    def compiled(self, dataset: str) -> Any:
        from contracts.compiler import compile_contract
        from contracts.model import contract_by_id
        from onceonly.errors import ContractError

        if dataset not in self._compiled:
            try:
                self._compiled[dataset] = compile_contract(contract_by_id(self.contracts_dir, dataset))
            except ContractError:  # no contract to read the classification from: mask every part
                self._compiled[dataset] = None
        return self._compiled[dataset]

    def shown(self, dataset: str, record_key: str | None) -> str:
        from lake.quarantine import masked_source_key

        return masked_source_key(record_key, self.compiled(dataset)) or "-"


def _value(value: str | None) -> str | None:
    """A quarantined value: masked by the validator; a citizen ID left in it masked here."""
    return None if value is None else scrub_text(value)


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


@app.command("list")
def list_command(
    dataset: Annotated[str | None, typer.Option(help="Only this dataset (contract id).")] = None,
    status: Annotated[str, typer.Option(help="open | resolved | all")] = "open",
    limit: Annotated[int, typer.Option(help="At most this many entries, newest first (0: all).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Quarantine entries (one per row and broken rule), newest first."""
    from lake.quarantine import list_entries

    if status not in ("open", "resolved", "all"):
        raise typer.BadParameter(f"--status must be open, resolved or all, not {status!r}")
    with _catalog().read() as conn:
        entries = list_entries(conn, dataset=dataset, status=status, limit=limit or None)  # type: ignore[arg-type]
    keys = _Keys()
    items: list[dict[str, Any]] = [
        {
            "id": e.id,
            "dataset": e.dataset,
            "connector": e.connector,
            "rule": e.rule,
            "severity": e.severity,
            "source_key": keys.shown(e.dataset, e.record_key),
            "value": _value(e.value_masked),
            "status": e.status,
            "detected_at": _when(e.detected_at),
        }
        for e in entries
    ]
    if as_json:
        typer.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    if not items:
        typer.echo(f"no {status} quarantine entries" + (f" for dataset {dataset}" if dataset else ""))
        return
    from cli.console import console
    from cli.console import table as new_table

    table = new_table(
        "id",
        "dataset",
        "connector",
        "rule",
        "severity",
        "source key",
        "value (masked)",
        "status",
        right=frozenset({"id"}),
    )
    for it in items:
        table.add_row(
            str(it["id"]),
            it["dataset"],
            it["connector"] or "-",
            it["rule"],
            it["severity"],
            it["source_key"],
            it["value"] if it["value"] is not None else "(empty)",
            it["status"],
        )
    console().print(table)


@app.command("show")
def show_command(entry_id: int) -> None:
    """One quarantine entry: dataset, batch, contract, rule, masked value, when, resolution."""
    from lake.quarantine import get_entry

    with _catalog().read() as conn:
        e = get_entry(conn, entry_id)
    batch = e.batch_id + (
        "  (refused: error rate above the contract's maxErrorRate)" if e.batch_refused else ""
    )
    fields = [
        ("id", str(e.id)),
        ("status", e.status),
        ("dataset", e.dataset),
        ("connector", e.connector or "-"),
        ("contract", f"{e.contract_id} version {e.contract_version}"),
        ("batch", batch),
        ("rule", f"{e.rule} ({e.severity})"),
        ("column", e.column or "-"),
        ("value (masked)", _value(e.value_masked) if e.value_masked is not None else "(empty)"),
        ("source key", _Keys().shown(e.dataset, e.record_key)),
        ("detected", _when(e.detected_at)),
        (
            "resolved",
            _when(e.resolved_at) + (f" by batch {e.resolved_by_batch}" if e.resolved_by_batch else ""),
        ),
    ]
    for label, value in fields:
        typer.echo(f"{label:<15} {value}")


@app.command("report")
def report_command(
    department: Annotated[
        str | None, typer.Option(help="A department (or part of its name, or a connector name).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write a CSV with the source keys in clear.")
    ] = None,
) -> None:
    """Per department, what to fix at the source: rule, rows, masked examples, source keys."""
    from lake.quarantine import department_report

    with _catalog().read() as conn:
        reports = department_report(conn, department=department)
    masks = _Keys()
    if not reports:
        typer.echo(
            "nothing to fix: no open quarantine entries" + (f" for {department}" if department else "")
        )
    for report in reports:
        typer.secho(f"{report.department}: {report.rows} row(s) to correct at the source", bold=True)
        for r in report.rules:
            removed = " (connector removed since)" if r.connector_removed else ""
            typer.echo(
                f"  {r.rule} [{r.severity}]  {r.rows} row(s)  "
                f"dataset {r.dataset} ({r.contract}), via {r.connector}{removed}"
            )
            if r.examples:
                typer.echo(f"    examples (masked): {', '.join(scrub_text(x) for x in r.examples)}")
            keys = [masks.shown(r.dataset, k) for k in r.source_keys[:10]]
            more = f" … and {len(r.source_keys) - 10} more" if len(r.source_keys) > 10 else ""
            typer.echo(f"    source keys: {', '.join(keys)}{more}")
    if output is not None:
        _write_csv(output, reports)
        typer.echo(f"written {output} (source keys in clear: for the department concerned only)")


def _write_csv(path: Path, reports: list[Any]) -> None:
    from onceonly.cells import spreadsheet_row
    from onceonly.files import write_atomic

    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["department", "connector", "dataset", "contract", "rule", "severity", "source_key"])
    for report in reports:
        for r in report.rules:
            for key in r.source_keys:
                # The source keys are the department's data, opened in Excel or WPS: a key that
                # starts a formula is written as text (onceonly.cells; CWE-1236).
                writer.writerow(
                    spreadsheet_row(
                        [report.department, r.connector, r.dataset, r.contract, r.rule, r.severity, key]
                    )
                )
    # utf-8-sig: Excel reads the Chinese; mode 600: the keys are in clear.
    write_atomic(path, text.getvalue().encode("utf-8-sig"))


__all__ = ["app"]
