"""The connector interface: record batches and a cursor, nothing else.

Example::

    connector = create_connector(registration, settings, secrets=EnvironmentSecrets())
    for pulled in connector.pull(cursor=None, batch_size=10_000):
        land(pulled.batch)                 # pyarrow.RecordBatch in the source's own columns
        save_cursor(pulled.cursor)         # JSON-able; only after the batch has landed

The base class owns the public ``pull`` (error translation, bookkeeping); a connector type
implements ``_pull``. Library errors escaping ``_pull`` are translated at this boundary into
the project's errors with the connector's name, so callers only ever see ``OnceOnlyError``.
Third parties add types through the ``onceonly.connectors`` entry-point group.
"""

from __future__ import annotations

import abc
import functools
import importlib.metadata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from connectors.registration import Registration
from connectors.secrets import SecretResolver
from onceonly.errors import (
    ConfigurationError,
    OnceOnlyError,
    SourceDataMalformed,
    SourceUnavailable,
    UnknownConnectorType,
)
from onceonly.privacy import scrub_text

Cursor = dict[str, Any]


@dataclass(frozen=True)
class Pulled:
    """One batch from a source and the cursor to store once it has landed."""

    batch: pa.RecordBatch
    cursor: Cursor


class Connector(abc.ABC):
    """Base of every connector type."""

    type_name: ClassVar[str] = ""

    def __init__(self, registration: Registration, options: Mapping[str, Any], secrets: SecretResolver) -> None:
        self.registration = registration
        self.name = registration.name
        self.options = dict(options)
        self._secrets = secrets
        self.validate_options()

    def validate_options(self) -> None:
        """Raise ConfigurationError when required options are missing (override per type)."""

    def secret(self, key: str) -> str | None:
        """The value of the registration's secret ``key``, resolved now; None if not declared."""
        name = self.registration.secrets.get(key)
        return None if name is None else self._secrets.resolve(name, connector=self.name)

    def pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        """Yield batches after ``cursor`` (None = from the start), each with its new cursor."""
        try:
            yield from self._pull(cursor, batch_size)
        except OnceOnlyError:
            raise
        except (ValueError, pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise SourceDataMalformed(self.name, _plain(exc)) from exc
        except OSError as exc:
            raise SourceUnavailable(self.name, _plain(exc)) from exc

    def sample(self, rows: int = 5) -> pa.Table:
        """The first ``rows`` rows from the start, for ``onceonly connectors test``."""
        for pulled in self.pull(None, rows):
            return pa.Table.from_batches([pulled.batch]).slice(0, rows)
        return pa.table({})

    @abc.abstractmethod
    def _pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        """Yield batches after ``cursor``; may raise library errors (translated by ``pull``)."""

    def require(self, *keys: str) -> None:
        missing = [k for k in keys if not self.options.get(k)]
        if missing:
            raise ConfigurationError(f"connector {self.name!r}: options missing: {', '.join(missing)}")


def _plain(exc: BaseException) -> str:
    return scrub_text(f"{type(exc).__name__}: {exc}".splitlines()[0])


@functools.cache
def connector_types() -> dict[str, type[Connector]]:
    """Connector types registered through the ``onceonly.connectors`` entry-point group."""
    types: dict[str, type[Connector]] = {}
    for ep in importlib.metadata.entry_points(group="onceonly.connectors"):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise ConfigurationError(f"entry point {ep.name!r} ({ep.value}) is not a Connector subclass")
        types[ep.name] = cls
    return types


def create_connector(registration: Registration, home: Path, secrets: SecretResolver) -> Connector:
    types = connector_types()
    if registration.type not in types:
        raise UnknownConnectorType(
            f"connector {registration.name!r}: unknown type {registration.type!r}; "
            f"known types: {', '.join(sorted(types))}"
        )
    return types[registration.type](registration, registration.expanded_options(home), secrets)


__all__ = ["Connector", "Cursor", "Pulled", "connector_types", "create_connector"]
