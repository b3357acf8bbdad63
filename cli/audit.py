"""``onceonly audit``: does what the district stores agree with what its log commits to?

Example::

    onceonly audit          # exit 0: "CONSISTENT ..."; exit 1: each disagreement, one per line

The log itself (``log verify``), the checkpoints it records, every certificate row and its
status against the log's history, the quarantine rows, the lake's files and the township
extracts (``lake.audit``).
"""

from __future__ import annotations

import typer

app = typer.Typer()


@app.command("audit")
def audit() -> None:
    """Check the catalog, lake and extracts against the transparency log; name what differs."""
    from catalog import Catalog
    from evidence.keys import log_verifiers
    from lake.audit import audit as run_audit
    from lake.parquet import ParquetLake
    from onceonly.settings import Settings

    settings = Settings()
    verifiers = log_verifiers(settings)
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        report = run_audit(
            catalog, ParquetLake.of(settings), extracts_dir=settings.extracts_dir, verifiers=verifiers
        )
    finally:
        catalog.dispose()
    summary = (
        f"{report.leaves:,} log leaves under {report.checkpoints:,} checkpoints; {report.certificates:,} "
        f"certificates; {report.batches:,} landed batches with {report.accepted_rows:,} accepted rows in "
        f"{report.files:,} lake files; {report.quarantine_rows:,} quarantine rows; "
        f"{report.extracts:,} extracts"
    )
    for line in report.uncovered[:5]:
        typer.echo(f"not covered by the log: {line}", err=True)
    if len(report.uncovered) > 5:
        typer.echo(f"not covered by the log: … and {len(report.uncovered) - 5} more", err=True)
    if report.ok:
        typer.secho(f"CONSISTENT: {summary}", fg="green")
        return
    for finding in report.findings:
        typer.secho(f"INCONSISTENT {finding}", fg="red")
    typer.secho(f"{len(report.findings)} disagreement(s); checked {summary}", fg="red", err=True)
    raise typer.Exit(1)


__all__ = ["app"]
