"""`onceonly log …`: verify the stored log, print inclusion and consistency proofs, check them offline.

Example::

    onceonly log verify                         # recompute everything; first inconsistency, exit 1
    onceonly log prove --leaf 7 > proof.json    # inclusion proof at the newest checkpoint
    onceonly log consistency --from 100 --to 250 > c.json
    onceonly log check-proof proof.json --trusted-key "$(cat district.vkey)"   # no database
    onceonly log publish public/log            # checkpoint + C2SP tlog-tiles, incrementally
    onceonly log check-proof --tiles https://example.org/log --leaf 7 --trusted-key "$(cat …)"

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
    help="The transparency log: verify it, prove inclusion and consistency, publish it as tiles.",
    no_args_is_help=True,
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
        Path | None,
        typer.Argument(metavar="PROOF_FILE", help="A proof (`log prove`, `log consistency`)."),
    ] = None,
    trusted_key: TrustedKeys = None,
    tiles: Annotated[
        str | None,
        typer.Option(
            "--tiles",
            metavar="DIR_OR_URL",
            help="Check the log published there (`log publish`: C2SP tlog-tiles) instead of a proof file: "
            "its signed checkpoint and the root its tiles give.",
        ),
    ] = None,
    leaf: Annotated[
        int | None, typer.Option("--leaf", help="With --tiles: prove this leaf's entry is in the log.")
    ] = None,
    consistency_from: Annotated[
        Path | None,
        typer.Option(
            "--consistency-from",
            metavar="CHECKPOINT",
            help="With --tiles: a checkpoint saved earlier; prove the published log extends it.",
        ),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="With --tiles: recompute every published entry and tile.")
    ] = False,
) -> None:
    """Check an inclusion or consistency proof file, or a published log, offline: exit 0 and
    VALID, or non-zero."""
    if (proof_file is None) == (tiles is None):
        raise typer.BadParameter("give a PROOF_FILE or --tiles DIR_OR_URL (one of them)")
    if tiles is None and (leaf is not None or consistency_from is not None or everything):
        raise typer.BadParameter("--leaf, --consistency-from and --all check a log published with --tiles")
    if tiles is not None:
        _check_tiles(tiles, trusted_key, leaf, consistency_from, everything)
        return
    from evidence.proofs import verify_proof_document

    assert proof_file is not None
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


def _check_tiles(
    where: str, trusted_key: list[str] | None, leaf: int | None, old: Path | None, everything: bool
) -> None:
    """`check-proof --tiles`: the checkpoint's signature, the root from the tiles, then what was asked."""
    import contextlib

    from evidence.note import Checkpoint, note_as_given, open_note
    from evidence.tiles import folder_fetch, http_fetch, open_tiles

    verifiers = _verifiers(list(trusted_key) if trusted_key else _public_keys(_settings(), None))
    old_checkpoint: Checkpoint | None = None
    if old is not None:
        try:
            old_checkpoint = Checkpoint.parse(
                open_note(note_as_given(old.read_text(encoding="utf-8")), verifiers)
            )
        except (OSError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(f"--consistency-from: cannot read {old}: {exc}") from None
        except VerificationFailed as exc:
            typer.secho(f"INVALID: the old checkpoint {old}: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
    with contextlib.ExitStack() as stack:
        if where.startswith(("http://", "https://")):
            import httpx

            client = stack.enter_context(httpx.Client(timeout=30, follow_redirects=True))
            fetch = http_fetch(where, client)
        else:
            fetch = folder_fetch(Path(where))
        try:
            published = open_tiles(fetch, verifiers)
            found = published.verify_root()
            said = [
                f"the tiles at {where} give the root of the signed checkpoint of "
                f"{published.checkpoint.origin} at size {published.size}: {found.hex()}"
            ]
            if leaf is not None:
                entry = published.check_leaf(leaf)
                said.append(
                    f"leaf {leaf} is in the log at size {published.size} (its entry: {len(entry)} bytes)"
                )
            if old_checkpoint is not None:
                published.check_consistency(old_checkpoint)
                said.append(
                    f"the log at size {published.size} extends the checkpoint of size {old_checkpoint.size}"
                )
            if everything:
                published.check_all()
                said.append(f"every entry and tile of the {published.size} leaves recomputed")
        except VerificationFailed as exc:
            typer.secho(f"INVALID: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        except (EvidenceError, OSError) as exc:
            typer.secho(f"INVALID: cannot read the log at {where}: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
    for line in said:
        typer.secho(f"VALID: {line}", fg="green")


@log_app.command("publish")
def log_publish(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", help="The folder to publish to (made if missing); a web server serves it as is."
        ),
    ],
) -> None:
    """Write the newest checkpoint, hash tiles and entry bundles as C2SP tlog-tiles static files."""
    from catalog import Catalog
    from evidence.tiles import publish

    settings = _settings()
    with Catalog.connect(settings.catalog_url, create=False).read() as conn:
        published = publish(conn, directory)
    if published is None:
        typer.echo("nothing to publish: the log has no checkpoint yet")
        return
    if not (published.tiles or published.bundles or published.removed or published.checkpoint_written):
        typer.echo(f"{directory}: already published at size {published.tree_size}; nothing new")
        return
    grown = (
        f"size {published.previous_size} → {published.tree_size}"
        if published.previous_size
        else f"size {published.tree_size}"
    )
    typer.echo(
        f"published {grown} to {directory}: {published.tiles} hash tiles, {published.bundles} entry bundles"
        f"{', checkpoint' if published.checkpoint_written else ''}"
        f"{f'; {published.removed} superseded partial files removed' if published.removed else ''}; "
        f"root {published.root_hash.hex()}"
    )


def _emit(doc: dict[str, object], output: Path | None) -> None:
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        from onceonly.files import write_atomic

        write_atomic(output, text)  # 600: an inclusion proof carries its leaf's entry
        typer.echo(f"wrote {output}", err=True)


__all__ = ["log_app"]
