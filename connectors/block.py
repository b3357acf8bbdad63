"""Registered connectors as Prefect blocks, so operators see them in the Prefect UI.

Example::

    save_block(registration)        # on `onceonly connectors register`: block "gongan-household"
    OnceOnlyConnector.load("gongan-household")
    delete_block("gongan-household")  # on `onceonly connectors remove`

The block type ``onceonly-connector`` carries the registration's fields. Its ``secrets`` are
``SecretStr`` (shown as ``********`` in the UI and API): a secret that lives in a Prefect Secret
block is copied in as its value; a secret that lives in an environment variable is stored as
its NAME only — its value is never read here. The catalog remains the record the flow runs
from; the block is the operators' view of it.

Blocks are saved on the Prefect API in ``PREFECT_API_URL`` when set, under Prefect's ephemeral
server (in ``PREFECT_HOME``) otherwise.
"""

from __future__ import annotations

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


def save_block(registration: Registration) -> str:
    """Save (or replace) the block named after the connector; returns the block's name."""
    block = block_of(registration)
    try:
        block.save(registration.name, overwrite=True)
    except Exception as exc:  # the Prefect API's own errors: the registration itself stands
        raise ConfigurationError(
            f"connector {registration.name!r}: could not save its Prefect block: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    return registration.name


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


__all__ = ["OnceOnlyConnector", "block_of", "delete_block", "save_block"]
