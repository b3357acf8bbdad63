"""``onceonly contracts``: lint, show and diff data contracts.

Example::

    onceonly contracts check contracts/datasets/*.yaml      # exit 1 when a contract has a problem
    onceonly contracts show household                       # the compiled GX suite + Arrow schema
    onceonly contracts diff old/household.yaml contracts/datasets/household.yaml   # CI gate
    onceonly contracts impact /tmp/prev/contracts/datasets contracts/datasets      # CI gate

``check`` loads and compiles each file exactly as the pipeline does and prints every problem
with its file and line, including every code the contract holds (the certificate's issuer
USCC and type code, holder identity types, and the citizen IDs, USCCs, region codes and mobile
numbers it writes as examples or valid values), which would otherwise fail only at run time.
``diff`` prints each change as breaking or not and exits 1 when any is
breaking, so it can gate a pull request that edits a contract. ``impact`` follows each changed
contract downstream — connectors, certificate types, matters, 一件事 bundles, rule files,
townships — and exits 1 when any of them would break (``sharing.impact``); CI runs it against
the previous commit's contracts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from onceonly.errors import ContractError

app = typer.Typer(no_args_is_help=True, help="Data contracts (ODCS v3): lint, show, diff.")


def _load(path: Path) -> Any:
    from contracts.model import load_contract

    return load_contract(path)


@app.command("check")
def check(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Contract YAML files to lint.")],
) -> None:
    """Load and compile each contract, check every code it holds; print problems (file:line), exit 1."""
    from contracts.checks import load_region_codes
    from contracts.compiler import code_problems, compile_contract
    from onceonly.settings import Settings

    region_codes = frozenset(load_region_codes(Settings().district_code))
    failed = 0
    for path in files:
        try:
            compiled = compile_contract(_load(path))
            problems = code_problems(compiled.contract, region_codes)
        except ContractError as exc:
            problems = str(exc).splitlines()
        if problems:
            failed += 1
            typer.secho(f"FAIL {path}", fg="red", err=True)
            for line in problems:
                typer.echo(f"  {line}", err=True)
            continue
        errors = sum(r.severity == "error" for r in compiled.rules)
        typer.secho(
            f"ok   {path}: {compiled.ref}, {len(compiled.arrow_schema)} columns, "
            f"{len(compiled.rules)} rules ({errors} error, {len(compiled.rules) - errors} warning)",
            fg="green",
        )
    if failed:
        typer.secho(f"{failed} of {len(files)} contract(s) have problems", fg="red", err=True)
        raise typer.Exit(1)


@app.command("show")
def show(
    contract: Annotated[
        str, typer.Argument(metavar="CONTRACT", help="A contract id (in the contracts directory) or a file.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Print the compiled Great Expectations suite (rule, expectation, column, kwargs, severity)."""
    from contracts.compiler import compile_contract
    from contracts.model import contract_by_id

    path = Path(contract)
    loaded = _load(path) if path.suffix in (".yaml", ".yml") or path.exists() else None
    if loaded is None:
        from onceonly.settings import Settings

        loaded = contract_by_id(Settings().contracts_dir, contract)  # an unknown id fails here, fast
    compiled = compile_contract(loaded)
    suite = compiled.build_suite()  # Great Expectations is imported here, once the contract is known
    rows = []
    for expectation in suite.expectations:
        meta = expectation.meta or {}
        kwargs = dict(expectation.configuration.kwargs)
        rows.append(
            {
                "rule": meta["rule"],
                "expectation": expectation.expectation_type,
                "column": kwargs.pop("column", None),
                "kwargs": kwargs,
                "severity": meta["severity"],
                "description": meta.get("description"),
            }
        )
    schema = [{"name": f.name, "type": str(f.type)} for f in compiled.arrow_schema]
    if as_json:
        out = {"contract": compiled.ref, "suite": suite.name, "expectations": rows, "arrow_schema": schema}
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2, default=str))
        return
    from cli.console import console, table

    shown = console()
    suite_table = table(
        "rule", "expectation", "column", "kwargs", "severity", title=f"Great Expectations suite {suite.name}"
    )
    for row in rows:
        severity = row["severity"] if row["severity"] == "error" else f"[yellow]{row['severity']}[/yellow]"
        kwargs_text = json.dumps(row["kwargs"], ensure_ascii=False, default=str).replace("[", r"\[")
        suite_table.add_row(row["rule"], row["expectation"], row["column"], kwargs_text, severity)
    shown.print(suite_table)
    arrow = table("column", "type", title="Arrow schema")
    for field in schema:
        arrow.add_row(field["name"], field["type"])
    shown.print(arrow)


