"""One exception tree for the whole pipeline, with retry-ability in the type.

Example::

    try:
        batches = connector.pull(cursor)
    except TransientError:
        ...  # Prefect may retry: the source was unreachable, timed out, or said 5xx/429
    except TerminalError as exc:
        ...  # retrying will not help: wrong password, schema change, malformed data

Library errors are translated at the boundary (``raise SourceUnavailable(...) from exc``)
with the connector's name and the cause in plain words. Messages never carry secrets or
unmasked citizen ID numbers.
"""

from __future__ import annotations


class OnceOnlyError(Exception):
    """Root of every error OnceOnly raises on purpose."""


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


class CatalogError(TerminalError):
    """The catalog database is unreachable or inconsistent."""


__all__ = [
    "CatalogError",
    "ConfigurationError",
    "ConnectorBusy",
    "ConnectorError",
    "ContractBreached",
    "ContractError",
    "EvidenceError",
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
