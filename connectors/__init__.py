"""Connectors: department systems in, ``pyarrow.RecordBatch``es and a cursor out.

Example::

    registrations = load_registrations(settings.registrations_dir)
    connector = create_connector(registrations["gongan-household"], settings.home, EnvironmentSecrets())
    for pulled in connector.pull(cursor=None, batch_size=10_000):
        ...

Types shipped: ``sql``, ``http``, ``files`` (entry-point group ``onceonly.connectors``).
"""

from connectors.base import Connector, Cursor, Pulled, connector_types, create_connector
from connectors.registration import Registration, load_registration, load_registrations
from connectors.secrets import ChainedSecrets, EnvironmentSecrets, MissingSecret, PrefectSecrets

__all__ = [
    "ChainedSecrets",
    "Connector",
    "Cursor",
    "EnvironmentSecrets",
    "MissingSecret",
    "PrefectSecrets",
    "Pulled",
    "Registration",
    "connector_types",
    "create_connector",
    "load_registration",
    "load_registrations",
]
