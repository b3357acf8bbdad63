"""``onceonly witness …``: witnesses between districts (互通互认), c2sp.org/tlog-witness.

Example (two districts, each running one witness for the other)::

    onceonly witness init --name witness.baodi.example/w1        # prints the witness's vkey
    onceonly witness serve --config witness.yaml --port 7380     # the logs it cosigns (origin, keys)
    onceonly witness state                                       # sizes cosigned, requests refused

    export ONCEONLY_WITNESSES='[{"url": "http://127.0.0.1:7380", "vkey": "witness.baodi…+04…"}]'
    onceonly witness submit             # this district's newest checkpoint to its witnesses
    onceonly verify bundle.json --witness "$(cat baodi-witness.vkey)" --min-witnesses 1

The witness's home is ``--dir`` (default ``$ONCEONLY_HOME/witness``): its Ed25519 key encrypted
with the key passphrase (``ONCEONLY_KEY_PASSPHRASE`` or ``…_FILE``; mode 600), its verifier key
``witness.vkey``, and ``state.db``, the last size it cosigned per log. FastAPI and uvicorn are
imported only by ``serve``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from onceonly.errors import EvidenceError

if TYPE_CHECKING:
    from onceonly.settings import Settings

app = typer.Typer(
    no_args_is_help=True,
    help="Witnesses between districts (c2sp.org/tlog-witness): run one, or submit checkpoints to them.",
)

_DIR = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="The witness's home: key, verifier key, state (default ONCEONLY_HOME/witness)."
    ),
]


def _settings() -> Settings:
    from onceonly.settings import Settings

    return Settings()


def _directory(settings: Settings, given: Path | None) -> Path:
    return given if given is not None else settings.home / "witness"


def _passphrase(settings: Settings) -> bytes:
    if settings.key_passphrase is None or not settings.key_passphrase.get_secret_value():
        raise EvidenceError(
            "ONCEONLY_KEY_PASSPHRASE (or ONCEONLY_KEY_PASSPHRASE_FILE) is not set: the witness key is "
            "stored encrypted and needs it"
        )
    return settings.key_passphrase.get_secret_value().encode("utf-8")


@app.command("init")
def witness_init(
    name: Annotated[
        str, typer.Option("--name", help="The witness's name, a schema-less URL (witness.baodi.example/w1).")
    ],
    directory: _DIR = None,
) -> None:
    """Create the witness's Ed25519 cosigning key and print its verifier key (to give the logs' districts)."""
    from evidence.witness import COSIGNER_VKEY_FILE, create_cosigner

    settings = _settings()
    home = _directory(settings, directory)
    cosigner = create_cosigner(home, name, _passphrase(settings))
    typer.echo(cosigner.vkey)
    typer.echo(f"witness key created in {home} (verifier key: {home / COSIGNER_VKEY_FILE})", err=True)


@app.command("serve")
def witness_serve(
    config: Annotated[
        Path, typer.Option("--config", help="YAML or JSON: logs: [{origin, keys: [vkey, ...], hash}].")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7380,
    directory: _DIR = None,
) -> None:
    """Run the witness: POST /add-checkpoint cosigns the configured logs' consistent checkpoints."""
    from evidence.witness import (
        STATE_FILE,
        Witness,
        WitnessState,
        create_app,
        load_cosigner,
        load_witness_config,
    )

    settings = _settings()
    home = _directory(settings, directory)
    logs = load_witness_config(config)
    cosigner = load_cosigner(home, _passphrase(settings))
    witness = Witness(cosigner, WitnessState(home / STATE_FILE), logs)
    import uvicorn

    typer.echo(
        f"witness {cosigner.vkey} on http://{host}:{port}/add-checkpoint, cosigning "
        f"{', '.join(log.origin for log in logs)}",
        err=True,
    )
    uvicorn.run(create_app(witness), host=host, port=port, log_level="warning")


@app.command("state")
def witness_state(directory: _DIR = None) -> None:
    """The size last cosigned for each log, and the refused log-signed requests (possible forks)."""
    from evidence.witness import STATE_FILE, WitnessState

    home = _directory(_settings(), directory)
    if not (home / STATE_FILE).exists():
        raise EvidenceError(f"no witness state in {home}: has `onceonly witness serve` run there?")
    state = WitnessState(home / STATE_FILE)
    sizes = state.sizes()
    for origin, size in sizes.items():
        typer.echo(f"{origin}  cosigned up to size {size}")
    if not sizes:
        typer.echo("no checkpoint cosigned yet")
    for origin, status, reason, _ in state.refusals():
        typer.echo(f"refused {status}  {origin}: {reason}")


@app.command("submit")
def witness_submit() -> None:
    """Submit this district's newest checkpoint to its witnesses (ONCEONLY_WITNESSES); keep their
    cosignatures for bundles. Exit 1 when a witness did not cosign."""
    from catalog import Catalog
    from evidence.witness import configured_witnesses, submit_to_witnesses, witness_summary

    settings = _settings()
    witnesses = configured_witnesses(settings)
    if not witnesses:
        raise EvidenceError(
            "no witnesses configured: set ONCEONLY_WITNESSES to a JSON list of {url, vkey} (or a file)"
        )
    catalog = Catalog.connect(settings.catalog_url, create=False)
    try:
        outcomes = submit_to_witnesses(catalog, witnesses)
    finally:
        catalog.dispose()
    for outcome in outcomes:
        typer.secho(witness_summary(outcome), fg="green" if outcome.ok else "red", err=not outcome.ok)
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(1)


__all__ = ["app"]
