"""The connector interface: record batches and a cursor, nothing else.

Example::

    paths = SourcePaths.of(settings)        # where its registration may point
    connector = create_connector(registration, settings.home, EnvironmentSecrets(), paths=paths)
    for pulled in connector.pull(cursor=None, batch_size=10_000):
        land(pulled.batch)                 # pyarrow.RecordBatch in the source's own columns
        save_cursor(pulled.cursor)         # JSON-able; only after the batch has landed

The base class owns the public ``pull`` (error translation, bookkeeping); a connector type
implements ``_pull``. A type declares its options as a pydantic model in ``options_model``;
the registration's options are validated against it (unknown keys refused) and the connector
reads the typed object as ``self.opts``::

    class SqlOptions(ConnectorOptions):
        url: str
        table: str

    class SqlConnector(Connector):
        options_model = SqlOptions
        opts: SqlOptions                       # narrows the type for mypy

 Library errors escaping ``_pull`` are translated at this boundary into
the project's errors with the connector's name, so callers only ever see ``OnceOnlyError``;
every message leaving ``pull`` has citizen ID numbers masked and the values of the secrets the
connector resolved replaced by ``***``.
Third parties add types through the ``onceonly.connectors`` entry-point group.
"""

from __future__ import annotations

import abc
import functools
import importlib.metadata
import json
import logging
import os
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pydantic

from connectors.paths import SourcePaths
from connectors.registration import Registration
from connectors.secrets import SecretResolver
from onceonly.errors import (
    ConfigurationError,
    ConnectorError,
    OnceOnlyError,
    SourceDataMalformed,
    SourceUnavailable,
    UnknownConnectorType,
)
from onceonly.limits import Limits
from onceonly.privacy import scrub_text

Cursor = dict[str, Any]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pulled:
    """One batch from a source and the cursor to store once it has landed."""

    batch: pa.RecordBatch
    cursor: Cursor
    #: Snapshot change detection: the keys (canonical text, ``connectors.snapshot``) found deleted
    #: at the source, on the last batch of a pull; None for incremental connector types.
    deleted: pa.Array | None = None
    #: Snapshot change detection: how many of this batch's rows are ``new`` / ``changed`` and how
    #: many keys are ``deleted`` ({} for incremental types: every row counts as pulled).
    changes: Mapping[str, int] = field(default_factory=dict)


