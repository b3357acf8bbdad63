"""The township side: ``onceonly skip-check`` and ``onceonly matters``.

Example::

    onceonly matters list
    onceonly skip-check --subject 120114199003071234 --matter hukou-move-after-marriage
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from onceonly.settings import Settings

app = typer.Typer()
matters_app = typer.Typer(no_args_is_help=True, help="The matters catalogue.")
app.add_typer(matters_app, name="matters")


@app.command("skip-check")
def skip_check_command(
    subject: Annotated[str, typer.Option(help="Citizen ID number or USCC of the applicant.")],
    matter: Annotated[str, typer.Option(help="Matter code (see `onceonly matters list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    record_use_for: Annotated[
        str | None,
        typer.Option(
            "--record-use",
            metavar="TOWNSHIP",
            help="Record each skipped material as a use of shared data by this township in the log.",
        ),
    ] = None,
) -> None:
    """For this subject and matter: which materials may be skipped, with the certificate or reason."""
    from catalog import Catalog
    from contracts.model import certificate_datasets
    from sharing.matters import load_matters
    from sharing.skipcheck import skip_check

    settings = Settings()
    catalogue = load_matters(settings.matters_file)
    issued_by = certificate_datasets(settings.contracts_dir)
    catalog = Catalog.connect(settings.catalog_url, create=False)
    if record_use_for is None:
        with catalog.read() as conn:
            answer = skip_check(conn, catalogue.get(matter), subject, issued_by)
    else:
        from evidence.keys import open_key_store
        from evidence.log import TransparencyLog
        from evidence.merkle import tree_hash

        key = open_key_store(settings).load(settings.log_origin)
        log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
        with catalog.begin() as conn:
            answer = skip_check(
                conn, catalogue.get(matter), subject, issued_by, log=log, township=record_use_for
            )
    if as_json:
        typer.echo(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
        return
    typer.secho(f"{answer.matter_name} ({answer.matter}) for {answer.subject}", bold=True)
    for m in answer.materials:
        if m.skippable:
            typer.secho(f"  ✔ {m.material}: may be skipped — certificate {m.certificate_id}", fg="green")
        else:
            typer.secho(f"  ✘ {m.material}: required — {m.reason}", fg="yellow")


@matters_app.command("list")
def matters_list() -> None:
    """Matters in the catalogue and their materials."""
    from sharing.matters import load_matters

    for m in load_matters(Settings().matters_file).matters:
        typer.echo(f"{m.code:<36}{m.name}  [{m.department}]")
        for mat in m.materials:
            types = ", ".join(mat.certificate_types) or "no e-certificate yet"
            typer.echo(f"    - {mat.name}: {types}")


__all__ = ["app", "matters_app"]
