"""``onceonly catalog``: the catalog's schema revision, and upgrading a catalog to this version's.

Example (from a shell)::

    onceonly catalog version        # the catalog's revision and the one this OnceOnly needs
    onceonly catalog upgrade        # back the catalog up first; a second run has nothing to do

Both open ``ONCEONLY_DATABASE_URL``, else the SQLite catalog under ``ONCEONLY_HOME``; neither
creates a catalog that is not there. ``version`` exits 1 when the catalog is not at the
revision this version needs (``upgrade`` then brings it there).
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="The catalog's schema revision and its upgrade.")


@app.command("version")
def version() -> None:
    """The catalog's schema revision and the one this version of OnceOnly needs."""
    from catalog import Catalog
    from onceonly.settings import Settings

    url = Settings().catalog_url
    found = Catalog.revision(url)
    typer.echo(f"catalog:       {_where(url)}")
    if found.found is None:
        typer.echo("revision:      none (the database holds no catalog; a first run creates one)")
    elif found.recorded:
        typer.echo(f"revision:      {found.found}")
    else:
        typer.echo(f"revision:      {found.found} (by its tables; none recorded before revisions)")
    typer.echo(f"this OnceOnly: {found.needed}")
    if found.current:
        typer.echo("up to date")
        return
    if found.found is not None:
        typer.echo("run `onceonly catalog upgrade` (back the catalog up first)")
    raise typer.Exit(1)


@app.command("upgrade")
def upgrade() -> None:
    """Upgrade the catalog to this version's schema revision (back it up first)."""
    from catalog import Catalog
    from onceonly.settings import Settings

    url = Settings().catalog_url
    before = Catalog.upgrade(url)
    if before.current:
        typer.echo(f"{_where(url)}: already at revision {before.needed}")
        return
    recorded = "" if before.recorded else " (recorded now: the release before schema revisions had none)"
    typer.echo(f"{_where(url)}: upgraded from revision {before.found}{recorded} to {before.needed}")


def _where(url: str) -> str:
    """The catalog's URL without its password."""
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


__all__ = ["app"]
