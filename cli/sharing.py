"""The township side: ``onceonly skip-check`` and ``onceonly matters``.

Example::

    onceonly matters list
    onceonly matters show newborn          # a matter or a 一件事 bundle
    onceonly matters check [FILE]
    onceonly skip-check --subject 120114199003071234 --matter hukou-move-after-marriage
    onceonly skip-check --subject ... --matter ... --record-use 120114001000

The subject's identifier is masked in everything printed (text and ``--json``), whatever the
matter. ``--record-use`` takes a 12-digit township code of the district's region list
(``contracts/regions``); any other is refused before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer()
matters_app = typer.Typer(no_args_is_help=True, help="The matters catalogue.")
app.add_typer(matters_app, name="matters")


@app.command("skip-check")
def skip_check_command(
    subject: Annotated[str, typer.Option(help="Citizen ID number or USCC of the applicant.")],
    matter: Annotated[str, typer.Option(help="Matter or 一件事 bundle code (see `onceonly matters list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    record_use_for: Annotated[
        str | None,
        typer.Option(
            "--record-use",
            metavar="TOWNSHIP",
            help="Record each skipped material as a use of shared data by this township in the log.",
        ),
    ] = None,
    as_of: Annotated[
        int | None,
        typer.Option(
            "--as-of",
            metavar="CHECKPOINT",
            help="Answer as the counter would have at this past checkpoint (its tree size), with a "
            "consistency proof to today's.",
        ),
    ] = None,
    child: Annotated[
        str | None,
        typer.Option(
            "--child",
            metavar="ID",
            help="The child's ID number, when the matter needs a child's materials and the applicant "
            "has several children.",
        ),
    ] = None,
) -> None:
    """For this subject and matter (or bundle): which materials may be skipped (可免交), and why not."""
    from catalog import Catalog
    from evidence.keys import log_verifiers
    from onceonly.errors import ConfigurationError
    from onceonly.privacy import mask_citizen_id
    from onceonly.settings import Settings
    from sharing.matters import RELATION_NAMES
    from sharing.skipcheck import IN_FORCE, check_township, skip_check

    settings = Settings()
    catalogue, issued_by = _catalogue(settings)
    asked = catalogue.asked(matter)  # names first: before the catalog, the key and the log
    if record_use_for is not None:
        if as_of is not None:
            raise ConfigurationError(
                "--as-of answers from the log as it was: it records no use (drop --record-use)"
            )
        check_township(record_use_for, settings.district_code)
    try:  # answers are read from the log, not from catalog rows alone
        verifiers = log_verifiers(settings)
    except ConfigurationError:
        verifiers = []  # no log yet: nothing can be confirmed, so nothing is answered skippable
    relatives = catalogue.relatives
    named = {"child": child.strip().upper()} if child else None
    catalog = Catalog.connect(settings.catalog_url, create=False)
    past: dict[str, Any] | None = None
    if as_of is not None:
        with catalog.read() as conn:
            day, past = _as_of(conn, as_of, verifiers)
            answer = skip_check(
                conn,
                asked,
                subject,
                issued_by,
                today=day,
                verifiers=verifiers,
                relatives=relatives,
                named=named,
                as_of=as_of,
            )
    elif record_use_for is None:
        with catalog.read() as conn:
            answer = skip_check(
                conn, asked, subject, issued_by, verifiers=verifiers, relatives=relatives, named=named
            )
    else:
        from evidence.keys import open_key_store
        from evidence.log import TransparencyLog
        from evidence.merkle import tree_hash

        key = open_key_store(settings).load(settings.log_origin)
        log = TransparencyLog(key, settings.log_origin, hasher=tree_hash(settings.log_hash))
        with catalog.begin() as conn:
            answer = skip_check(
                conn,
                asked,
                subject,
                issued_by,
                log=log,
                township=record_use_for,
                district=settings.district_code,
                verifiers=verifiers,
                relatives=relatives,
                named=named,
            )
    shown = mask_citizen_id(answer.subject) or ""  # whatever the matter: it may be a person's
    if as_json:
        extra = {"as_of": past} if past is not None else {}
        typer.echo(json.dumps({**answer.to_json(), "subject": shown, **extra}, ensure_ascii=False, indent=2))
        return
    if past is not None:
        typer.secho(
            f"as of checkpoint {past['size']} ({past['day']}), consistent with today's checkpoint "
            f"{past['today_size']} (consistency proof of {len(past['consistency_proof'])} hashes verified)",
            bold=True,
        )
    kind = "一件事" if answer.bundle else "事项"
    typer.secho(f"{kind}：{answer.matter_name}（{answer.matter}）  申请人：{shown}", bold=True)
    for m in answer.materials:
        whose = f"（{RELATION_NAMES[m.holder]} {m.holder_shown or ''}）".replace(" ）", "）")
        whose = whose if m.holder != "applicant" else ""
        if m.skippable:
            # A reused material (历史材料免交) says when and for what it was handed in.
            why = "" if m.reason == IN_FORCE else f"（{m.reason}）"
            dates = (
                f"，有效期 {m.valid_from or '—'} 至 {m.valid_to or '长期'}" if m.holder == "applicant" else ""
            )
            facts = f"，{m.status}{dates}" if m.status else ""  # a relative's: the state only
            typer.secho(
                f"  ✔ {m.material}{whose}: {m.verdict} — 证照 {m.certificate_id}{why}{facts}", fg="green"
            )
        else:
            typer.secho(f"  ✘ {m.material}{whose}: {m.verdict} — {m.reason}", fg="yellow")


def _as_of(conn: Any, size: int, verifiers: Any) -> tuple[Any, dict[str, Any]]:
    """The day of the checkpoint of ``size`` (Asia/Shanghai) and its consistency with today's."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from catalog import checkpoints
    from evidence.log import latest_checkpoint, logged_time_before, prove_consistency, read_head
    from evidence.merkle import verify_consistency
    from evidence.note import Checkpoint, open_note
    from onceonly.errors import ConfigurationError

    row = conn.execute(select(checkpoints.c.note).where(checkpoints.c.tree_size == size)).first()
    if row is None:
        sizes = (
            conn.execute(select(checkpoints.c.tree_size).order_by(checkpoints.c.tree_size)).scalars().all()
        )
        near = ", ".join(str(s) for s in sizes[-5:]) or "none"
        raise ConfigurationError(f"the log signed no checkpoint of size {size} (the newest: {near})")
    if not verifiers:
        raise ConfigurationError("--as-of needs the log's verifier keys: is ONCEONLY_HOME right?")
    head = latest_checkpoint(conn)
    assert head is not None
    old = Checkpoint.parse(open_note(str(row.note), list(verifiers)))
    new = Checkpoint.parse(open_note(head[1], list(verifiers)))
    proof = prove_consistency(conn, size, new.size)
    verify_consistency(size, new.size, proof, old.root_hash, new.root_hash, hasher=read_head(conn).hasher)
    # The day of the answer: the newest time the log itself recorded before that checkpoint
    # (the checkpoint row's created_at is covered by nothing).
    logged = logged_time_before(conn, size)
    if logged is None:
        raise ConfigurationError(f"the log recorded no time before size {size}: nothing to answer as of then")
    day = logged.astimezone(ZoneInfo("Asia/Shanghai")).date()
    return day, {
        "size": size,
        "day": day.isoformat(),
        "checkpoint": str(row.note),
        "today_size": new.size,
        "today_checkpoint": head[1],
        "consistency_proof": [h.hex() for h in proof],
    }


