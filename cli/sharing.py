"""The township side: ``onceonly skip-check`` and ``onceonly matters``.

Example::

    onceonly matters list
    onceonly skip-check --subject 120114199003071234 --matter hukou-move-after-marriage
    onceonly skip-check --subject ... --matter ... --record-use 120114001000

The subject's identifier is masked in everything printed (text and ``--json``), whatever the
matter. ``--record-use`` takes a 12-digit township code of the district's region list
(``contracts/regions``); any other is refused before anything is written.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

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
    from evidence.keys import log_verifiers
    from onceonly.errors import ConfigurationError
    from onceonly.privacy import mask_citizen_id
    from onceonly.settings import Settings
    from sharing.matters import load_matters
    from sharing.skipcheck import check_township, skip_check

    settings = Settings()
    catalogue = load_matters(settings.matters_file)
    chosen = catalogue.get(matter)  # names first: before the catalog, the key and the log
    if record_use_for is not None:
        check_township(record_use_for, settings.district_code)
    issued_by = certificate_datasets(settings.contracts_dir)
    try:  # answers are read from the log, not from catalog rows alone
        verifiers = log_verifiers(settings)
    except ConfigurationError:
        verifiers = []  # no log yet: nothing can be confirmed, so nothing is answered skippable
    catalog = Catalog.connect(settings.catalog_url, create=False)
    if record_use_for is None:
        with catalog.read() as conn:
            answer = skip_check(conn, chosen, subject, issued_by, verifiers=verifiers)
    else:
        from evidence.keys import open_key_store
        from evidence.log import TransparencyLog
        from evidence.merkle import tree_hash

        key = open_key_store(settings).load(settings.log_origin)
        log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
        with catalog.begin() as conn:
            answer = skip_check(
                conn,
                chosen,
                subject,
                issued_by,
                log=log,
                township=record_use_for,
                district=settings.district_code,
                verifiers=verifiers,
            )
    shown = mask_citizen_id(answer.subject) or ""  # whatever the matter: it may be a person's
    if as_json:
        typer.echo(json.dumps({**answer.to_json(), "subject": shown}, ensure_ascii=False, indent=2))
        return
    typer.secho(f"{answer.matter_name} ({answer.matter}) for {shown}", bold=True)
    for m in answer.materials:
        if m.skippable:
            typer.secho(f"  ✔ {m.material}: may be skipped — certificate {m.certificate_id}", fg="green")
        else:
            typer.secho(f"  ✘ {m.material}: required — {m.reason}", fg="yellow")


@matters_app.command("list")
def matters_list() -> None:
    """Matters in the catalogue and their materials."""
    from cli.console import console, table
    from onceonly.settings import Settings
    from sharing.matters import load_matters

    out = table("matter", "name", "department", "subject", "material", "accepted e-certificate types")
    for m in load_matters(Settings().matters_file).matters:
        for i, mat in enumerate(m.materials):
            first = i == 0
            out.add_row(
                m.code if first else "",
                m.name if first else "",
                m.department if first else "",
                m.subject if first else "",
                mat.name,
                ", ".join(mat.certificate_types) or "no e-certificate yet",
            )
    console().print(out)


__all__ = ["app", "matters_app"]
