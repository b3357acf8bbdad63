"""``onceonly keys``: create, rotate, list, publish and retire the deployment's signing keys.

Example (from a shell)::

    export ONCEONLY_KEY_PASSPHRASE=...              # or ONCEONLY_KEY_PASSPHRASE_SECRET=<Prefect block>
    onceonly keys init --suite sm2-sm3
    onceonly keys rotate                            # new active key; the old one keeps verifying
    onceonly keys list
    onceonly keys export-public -o district.vkeys   # every verifier key, one per line
    onceonly keys compromise 1f0c4e2a --since 2026-11-01

The key name is ``ONCEONLY_LOG_ORIGIN`` (the checkpoint origin); the suite of new keys is
``ONCEONLY_SIGNATURE_SUITE`` unless ``--suite`` says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from onceonly.errors import EvidenceError, VerificationFailed

if TYPE_CHECKING:
    from evidence.keys import Keyring, KeyStore
    from onceonly.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Signing keys: suites, rotation, compromise, public keys.")

_SUITE_HELP = (
    "Signature suite of the new key (ed25519, ecdsa-p256-sha256, sm2-sm3 or another registered "
    "suite); default ONCEONLY_SIGNATURE_SUITE."
)


def _settings() -> Settings:
    from onceonly.settings import Settings

    return Settings()


def _store(settings: Settings) -> KeyStore:
    from evidence.keys import open_key_store

    return open_key_store(settings)


def _check_suite(suite: str | None) -> None:
    """A name check before anything slow (the passphrase's KDF, a key generation)."""
    from onceonly.settings import signature_suite_names

    known = signature_suite_names()
    if suite is not None and suite not in known:
        raise typer.BadParameter(f"unknown suite {suite!r}; known suites: {', '.join(known)}")


def _note_setting(settings: Settings, active_suite: str) -> None:
    """After a new key: say so when the setting would pick another suite for the next new key."""
    if settings.signature_suite != active_suite:
        typer.secho(
            f"note: ONCEONLY_SIGNATURE_SUITE is {settings.signature_suite}; it only chooses the suite of "
            f"new keys, so signing goes on with this {active_suite} key (the keyring decides). Set "
            f"ONCEONLY_SIGNATURE_SUITE={active_suite} so that the next `keys rotate` keeps {active_suite}.",
            fg="yellow",
            err=True,
        )


@app.command("init")
def init(suite: Annotated[str | None, typer.Option(help=_SUITE_HELP)] = None) -> None:
    """Create the deployment's first signing key (refuses if one exists: use rotate)."""
    _check_suite(suite)
    settings = _settings()
    store = _store(settings)
    name = settings.log_origin
    if store.key_path(name).exists():
        raise EvidenceError(
            f"a signing key {name!r} already exists in {store.directory}; use `onceonly keys rotate`"
        )
    key = store.create(name, suite or settings.signature_suite)
    typer.echo(f"created {key.suite} key {key.name}+{key.key_id.hex()}")
    _note_setting(settings, key.suite)
    typer.echo(key.vkey)  # last: scripts take the verifier key from the last line


@app.command("rotate")
def rotate(suite: Annotated[str | None, typer.Option(help=_SUITE_HELP)] = None) -> None:
    """Make a new key the active one; the old key is retired and kept for verification."""
    _check_suite(suite)
    settings = _settings()
    store = _store(settings)
    name = settings.log_origin
    old = store.keyring().active(name)
    key = store.rotate(name, suite or settings.signature_suite)
    if old is not None:
        typer.echo(f"retired {old.suite} key {old.name}+{old.key_id}")
    typer.echo(f"active  {key.suite} key {key.name}+{key.key_id.hex()}")
    _note_setting(settings, key.suite)
    typer.echo(key.vkey)  # last: scripts take the verifier key from the last line


@app.command("list")
def list_keys(as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """Every key of the keyring: name, suite, key ID, created, retired, compromised-since."""
    keyring = _public_keyring(_settings())
    if as_json:
        typer.echo(json.dumps(keyring.to_json()["keys"], ensure_ascii=False, indent=2))
        return
    if not keyring.keys:
        typer.echo("no keys yet: run `onceonly keys init`")
        return
    from cli.console import console, table

    out = table("name", "suite", "key id", "status", "created", "retired", "compromised since")
    for record in keyring.keys:
        row = record.to_json()
        out.add_row(
            record.name,
            record.suite,
            record.key_id,
            record.status,
            row["created"] or "-",
            row["retired"] or "-",
            row["compromised_since"] or "-",
        )
    console().print(out)


@app.command("export-public")
def export_public(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Key name; default every name in the keyring.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
    keyring_json: Annotated[
        bool, typer.Option("--keyring", help="Write the whole public keyring (JSON) instead of vkey lines.")
    ] = False,
) -> None:
    """The verifier keys (vkey text, one per line, active key last) of every key ever used."""
    from evidence.keys import Keyring

    keyring = _public_keyring(_settings())
    records = [r for r in keyring.keys if name is None or r.name == name]
    if not records:
        raise EvidenceError(f"no keys{f' named {name!r}' if name else ''} in the keyring")
    if keyring_json:
        text = json.dumps(Keyring(tuple(records)).to_json(), ensure_ascii=False, indent=2) + "\n"
    else:
        text = "".join(f"{record.vkey}\n" for record in records)
    if output is None:
        typer.echo(text, nl=False)
    else:
        from onceonly.files import write_atomic

        write_atomic(output, text, mode=0o644)  # public keys, for verifiers
        typer.echo(f"wrote {len(records)} key(s) to {output}", err=True)


@app.command("compromise")
def compromise(
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The 8-hex-digit key ID (see `onceonly keys list`).")
    ],
    since: Annotated[str, typer.Option(help="YYYY-MM-DD (00:00 UTC) or an ISO 8601 time with zone.")],
) -> None:
    """Mark a key compromised from a date: what it signed at or after then no longer verifies."""
    from evidence.keys import parse_since

    since_time = parse_since(since)  # before the passphrase's KDF
    settings = _settings()
    store = _store(settings)
    record = store.mark_compromised(key_id, since_time)
    row = record.to_json()
    typer.echo(
        f"key {record.name}+{record.key_id} ({record.suite}) is compromised since {row['compromised_since']}"
    )
    active = store.keyring().active(record.name)
    if active is not None and active.key_id == record.key_id:
        typer.secho(
            "warning: this is the active signing key; run `onceonly keys rotate` now — signing "
            "refuses a compromised key",
            fg="yellow",
            err=True,
        )


def _public_keyring(settings: Settings) -> Keyring:
    """The keyring file (public: no passphrase needed)."""
    from evidence.keys import Keyring

    path = settings.keys_dir / "keyring.json"
    if not path.exists():
        return Keyring()
    try:
        return Keyring.load(path)
    except VerificationFailed as exc:
        raise EvidenceError(str(exc)) from None


__all__ = ["app"]