@app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(metavar="OLD", help="The contract as it was.")],
    new: Annotated[Path, typer.Argument(metavar="NEW", help="The contract as proposed.")],
) -> None:
    """Classify every change as breaking or not; exit 1 when any change is breaking."""
    from contracts.diff import diff_contracts

    changes = diff_contracts(_load(old), _load(new))
    if not changes:
        typer.echo("no changes that affect validation or consumers")
        return
    for change in changes:
        typer.secho(str(change), fg="red" if change.breaking else None)
    breaking = sum(c.breaking for c in changes)
    if breaking:
        typer.secho(f"{breaking} breaking change(s)", fg="red", err=True)
        raise typer.Exit(1)
    typer.secho("no breaking changes", fg="green")


@app.command("impact")
def impact(
    old: Annotated[
        Path, typer.Argument(metavar="OLD", help="The contracts as they were: a file or a folder.")
    ],
    new: Annotated[
        Path, typer.Argument(metavar="NEW", help="The contracts as proposed: a file or a folder.")
    ],
    tree: Annotated[
        Path,
        typer.Option(help="The checkout whose registrations, matters and rule files consume the contracts."),
    ] = Path("."),
    use_catalog: Annotated[
        bool | None,
        typer.Option(
            "--catalog/--no-catalog",
            help="Count the affected townships' certificates in the catalog (default: when there is one).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """What a contract change affects downstream; exit 1 when anything would break."""
    from sharing.impact import Consumers, contract_impact

    counts, extra, district = _catalog_counts(use_catalog)
    consumers = Consumers.of_tree(tree, extra_registrations=extra, district_code=district)
    report = contract_impact(old, new, consumers, township_counts=counts)
    if as_json:
        typer.echo(json.dumps([d.as_dict() for d in report.datasets], ensure_ascii=False, indent=2))
    else:
        _print_impact(report)
    if report.breaks:
        raise typer.Exit(1)


def _catalog_counts(use_catalog: bool | None) -> tuple[Any, list[Any], str]:
    """Townships' certificate counts from the catalog, and the connectors registered there."""
    from onceonly.settings import Settings

    settings = Settings()
    present = bool(settings.database_url) or (settings.home / "catalog.db").exists()
    if use_catalog is False or (use_catalog is None and not present):
        return None, [], settings.district_code
    from sqlalchemy import func, select

    from catalog import Catalog, certificates
    from connectors.registry import registered

    catalog = Catalog.connect(settings.catalog_url, create=False)
    extra = list(registered(catalog).values())

    def counts(types: list[str]) -> dict[str, int]:
        query = (
            select(certificates.c.township, func.count())
            .where(certificates.c.type_code.in_(types), certificates.c.township.is_not(None))
            .group_by(certificates.c.township)
        )
        with catalog.read() as conn:
            return {str(t): int(n) for t, n in conn.execute(query)}

    return counts, extra, settings.district_code


def _print_impact(report: Any) -> None:
    if not report.datasets:
        typer.echo("no contract changed")
        return
    for dataset in report.datasets:
        typer.secho(
            f"{dataset.dataset}: {dataset.before or '(new)'} -> {dataset.after or '(removed)'}",
            bold=True,
            fg="red" if dataset.breaks else None,
        )
        for change in dataset.changes:
            typer.echo(f"  {change}")
        for label, items in (
            ("connectors", dataset.connectors),
            ("certificate types", dataset.certificate_types),
            ("matters", dataset.matters),
            ("一件事 bundles", dataset.bundles),
            ("rules", dataset.rules),
            ("townships", dataset.townships),
        ):
            if items:
                typer.echo(f"  {label}:")
                for item in items:
                    typer.secho(f"    {item}", fg="red" if item.breaks else None)
    broken = sum(a.breaks for d in report.datasets for a in d.affected())
    if broken:
        typer.secho(f"{broken} consumer(s) would break", fg="red", err=True)
    else:
        typer.secho("nothing would break", fg="green")


__all__ = ["app"]
