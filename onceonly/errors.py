"""One exception tree for the whole pipeline, with retry-ability in the type.

Example::

    try:
        batches = connector.pull(cursor)
    except TransientError:
        ...  # Prefect may retry: the source was unreachable, timed out, or said 5xx/429
    except TerminalError as exc:
        ...  # retrying will not help: wrong password, schema change, malformed data

Library errors are translated at the boundary (``raise SourceUnavailable(...) from exc``)
with the connector's name and the cause in plain words; database errors by driver class or
SQLSTATE (``catalog``), never by message text. Messages never carry secrets or unmasked
citizen ID numbers.

Every error survives pickling with its attributes (a ``DaskTaskRunner`` and Prefect's result
persistence pickle them): ``pickle.loads(pickle.dumps(SourceUnavailable("gongan", "timeout")))``
is a ``SourceUnavailable`` with the same connector, cause and message.
"""

from __future__ import annotations

from typing import Any


def _restore(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    error = cls.__new__(cls)
    error.args = args
    return error


class OnceOnlyError(Exception):
    """Root of every error OnceOnly raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls ``cls(*args)``, which fails for subclasses whose
        # constructor takes other arguments than the message (ConnectorError).
        return (_restore, (type(self), self.args), self.__dict__)


class TransientError(OnceOnlyError):
    """Marker: the same call may succeed later (timeouts, unreachable hosts, 5xx, 429)."""


class TerminalError(OnceOnlyError):
    """Marker: retrying will not help until someone changes something."""


class ConfigurationError(TerminalError):
    """A settings value, registration file or catalogue file is wrong."""


class ConnectorError(OnceOnlyError):
    """A connector failed; the message names the connector and the cause."""

    def __init__(self, connector: str, cause: str) -> None:
        self.connector = connector
        self.cause = cause
        super().__init__(f"connector {connector!r}: {cause}")


class SourceUnavailable(ConnectorError, TransientError):
    """The department system could not be reached or answered with a transient failure."""


class SourceRejected(ConnectorError, TerminalError):
    """The department system refused us: wrong password or token, no permission, 4xx."""


class SourceSchemaChanged(ConnectorError, TerminalError):
    """The source no longer has the columns the dataset's contract promises."""


class SourceDataMalformed(ConnectorError, TerminalError):
    """The source sent something that cannot be parsed (bad JSON page, truncated file)."""


class ConnectorBusy(ConnectorError, TerminalError):
    """Another run is pulling this connector right now; this run leaves it alone."""


class UnknownConnectorType(ConfigurationError):
    """A registration names a connector type nobody registered."""


class ContractError(TerminalError):
    """A data contract file is invalid or unsupported."""


class ContractBreached(TerminalError):
    """A batch broke its contract beyond the contract's error threshold."""


class EvidenceError(TerminalError):
    """Keys, certificates or the transparency log are in a state we refuse to use."""


class VerificationFailed(EvidenceError):
    """An offline verification failed; the message names the first thing that failed."""


class CatalogError(OnceOnlyError):
    """The catalog database failed; a subclass says whether trying again may help."""


class CatalogUnavailable(CatalogError, TransientError):
    """The catalog could not be reached or gave up on the work for now: a refused, lost or
    killed connection, a server shutting down or failing over, too many connections, a
    deadlock, serialization failure or lock wait timeout that the database rolled back, SQLite
    busy or locked. The same work may succeed later (``catalog._errors``: by driver code)."""


class CatalogRefused(CatalogError, TerminalError):
    """The catalog refused the work (a constraint, a missing table or column, syntax, a
    permission, bad data, a wrong URL, a catalog of an unknown revision): retrying the same
    work will not help."""


class CatalogOutdated(CatalogRefused):
    """The catalog is at an earlier schema revision than this version of OnceOnly needs (or
    records none: the release before revisions); it was left untouched. ``onceonly catalog
    upgrade`` brings it there."""


class LakeError(OnceOnlyError):
    """The lake's object store failed (a local lake raises the OS's own errors)."""


class LakeUnavailable(LakeError, TransientError):
    """The lake's object store could not be reached or failed for now (a refused or lost
    connection, a timeout, a 5xx): the same work may succeed later."""


class LakeRefused(LakeError, TerminalError):
    """The lake's object store refused the work (access denied, no such bucket)."""


__all__ = [
    "CatalogError",
    "CatalogOutdated",
    "CatalogRefused",
    "CatalogUnavailable",
    "ConfigurationError",
    "ConnectorBusy",
    "ConnectorError",
    "ContractBreached",
    "ContractError",
    "EvidenceError",
    "LakeError",
    "LakeRefused",
    "LakeUnavailable",
    "OnceOnlyError",
    "SourceDataMalformed",
    "SourceRejected",
    "SourceSchemaChanged",
    "SourceUnavailable",
    "TerminalError",
    "TransientError",
    "UnknownConnectorType",
    "VerificationFailed",
]
