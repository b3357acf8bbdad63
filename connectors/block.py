"""Registered connectors as Prefect blocks, so operators see them in the Prefect UI.

Example::

    sync_blocks(pipeline.registrations)   # the daily flow, at each run: blocks mirror the catalog
    OnceOnlyConnector.load("gongan-household")
    save_block(registration)              # `connectors register`, when PREFECT_API_URL names a server
    delete_block("gongan-household")      # `connectors remove`, likewise

The block type ``onceonly-connector`` carries the registration's fields. Its ``secrets`` are
``SecretStr`` (shown as ``********`` in the UI and API): a secret that lives in a Prefect Secret
block is copied in as its value; a secret that lives in an environment variable is stored as
its NAME only — its value is never read here.

The blocks are a read-only mirror of the catalog's registrations: the catalog is the record
the flow runs from, and the daily flow syncs the blocks (:func:`sync_blocks`: saves every
registered connector's, deletes those of removed connectors) on the Prefect API it runs
against. The command line saves or deletes a block at once only when ``PREFECT_API_URL`` names
a server; it never starts Prefect's ephemeral server for it (10 s for a command that runs no
flow), and says that the next run will bring the block up to date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from connectors.registration import Registration
from connectors.secrets import MissingSecret, PrefectSecrets
from onceonly.errors import ConfigurationError


class OnceOnlyConnector(Block):
    """A connector to a department system, registered with OnceOnly."""

    _block_type_name: ClassVar[str] = "OnceOnly Connector"
    _block_type_slug: ClassVar[str] = "onceonly-connector"
    _description: ClassVar[str] = (
        "A department system registered with `onceonly connectors register`: its type, dataset "
        "and options. Secrets are the Prefect Secret's value (hidden) or the environment variable's name."
    )

    connector: str = Field(description="The connector's name.")
    department: str = Field(description="The department that owns the system.")
    dataset: str = Field(description="The data contract id.")
    connector_type: str = Field(description="sql, http, files, or a plugin's type.")
    options: dict[str, Any] = Field(default_factory=dict, description="The type's options.")
    secret_names: dict[str, str] = Field(default_factory=dict, description="Secret names by purpose.")
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="By purpose: the Prefect Secret's value, or the environment variable's NAME.",
    )
    schedule: str | None = Field(None, description="Cron schedule.")


def block_of(registration: Registration, prefect_secrets: PrefectSecrets | None = None) -> OnceOnlyConnector:
    """The block for ``registration``; secrets found as Prefect Secret blocks are copied as values."""
    resolver = prefect_secrets or PrefectSecrets()
    secrets: dict[str, SecretStr] = {}
    for purpose, name in registration.secrets.items():
        try:
            secrets[purpose] = SecretStr(resolver.resolve(name, connector=registration.name))
        except MissingSecret:
            secrets[purpose] = SecretStr(name)  # an environment variable: its name, never its value
    return OnceOnlyConnector(
        connector=registration.name,
        department=registration.department,
        dataset=registration.dataset,
        connector_type=registration.type,
        options=dict(registration.options),
        secret_names=dict(registration.secrets),
        secrets=secrets,
        schedule=registration.schedule,
    )


def save_block(registration: Registration, *, unless_same: bool = False) -> str:
    """Save (or replace) the block named after the connector; returns the block's name.

    ``unless_same``: leave a stored block that already says the same (each daily run syncs
    every block; reading one is a GET, saving it ~160 ms of the API's writes)."""
    block = block_of(registration)
    if unless_same and _stored_is(block):
        return registration.name
    try:
        block.save(registration.name, overwrite=True)
    except Exception as exc:  # the Prefect API's own errors: the registration itself stands
        raise ConfigurationError(
            f"connector {registration.name!r}: could not save its Prefect block: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    return registration.name


def _stored_is(block: OnceOnlyConnector) -> bool:
    """Whether the stored block of the same name has this block type's schema and the same
    field values (secrets compared by value): one GET."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            document = client.read_block_document_by_name(
                block.connector, OnceOnlyConnector.get_block_type_slug(), include_secrets=True
            )
        checksum = cast(Any, OnceOnlyConnector)._calculate_schema_checksum()
        if document.block_schema is None or document.block_schema.checksum != checksum:
            return False  # an older shape of the block: saving registers the current one
        stored = OnceOnlyConnector.model_validate(document.data)
    except Exception:  # none yet, data of another shape, the API's own errors: save it
        return False
    return all(getattr(stored, name) == getattr(block, name) for name in OnceOnlyConnector.model_fields)


def delete_block(name: str) -> bool:
    """Delete the connector's block; False if there was none."""
    try:
        cast(Any, OnceOnlyConnector).delete(name)
    except ValueError:
        return False  # Prefect: "Unable to find block document named ..."
    except Exception as exc:
        raise ConfigurationError(
            f"connector {name!r}: could not delete its Prefect block: {type(exc).__name__}"
        ) from exc
    return True


@dataclass(frozen=True)
class Synced:
    """What :func:`sync_blocks` did: blocks saved, blocks deleted, and problems (one per block)."""

    saved: tuple[str, ...]
    deleted: tuple[str, ...]
    problems: tuple[str, ...]


def sync_blocks(registrations: Mapping[str, Registration]) -> Synced:
    """Make the ``onceonly-connector`` blocks mirror ``registrations`` (the catalog's).

    Every registered connector's block is saved (replaced, unless it already says the same:
    ``Synced.saved`` names it all the same); the block of a connector that is
    no longer registered is deleted. A block that cannot be saved or deleted is a problem
    reported, not an error: the catalog, not the block, is what the flow runs.
    """
    saved: list[str] = []
    problems: list[str] = []
    for _, registration in sorted(registrations.items()):
        try:
            saved.append(save_block(registration, unless_same=True))
        except ConfigurationError as exc:
            problems.append(str(exc))
    deleted: list[str] = []
    try:
        stale = sorted(set(_block_names()) - set(registrations))
    except Exception as exc:  # the Prefect API's own errors
        problems.append(f"could not list the onceonly-connector blocks: {type(exc).__name__}")
        stale = []
    for name in stale:
        try:
            if delete_block(name):
                deleted.append(name)
        except ConfigurationError as exc:
            problems.append(str(exc))
    return Synced(tuple(saved), tuple(deleted), tuple(problems))


def _block_names() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type(
                OnceOnlyConnector.get_block_type_slug(), include_secrets=False
            )
        except ObjectNotFound:
            return []  # the block type itself is not registered yet: no blocks
    return [d.name for d in documents if d.name]


__all__ = ["OnceOnlyConnector", "Synced", "block_of", "delete_block", "save_block", "sync_blocks"]