class ConnectorOptions(pydantic.BaseModel):
    """Base of every connector type's options model: unknown keys are an error, values frozen."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Connector(abc.ABC):
    """Base of every connector type."""

    type_name: ClassVar[str] = ""
    #: The pydantic model of this type's ``options`` (None: options stay an unchecked dict).
    options_model: ClassVar[type[pydantic.BaseModel] | None] = None
    #: The options validated by ``options_model`` (None when the type declares no model).
    opts: Any
    #: ``ONCEONLY_HOME`` of the process that created the connector (for state such as snapshots).
    home: Path | None = None
    #: What the readers accept (sizes, depth, time): ``Settings.limits``, set by create_connector.
    limits: Limits
    #: Options naming a local folder or file, or an fsspec URL, that the connector reads or
    #: writes: each is confined by ``connectors.paths.SourcePaths`` when the connector is made.
    path_options: ClassVar[tuple[str, ...]] = ()
    #: Options holding a SQLAlchemy URL of a database the connector reads (same confinement;
    #: the catalog's own database is refused).
    database_options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, registration: Registration, options: Mapping[str, Any], secrets: SecretResolver
    ) -> None:
        self.registration = registration
        self.name = registration.name
        self.options = dict(options)
        self._secrets = secrets
        self._revealed: set[str] = set()
        self.limits = Limits()
        self.opts = validate_options(type(self), self.name, self.options)
        self.validate_options()

    def validate_options(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Raise ConfigurationError when required options are missing (override per type)."""

    def secret(self, key: str) -> str | None:
        """The value of the registration's secret ``key``, resolved now; None if not declared."""
        name = self.registration.secrets.get(key)
        if name is None:
            return None
        value = self._secrets.resolve(name, connector=self.name)
        if value:
            self._revealed.add(value)
        return value

    def pull(self, cursor: Cursor | None, batch_size: int) -> Generator[Pulled, None, None]:
        """Yield batches after ``cursor`` (None = from the start), each with its new cursor."""
        if batch_size < 1:
            raise ConfigurationError(
                f"connector {self.name!r}: batch_size must be at least 1, not {batch_size}"
            )
        try:
            yield from self._pull(cursor, batch_size)
        except OnceOnlyError as exc:
            self._redact(exc)
            raise
        except (ValueError, pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise self._redact(SourceDataMalformed(self.name, _plain(exc))) from exc
        except OSError as exc:
            raise self._redact(SourceUnavailable(self.name, _plain(exc))) from exc

    def remaining(self, cursor: Cursor | None) -> int | None:
        """How many rows a pull after ``cursor`` would yield, when the source can tell cheaply.

        For progress reports only (rows/s and a time left): None when the type cannot tell or
        asking failed — never an error, the pull itself reports those.
        """
        try:
            return self._remaining(cursor)
        except Exception as exc:  # an estimate must never stop a pull
            _log.debug("connector %r: no estimate of the rows to pull: %s", self.name, _plain(exc))
            return None

    def _remaining(self, cursor: Cursor | None) -> int | None:
        """Override where the source can count the rows after ``cursor`` (default: it cannot)."""
        return None

    #: Whether :meth:`landed` may run while :meth:`pull` goes on in another thread (the daily
    #: flow pulls one batch ahead of landing, ``flows.prefetch``), and after the pull's
    #: generator has finished. A type that overrides ``landed`` is pulled in the landing
    #: thread, one batch at a time, unless it says so here.
    landed_while_pulling: ClassVar[bool] = False

    def landed(self, cursor: Cursor) -> None:  # noqa: B027 - optional hook, not abstract
        """Called after the batch that ended at ``cursor`` has landed (its transaction committed).

        For work that must wait until the rows are safe, e.g. ``files`` moving a finished file
        to its archive folder. Must not raise for a failure that a later pull can redo. See
        :attr:`landed_while_pulling` for the thread it runs on.
        """

    @property
    def prefetchable(self) -> bool:
        """Whether the next batch may be pulled on another thread while this one lands."""
        return type(self).landed is Connector.landed or self.landed_while_pulling

    def handover(self) -> dict[str, Any]:
        """What :meth:`landed` needs from the pull that yielded the batches, for when another
        process lands them (the daily flow on Dask pulls on a worker and lands in the flow's
        process, ``flows.ahead``): plain, picklable values; {} when ``landed`` needs nothing."""
        return {}

    def take_over(self, handover: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Adopt another instance's :meth:`handover` before its batches are landed here."""

    def sample(self, rows: int = 5) -> pa.Table:
        """The first ``rows`` rows from the start, for ``onceonly connectors test``."""
        pulls = self.pull(None, rows)
        try:
            for pulled in pulls:
                return pa.Table.from_batches([pulled.batch]).slice(0, rows)
        finally:
            pulls.close()  # release the source's connection now, not when garbage-collected
        return pa.table({})

    @abc.abstractmethod
    def _pull(self, cursor: Cursor | None, batch_size: int) -> Iterator[Pulled]:
        """Yield batches after ``cursor``; may raise library errors (translated by ``pull``)."""

    def _redact(self, exc: OnceOnlyError) -> OnceOnlyError:
        """``exc`` with citizen ID numbers masked and resolved secret values removed, in place.

        A driver may quote what it was given (a row, a cursor value, a connection string);
        whatever a connector type forgot, no message leaves ``pull`` carrying either.
        """

        def clean(text: str) -> str:
            text = scrub_text(text)  # IDs first: a secret inside one must not break its pattern
            for value in self._revealed:
                text = text.replace(value, "***")
            return text

        if isinstance(exc, ConnectorError):
            exc.cause = clean(exc.cause)
        exc.args = tuple(clean(a) if isinstance(a, str) else a for a in exc.args)
        return exc

    def require(self, *keys: str) -> None:
        missing = [k for k in keys if not self.options.get(k)]
        if missing:
            raise ConfigurationError(f"connector {self.name!r}: options missing: {', '.join(missing)}")


def validate_options(
    connector_type: type[Connector], name: str, options: Mapping[str, Any]
) -> pydantic.BaseModel | None:
    """``options`` validated by ``connector_type.options_model``; ConfigurationError names each field."""
    model = connector_type.options_model
    if model is None:
        return None
    try:
        return model.model_validate(dict(options))
    except pydantic.ValidationError as exc:
        raise ConfigurationError(f"connector {name!r}: {options_problems(exc)}") from None


def options_problems(exc: pydantic.ValidationError, prefix: str = "options") -> str:
    """Each error as ``options.<field path>: <message>``, joined by '; '."""
    return "; ".join(f"{'.'.join([prefix, *(str(p) for p in e['loc'])])}: {e['msg']}" for e in exc.errors())


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


def create_connector(
    registration: Registration,
    home: Path,
    secrets: SecretResolver,
    *,
    paths: SourcePaths,
    limits: Limits | None = None,
) -> Connector:
    """The connector ``registration`` declares, its paths confined by ``paths``
    (``SourcePaths.of(settings)``: ConfigurationError naming the option otherwise); ``limits``
    (default: ``Limits()`` from the environment) bound what its readers accept."""
    types = connector_types()
    if registration.type not in types:
        raise UnknownConnectorType(
            f"connector {registration.name!r}: unknown type {registration.type!r}; "
            f"known types: {', '.join(sorted(types))}"
        )
    cls = types[registration.type]
    home = Path(os.path.abspath(home))  # {home} in options must expand to an absolute path
    options = registration.expanded_options(home)
    validate_options(cls, registration.name, options)  # what is missing or unknown, said first
    # Then where they point, before the type sees them (it may open a file system or a driver).
    for key in cls.path_options:
        value = options.get(key)
        if isinstance(value, str) and value:
            also = [home / "snapshots"] if key == "snapshot_dir" else []
            paths.check(registration.name, f"options.{key}", value, also=also)
    for key in cls.database_options:
        value = options.get(key)
        if isinstance(value, str) and value:
            paths.check_database(registration.name, f"options.{key}", value)
    connector = cls(registration, options, secrets)
    connector.home = home
    if limits is not None:
        connector.limits = limits
    return connector


def rebatch(blocks: Iterable[pa.RecordBatch], size: int, skip: int = 0) -> Iterator[pa.RecordBatch]:
    """``blocks`` after their first ``skip`` rows, cut and joined into batches of exactly ``size``
    rows (the last may be shorter).

    Cutting is a zero-copy slice; only a batch made of pieces of two or more is copied.
    """
    pieces: list[pa.RecordBatch] = []
    buffered = 0
    for block in blocks:
        batch = block
        if skip:
            if batch.num_rows <= skip:
                skip -= batch.num_rows
                continue
            batch, skip = batch.slice(skip), 0
        while batch.num_rows:
            take = min(size - buffered, batch.num_rows)
            pieces.append(batch.slice(0, take))
            buffered += take
            batch = batch.slice(take)
            if buffered == size:
                yield _joined(pieces)
                pieces, buffered = [], 0
    if buffered:
        yield _joined(pieces)


def _joined(pieces: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(pieces) == 1:
        return pieces[0]
    if all(p.schema.equals(pieces[0].schema) for p in pieces[1:]):
        return pa.concat_batches(pieces)
    # A source whose later blocks bring a field the earlier ones lacked (JSON lines whose key
    # first appears after a block): the columns united, missing values null (the contract then
    # takes the columns it names).
    tables = [pa.Table.from_batches([p]) for p in pieces]
    joined = pa.concat_tables(tables, promote_options="default").combine_chunks()
    return joined.to_batches(max_chunksize=joined.num_rows)[0]


def json_text(value: Any) -> str | None:
    """A JSON value as the text a string column holds (the contract casts it afterwards)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


__all__ = [
    "Connector",
    "ConnectorOptions",
    "Cursor",
    "Pulled",
    "connector_types",
    "create_connector",
    "json_text",
    "options_problems",
    "rebatch",
    "validate_options",
]
