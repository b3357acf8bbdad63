"""`onceonly log …`: verify the stored log, print inclusion and consistency proofs, check them offline.

Example::

    onceonly log verify                         # recompute everything; first inconsistency, exit 1
    onceonly log prove --leaf 7 > proof.json    # inclusion proof at the newest checkpoint
    onceonly log consistency --from 100 --to 250 > c.json
    onceonly log check-proof proof.json --trusted-key "$(cat district.vkey)"   # no database

The keys that sign checkpoints come from the key store's public keyring (rotated keys
included) under ``ONCEONLY_HOME``; ``--trusted-key`` (repeatable) replaces them, and
``--keyring FILE`` (as ``onceonly keys export-public --keyring`` writes it) does too. With a
keyring, ``log verify`` also reports every checkpoint signed by a key at or after the time the
keyring marks it compromised (or after it was retired), by the checkpoint's stored
``created_at``, and exits 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from onceonly.errors import EvidenceError, VerificationFailed

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from evidence.keys import Keyring
    from evidence.note import NoteVerifier
    from onceonly.settings import Settings

log_app = typer.Typer(
    help="The transparency log: verify it, prove inclusion and consistency.", no_args_is_help=True
)

TrustedKeys = Annotated[
    list[str] | None,
    typer.Option("--trusted-key", help="A verifier key (vkey form) that signs checkpoints; repeatable."),
]


def _public_keys(settings: Settings, trusted: list[str] | None) -> list[str]:
    """The vkeys to trust: the given ones, else the keyring's, else the single verifier key file."""
    from evidence.keys import KEYRING_FILE, Keyring, verifier_key_path

    if trusted:
        return list(trusted)
    keyring = settings.keys_dir / KEYRING_FILE
    if keyring.exists():
        return [record.vkey for record in Keyring.load(keyring).keys]
    vkey_file = verifier_key_path(settings.keys_dir, settings.log_origin)
    if vkey_file.exists():
        return [vkey_file.read_text(encoding="utf-8").strip()]
    raise EvidenceError(
        f"no log key under {settings.keys_dir} (is ONCEONLY_HOME right?); pass --trusted-key '<vkey>'"
    )


_SHOWN = 10


def _unusable(conn: Connection, keyring: Keyring) -> list[tuple[int, str]]:
    from evidence.log import unusable_checkpoints

    return unusable_checkpoints(conn, keyring)


def _settings() -> Settings:
    from onceonly.settings import Settings

    return Settings()


def _verifiers(vkeys: list[str]) -> list[NoteVerifier]:
    from evidence.note import parse_vkey

    try:
        return [parse_vkey(v) for v in vkeys]
    except VerificationFailed as exc:
        raise typer.BadParameter(f"trusted key: {exc}") from None


@log_app.command("verify")
def log_verify(
    trusted_key: TrustedKeys = None,
    keyring: Annotated[
        Path | None,
        typer.Option(
            "--keyring",
            help="A trusted keyring file (`onceonly keys export-public --keyring`): its keys verify the "
            "checkpoints and checkpoints signed by a compromised key at or after its date are reported.",
        ),
    ] = None,
) -> None:
    """Recompute the tree from the entries; check every leaf, node and signed checkpoint."""
    from catalog import Catalog
    from evidence.keys import KEYRING_FILE, Keyring
    from evidence.log import verify_log

    settings = _settings()
    ring: Keyring | None = None
    try:
        if keyring is not None:
            ring = Keyring.load(keyring)
        elif not trusted_key and (settings.keys_dir / KEYRING_FILE).exists():
            ring = Keyring.load(settings.keys_dir)
    except VerificationFailed as exc:
        raise typer.BadParameter(f"keyring: {exc}") from None
    if keyring is not None and ring is not None and not trusted_key:
        vkeys = [r.vkey for r in ring.keys]
    else:
        vkeys = _public_keys(settings, trusted_key)
    verifiers = _verifiers(vkeys)
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        try:
            report = verify_log(conn, verifiers)
        except VerificationFailed as exc:
            typer.secho(f"INCONSISTENT: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        unusable = _unusable(conn, ring) if ring is not None else []
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(report.kinds.items())) or "none"
    typer.secho(
        f"CONSISTENT: {report.tree_size} leaves ({kinds}), {report.nodes} interior nodes and "
        f"{report.checkpoints} signed checkpoints recomputed with {report.hash_alg}; "
        f"root {report.root_hash.hex()}",
        fg="green",
    )
    if unusable:
        for size, problem in unusable[:_SHOWN]:
            typer.secho(f"KEY NOT USABLE: checkpoint at size {size}: {problem}", fg="red", err=True)
        more = f" ({len(unusable) - _SHOWN} more not shown)" if len(unusable) > _SHOWN else ""
        typer.secho(
            f"{len(unusable)} checkpoint(s) signed by a key that was compromised or retired at the "
            f"time{more}; the tree itself is consistent",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)