def _catalogue(settings: Any) -> tuple[Any, dict[str, str]]:
    """The matters catalogue, validated against the certificate types the contracts issue."""
    from contracts.model import certificate_datasets
    from sharing.matters import load_matters

    issued_by = certificate_datasets(settings.contracts_dir)
    return load_matters(settings.matters_file, known_types=issued_by), issued_by


@matters_app.command("list")
def matters_list() -> None:
    """Matters and 一件事 bundles in the catalogue, with their materials."""
    from cli.console import console, table
    from onceonly.settings import Settings
    from sharing.matters import RELATION_NAMES

    catalogue, _ = _catalogue(Settings())
    out = table(
        "matter", "name", "department", "subject", "material", "whose", "accepted e-certificate types"
    )
    for m in catalogue.matters:
        for i, mat in enumerate(m.materials):
            first = i == 0
            out.add_row(
                m.code if first else "",
                m.name if first else "",
                m.department if first else "",
                m.subject if first else "",
                mat.name,
                RELATION_NAMES[mat.holder],
                ", ".join(mat.certificate_types) or "no e-certificate yet",
            )
    console().print(out)
    bundles = table("一件事 bundle", "name", "matters")
    for b in catalogue.bundles:
        bundles.add_row(b.code, b.name, ", ".join(b.matters))
    console().print(bundles)


@matters_app.command("show")
def matters_show(code: Annotated[str, typer.Argument(help="Matter or 一件事 bundle code.")]) -> None:
    """One matter or bundle: each material once, whose certificate, which types, and why."""
    from onceonly.settings import Settings
    from sharing.matters import RELATION_NAMES

    settings = Settings()
    catalogue, issued_by = _catalogue(settings)
    asked = catalogue.asked(code)
    kind = "一件事" if asked.bundle else "事项"
    applicant = "个人" if asked.subject == "person" else "企业"
    typer.secho(f"{kind}：{asked.name}（{asked.code}），申请人：{applicant}", bold=True)
    if asked.bundle:
        typer.echo("  包含事项：" + "、".join(catalogue.get(c).name for c in catalogue.bundle(code).matters))
    else:
        typer.echo(f"  办理部门：{catalogue.get(code).department}")
    for material, needed_by in zip(asked.materials, asked.needed_by, strict=True):
        types = (
            ", ".join(f"{t} ({issued_by[t]})" for t in material.certificate_types) or "no e-certificate yet"
        )
        typer.echo(f"  - {material.name} [{RELATION_NAMES[material.holder]}]: {types}")
        if material.note:
            typer.echo(f"      {material.note}")
        if material.reused and catalogue.reused_materials:
            kinds = "、".join(catalogue.reused_materials.kinds[k] for k in material.reused)
            typer.echo(f"      可复用历史材料：{kinds}")
        if asked.bundle:
            typer.echo(f"      needed by: {', '.join(needed_by)}")


@matters_app.command("check")
def matters_check(
    path: Annotated[
        Path | None, typer.Argument(help="Catalogue file (default: the configured one).", show_default=False)
    ] = None,
) -> None:
    """Validate a matters catalogue: exit 1 naming the file and line of each problem."""
    from contracts.model import certificate_datasets
    from onceonly.settings import Settings
    from sharing.matters import load_matters

    settings = Settings()
    path = path or settings.matters_file
    catalogue = load_matters(path, known_types=certificate_datasets(settings.contracts_dir))
    materials = sum(len(m.materials) for m in catalogue.matters)
    typer.echo(
        f"OK: {path}: {len(catalogue.matters)} matters, {len(catalogue.bundles)} 一件事 bundles, "
        f"{materials} materials"
    )


__all__ = ["app", "matters_app"]
