"""``onceonly audit``: does what the product keeps agree with itself?

Example::

    onceonly audit          # exit 0: "CONSISTENT ..."; exit 1: each disagreement, one per line

Today it checks the lake against the catalog: every landed batch's accepted and quarantined
rows are in the lake, no more and no fewer, and nothing is left in staging (``lake.audit``).
``onceonly log verify`` checks the transparency log itself.
"""

from __future__ import annotations

import typer

app = typer.Typer()


@app.command("audit")
def audit() -> None:
    """Check the lake against the catalog: every landed batch's rows, nothing more, nothing staged."""
    from catalog import Catalog
    from lake.audit import audit_lake
    from lake.parquet import ParquetLake
    from onceonly.settings import Settings

    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        report = audit_lake(catalog, ParquetLake(settings.lake_dir))
    finally:
        catalog.dispose()
    summary = (
        f"lake {settings.lake_dir}: {report.batches:,} landed batches, {report.accepted_rows:,} accepted and "
        f"{report.quarantined_rows:,} quarantined rows in {report.files:,} files"
    )
    if report.ok:
        typer.secho(f"CONSISTENT: {summary}", fg="green")
        return
    for finding in report.findings:
        typer.secho(f"INCONSISTENT {finding}", fg="red")
    typer.secho(f"{len(report.findings)} disagreement(s); {summary}", fg="red", err=True)
    raise typer.Exit(1)


__all__ = ["app"]
