"""``onceonly certificates …`` and ``onceonly verify``: e-certificates, their lifecycle and bundles.

Example::

    onceonly certificates parse 1.2.156.3005.2.11100000000019342N001.111201140000000196.00000001.001.Q
    onceonly certificates list --subject 120114199003071234
    onceonly certificates suspend ID --reason "licence under investigation"
    onceonly certificates export ID -o bundle.json [--consistency-from old-checkpoint.txt]
    onceonly certificates export ID -o new.json --consistency-from "$(jq -r .checkpoint old.json)"
    onceonly verify bundle.json --trusted-key "$(cat var/keys/*.vkey)"
    onceonly verify bundle.json --keyring district-keyring.json   # rotations, compromised keys

``verify`` needs no database and no network: everything it checks is in the bundle. Heavy
modules (Prefect, Great Expectations) are never imported here.

``--consistency-from`` takes a checkpoint file or the checkpoint text itself; a checkpoint that
lost its final newline or gained one (``jq -r``, ``$(...)``, an editor) is read as written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onceonly.errors import ConfigurationError, VerificationFailed
from onceonly.privacy import mask_citizen_id, mask_name

if TYPE_CHECKING:
    from evidence.keys import Keyring
    from onceonly.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Issued e-certificates, their lifecycle and proof bundles.")

_REASON = Annotated[str, typer.Option("--reason", help="Why (recorded in the log; ID numbers are masked).")]
_CERT_ID = Annotated[
    str, typer.Argument(metavar="CERT_ID", help="A certificate identifier (1.2.156.3005.2....).")
]
_CHECKPOINT_HELP = (
    'A checkpoint seen before, as a file or as the text itself (e.g. "$(jq -r .checkpoint old.json)")'
)


def _settings() -> Settings:
    from onceonly.settings import Settings

    return Settings()


def status_dir(settings: Settings) -> Path:
    """Where published status lists lie for townships to fetch and cache (ONCEONLY_HOME/status)."""
    from evidence.status_list import status_directory

    return status_directory(settings.home)


# ------------------------------------------------------------------------------- read-only


@app.command("parse")
def certificates_parse(cert_id: _CERT_ID) -> None:
    """Validate a GB/T 36904 identifier and print its parts, or the first problem."""
    from evidence.identifier import CERTIFICATE_ID_PREFIX, CertificateId, InvalidCertificateId

    try:
        cid = CertificateId.parse(cert_id.strip())
    except InvalidCertificateId as exc:
        typer.secho(f"INVALID: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.secho(f"VALID: {cid}", fg="green")
    for label, value in (
        ("prefix", CERTIFICATE_ID_PREFIX.rstrip(".") + " (GB/T 36904 e-certificate arc)"),
        ("type code", cid.type_code),
        ("issuer USCC", cid.issuer_uscc),
        ("serial", f"{cid.serial:08d}"),
        ("version", f"{cid.version:03d}"),
        ("check", f"{cid.check} (ISO 7064 MOD 37,36)"),
    ):
        typer.echo(f"  {label:<12} {value}")


@app.command("list")
def certificates_list(
    subject: Annotated[str | None, typer.Option(help="Holder's citizen ID or USCC.")] = None,
    township: Annotated[str | None, typer.Option(help="12-digit township code.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Issued certificates, newest first, with their current status (holder ID numbers masked)."""
    from sqlalchemy import select

    from catalog import Catalog, certificates

    settings = _settings()
    c = certificates.c
    stmt = (
        select(
            c.cert_id,
            c.type_name,
            c.holder_name,
            c.holder_id,
            c.status,
            c.issue_date,
            c.valid_to,
            c.township,
            c.leaf_index,
        )
        .order_by(c.leaf_index.desc())
        .limit(limit)
    )
    if subject:
        stmt = stmt.where(c.holder_id == subject.strip().upper())
    if township:
        stmt = stmt.where(c.township == township)
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        rows = conn.execute(stmt).all()
    items = [
        {
            "id": r.cert_id,
            "type": r.type_name,
            "holder": mask_name(r.holder_name) if _is_person(r.holder_id) else r.holder_name,
            "holder_id": mask_citizen_id(r.holder_id) if _is_person(r.holder_id) else r.holder_id,
            "status": r.status,
            "issue_date": r.issue_date.isoformat(),
            "valid_to": r.valid_to.isoformat() if r.valid_to else None,
            "township": r.township,
            "leaf_index": r.leaf_index,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    if not items:
        typer.echo("no certificates found")
        return
    from cli.console import console, table

    out = table(
        "id", "type", "holder", "holder id", "status", "issued", "valid to", "leaf", right=frozenset({"leaf"})
    )
    for it in items:
        out.add_row(
            it["id"],
            it["type"],
            it["holder"] or "-",
            it["holder_id"] or "-",
            it["status"],
            it["issue_date"],
            it["valid_to"] or "-",
            str(it["leaf_index"]),
        )
    console().print(out)


def _is_person(holder_id: str) -> bool:
    from contracts.identifiers import is_valid_citizen_id

    return is_valid_citizen_id(holder_id)


@app.command("history")
def certificates_history(cert_id: _CERT_ID) -> None:
    """The lifecycle changes of a certificate, each with its log leaf."""
    from catalog import Catalog
    from evidence.lifecycle import history

    with Catalog.connect(_settings().catalog_url, create=False).read() as conn:
        changes = history(conn, cert_id)
    if not changes:
        typer.echo(f"{cert_id}: no lifecycle changes since issue")
    for c in changes:
        typer.echo(f"leaf {c.leaf_index}  {c.action:<8} {c.status_before} → {c.status_after}  {c.reason}")


@app.command("export")
def certificates_export(
    cert_id: _CERT_ID,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the bundle JSON.")],
    consistency_from: Annotated[
        str | None,
        typer.Option(
            "--consistency-from",
            metavar="CHECKPOINT",
            help=f"{_CHECKPOINT_HELP}: add a consistency proof from it.",
        ),
    ] = None,
) -> None:
    """Write a self-contained proof bundle: certificate, proofs, checkpoint, key, status list."""
    from catalog import Catalog
    from evidence.bundle import export_bundle

    settings = _settings()
    old = _checkpoint_given(consistency_from) if consistency_from is not None else None
    from evidence.keys import bundle_vkeys, log_verifiers

    log_verifiers(settings)  # no verifier key: say so before opening the catalog
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        bundle, status = export_bundle(conn, cert_id, bundle_vkeys(settings, conn), old_checkpoint=old)
    from onceonly.files import write_atomic

    # 600: the holder's bundle carries the certificate (name and ID number).
    write_atomic(output, json.dumps(bundle, ensure_ascii=False, indent=2) + "\n")
    size = bundle["checkpoint"].split("\n")[1]
    cosigned = _cosignature_count(bundle)
    also = f", cosigned by {cosigned} witness(es)" if cosigned else ""
    typer.echo(f"wrote {output} (leaf {bundle['leaf_index']} of a log of {size}{also})")
    if not cosigned and settings.witnesses:
        typer.secho(
            f"warning: the checkpoint of size {size} has no witness cosignature yet: run `onceonly witness "
            "submit`, then export again",
            fg="yellow",
            err=True,
        )
    if status != "有效":
        typer.secho(
            f"warning: this certificate is {status}; `onceonly verify` will say so (the bundle carries the "
            "status list that records it)",
            fg="yellow",
            err=True,
        )


def _cosignature_count(bundle: dict[str, Any]) -> int:
    """The checkpoint's signature lines beyond the log's own: the witnesses' cosignatures."""
    from evidence.note import split_note

    return len(split_note(bundle["checkpoint"])[1]) - 1


def _checkpoint_given(value: str) -> str:
    """``--consistency-from``: the checkpoint text itself (it has lines), else a file holding it."""
    if "\n" in value.strip("\n"):
        return value
    return _read_text(Path(value), "checkpoint")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc}") from exc


# ------------------------------------------------------------------------------- lifecycle


def _change(cert_id: str, action: str, reason: str) -> None:
    """One lifecycle change, and the issuer's status list republished in the same transaction."""
    from evidence.lifecycle import Lifecycle
    from evidence.status_list import publish_status_lists, write_status_files
    from flows.pipeline import pipeline_for

    pipeline = pipeline_for(_settings())
    with pipeline.catalog.begin() as conn:
        change = Lifecycle(pipeline.log).change(conn, cert_id, action, reason=reason)
        published = publish_status_lists(conn, pipeline.log, issuer=change.issuer_code)
    write_status_files(pipeline.catalog, status_dir(pipeline.settings))
    typer.secho(
        f"{cert_id}: {change.status_before} → {change.status_after} (log leaf {change.leaf_index}); "
        f"status list republished (leaf {published[0].leaf_index if published else '-'})",
        fg="green",
    )


@app.command("suspend")
def certificates_suspend(cert_id: _CERT_ID, reason: _REASON) -> None:
    """暂扣: suspend a certificate in force (reversible with restore)."""
    _change(cert_id, "suspend", reason)


@app.command("restore")
def certificates_restore(cert_id: _CERT_ID, reason: _REASON) -> None:
    """暂扣发还: put a suspended certificate back in force."""
    _change(cert_id, "restore", reason)


@app.command("revoke")
def certificates_revoke(
    cert_id: _CERT_ID,
    reason: _REASON,
    penalty: Annotated[
        bool, typer.Option("--penalty", help="吊销 (withdrawn as an administrative penalty) instead of 撤销.")
    ] = False,
) -> None:
    """撤销 (or 吊销 with --penalty): revoke a certificate for good."""
    _change(cert_id, "withdraw" if penalty else "revoke", reason)


@app.command("cancel")
def certificates_cancel(cert_id: _CERT_ID, reason: _REASON) -> None:
    """注销: cancel a certificate (the holder or the record is gone)."""
    _change(cert_id, "cancel", reason)


@app.command("publish-status")
def certificates_publish_status() -> None:
    """Sign, log and write every status list whose bits changed (the daily flow does this too)."""
    from evidence.status_list import publish_status_lists, write_status_files
    from flows.pipeline import pipeline_for

    pipeline = pipeline_for(_settings())
    with pipeline.catalog.begin() as conn:
        published = publish_status_lists(conn, pipeline.log)
    directory = status_dir(pipeline.settings)
    written = write_status_files(pipeline.catalog, directory)
    typer.echo(f"{len(published)} status list(s) republished; {len(written)} file(s) in {directory}")


# ------------------------------------------------------------------------------- verify


def verify(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="A proof bundle (`certificates export`).")],
    trusted_key: Annotated[str | None, typer.Option(help="Require this verifier key (vkey form).")] = None,
    consistency_from: Annotated[
        str | None,
        typer.Option(
            "--consistency-from",
            metavar="CHECKPOINT",
            help=f"{_CHECKPOINT_HELP}: the bundle's log must extend it.",
        ),
    ] = None,
    status_list: Annotated[
        Path | None,
        typer.Option(
            "--status-list",
            help="A status list file fetched since the bundle was made (ONCEONLY_HOME/status/...): "
            "it decides the state.",
        ),
    ] = None,
    keyring: Annotated[
        Path | None,
        typer.Option(
            "--keyring",
            help="The district's trusted keyring (`onceonly keys export-public --keyring`): the bundle's "
            "keys must be in it, and a key compromised at the signing time fails.",
        ),
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option(
            "--witness",
            metavar="VKEY",
            help="A witness's cosignature verifier key (c2sp.org/tlog-cosignature); repeatable: the "
            "checkpoint must carry its valid cosignature.",
        ),
    ] = None,
    min_witnesses: Annotated[
        int | None,
        typer.Option(
            "--min-witnesses", metavar="N", help="Cosignatures required of the --witness keys (default: all)."
        ),
    ] = None,
) -> None:
    """Verify a proof bundle offline: exit 0 and VALID, or non-zero naming what failed."""
    from evidence.bundle import verify_bundle

    if min_witnesses is not None and not 1 <= min_witnesses <= len(witness or []):
        raise typer.BadParameter(
            f"--min-witnesses {min_witnesses} needs between 1 and the {len(witness or [])} --witness "
            "key(s) given",
            param_hint="--min-witnesses",
        )

    data = _read_input(bundle, "bundle", as_json=True)
    old = None
    if consistency_from is not None:
        if "\n" in consistency_from.strip("\n"):
            old = consistency_from  # the checkpoint text itself, e.g. "$(jq -r .checkpoint old.json)"
        else:
            old = _read_input(Path(consistency_from), "older checkpoint", as_json=False)
    newer = _read_input(status_list, "status list", as_json=True) if status_list else None
    try:
        trusted = _read_keyring(keyring) if keyring else None
        v = verify_bundle(
            data,
            trusted_vkey=trusted_key,
            old_checkpoint=old,
            newer_status_list=newer,
            keyring=trusted,
            witnesses=witness or (),
            min_witnesses=min_witnesses,
        )
    except VerificationFailed as exc:
        typer.secho(f"INVALID: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.secho(
        f"VALID: certificate {v.certificate_id} (status {v.status}, per the status list published "
        f"{v.status_published}) is entry {v.leaf_index} of the log {v.origin} at size {v.tree_size}",
        fg="green",
    )
    if v.cosigned_by:
        typer.echo(f"the checkpoint is cosigned by witness(es) {', '.join(v.cosigned_by)}")
    for warning in v.warnings:
        typer.secho(f"warning: {warning}", fg="yellow", err=True)
    if v.consistent_from is not None:
        typer.echo(
            f"the log at size {v.tree_size} extends the checkpoint of size {v.consistent_from} you saw"
        )
    if trusted_key is None and keyring is None:
        typer.echo(
            "note: checked against the key carried in the bundle; pin the district's published key "
            "with --trusted-key '<vkey>' (or its keyring with --keyring FILE) so a bundle re-signed by "
            "someone else is refused",
            err=True,
        )


def _read_keyring(path: Path) -> Keyring:
    """A keyring file given to ``verify``: unreadable means exit 2, malformed means INVALID."""
    from evidence.keys import Keyring

    return Keyring.from_json(_read_input(path, "keyring", as_json=True))


def _read_input(path: Path, what: str, *, as_json: bool) -> Any:
    """A file given to ``verify``; unreadable means exit 2 naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if as_json else text
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        typer.secho(f"INVALID: cannot read the {what} {path}: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


__all__ = ["app", "status_dir", "verify"]