# `-o FILE` of the commands that print a JSON document.
_Output = Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")]


def _newest_size(conn: Connection) -> int:
    """The tree size of the newest signed checkpoint (what a proof defaults to)."""
    from evidence.log import latest_checkpoint

    newest = latest_checkpoint(conn)
    if newest is None:
        raise EvidenceError("the transparency log is empty")
    return newest[0]


@log_app.command("prove")
def log_prove(
    leaf: Annotated[int, typer.Option("--leaf", help="Leaf index.")],
    size: Annotated[
        int | None, typer.Option("--size", help="Tree size (default: the newest checkpoint).")
    ] = None,
    output: _Output = None,
) -> None:
    """Print the inclusion proof of a leaf (JSON), checkable offline with `log check-proof`."""
    from catalog import Catalog
    from evidence.log import checkpoint_at, leaf_at, prove_inclusion, read_head, root_at
    from evidence.proofs import inclusion_document

    settings = _settings()
    keys = _public_keys(settings, None)
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        size = _newest_size(conn) if size is None else size
        found = leaf_at(conn, leaf)
        doc = inclusion_document(
            leaf_index=leaf,
            tree_size=size,
            leaf_hash=found.leaf_hash,
            proof=prove_inclusion(conn, leaf, size),
            root_hash=root_at(conn, size),
            hash_alg=read_head(conn).hasher.name,
            checkpoint=checkpoint_at(conn, size),
            public_keys=keys,
            kind=found.kind,
            ref=found.ref,
            entry=found.entry,
        )
    _emit(doc, output)


@log_app.command("consistency")
def log_consistency(
    old: Annotated[int, typer.Option("--from", help="The older tree size.")],
    new: Annotated[
        int | None, typer.Option("--to", help="The newer tree size (default: newest checkpoint).")
    ] = None,
    output: _Output = None,
) -> None:
    """Print the consistency proof between two tree sizes (JSON), checkable offline."""
    from catalog import Catalog
    from evidence.log import checkpoint_at, prove_consistency, read_head, root_at
    from evidence.proofs import consistency_document

    settings = _settings()
    keys = _public_keys(settings, None)
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        new = _newest_size(conn) if new is None else new
        doc = consistency_document(
            old_size=old,
            new_size=new,
            proof=prove_consistency(conn, old, new),
            old_root=root_at(conn, old) if old <= new else b"",
            new_root=root_at(conn, new),
            hash_alg=read_head(conn).hasher.name,
            old_checkpoint=checkpoint_at(conn, old),
            new_checkpoint=checkpoint_at(conn, new),
            public_keys=keys,
        )
    _emit(doc, output)


@log_app.command("check-proof")
def log_check_proof(
    proof_file: Annotated[
        Path, typer.Argument(metavar="PROOF_FILE", help="A proof (`log prove`, `log consistency`).")
    ],
    trusted_key: TrustedKeys = None,
) -> None:
    """Check an inclusion or consistency proof file offline: exit 0 and VALID, or non-zero."""
    from evidence.proofs import verify_proof_document

    try:
        doc = json.loads(proof_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        typer.secho(f"INVALID: cannot read {proof_file} as a JSON proof: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    try:
        trusted = _verifiers(trusted_key) if trusted_key else []
        checked = verify_proof_document(doc, trusted=trusted)
    except VerificationFailed as exc:
        typer.secho(f"INVALID: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.secho(f"VALID: {checked.summary}" + ("" if checked.signed else " (unsigned root)"), fg="green")
    for warning in checked.warnings:
        typer.echo(f"note: {warning}", err=True)


def _emit(doc: dict[str, object], output: Path | None) -> None:
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        from onceonly.files import write_atomic

        write_atomic(output, text)  # 600: an inclusion proof carries its leaf's entry
        typer.echo(f"wrote {output}", err=True)


__all__ = ["log_app"]
