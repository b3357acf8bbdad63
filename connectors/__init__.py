"""Connectors: department systems in, ``pyarrow.RecordBatch``es and a cursor out.

Example::

    registrations = load_registrations(settings.registrations_dir)
    connector = create_connector(
        registrations["gongan-household"], settings.home, EnvironmentSecrets(), paths=SourcePaths.of(settings)
    )
    for pulled in connector.pull(cursor=None, batch_size=10_000):
        ...

Types shipped: ``sql``, ``http``, ``files`` (entry-point group ``onceonly.connectors``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from connectors.base import Connector, Cursor, Pulled, connector_types, create_connector
    from connectors.paths import SourcePaths
    from connectors.registration import Registration, load_registration, load_registrations
    from connectors.secrets import ChainedSecrets, EnvironmentSecrets, MissingSecret, PrefectSecrets

# Public names, each imported from its submodule when first used: importing the registration
# model (``connectors.registration``) must not load pyarrow with the connector base class.
_EXPORTS: dict[str, str] = {
    "Connector": "connectors.base",
    "Cursor": "connectors.base",
    "Pulled": "connectors.base",
    "connector_types": "connectors.base",
    "create_connector": "connectors.base",
    "SourcePaths": "connectors.paths",
    "Registration": "connectors.registration",
    "load_registration": "connectors.registration",
    "load_registrations": "connectors.registration",
    "ChainedSecrets": "connectors.secrets",
    "EnvironmentSecrets": "connectors.secrets",
    "MissingSecret": "connectors.secrets",
    "PrefectSecrets": "connectors.secrets",
}


def __getattr__(name: str) -> _Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "ChainedSecrets",
    "Connector",
    "Cursor",
    "EnvironmentSecrets",
    "MissingSecret",
    "PrefectSecrets",
    "Pulled",
    "Registration",
    "SourcePaths",
    "connector_types",
    "create_connector",
    "load_registration",
    "load_registrations",
]
