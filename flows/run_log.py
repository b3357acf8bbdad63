"""Expected failures read as one line in the run log; tracebacks are for bugs.

Example (called when a flow starts, in the process that runs it)::

    install_expected_failure_filter()

When a flow run ends Failed, Prefect's engine raises the state's exception in the process that
ran it (a worker's flow-run process) and logs it with its traceback ("Engine execution exited
with unexpected exception"). For a failure we raised on purpose — an exception of the
``OnceOnlyError`` tree: a department system that did not answer, a contract breached — that
traceback points only at Prefect's engine and hides the message an operator needs. This
filter keeps the record and its level and turns it into one line with the message; any other
exception (a bug) keeps its traceback.
"""

from __future__ import annotations

import logging

from onceonly.errors import CatalogOutdated, CatalogRefused, OnceOnlyError
from onceonly.privacy import scrub_exception_message, scrub_text

# The loggers through which Prefect reports a run's exception (the flow-run logger adapter's
# own logger, the engine's, and the task-run logger).
_LOGGERS = ("prefect.flow_runs", "prefect.engine", "prefect.task_runs", "prefect.flow_engine")


def is_expected(error: BaseException | None) -> bool:
    """A failure raised on purpose for a known reason: any ``OnceOnlyError`` but a catalog that
    refused work for a reason not known in advance (a constraint, a missing column: possibly a
    bug, so its traceback is kept)."""
    if not isinstance(error, OnceOnlyError):
        return False
    return not isinstance(error, CatalogRefused) or isinstance(error, CatalogOutdated)


class ExpectedFailures(logging.Filter):
    """Drop the traceback of records that carry an expected failure; keep its message (masked),
    on one line.

    Prefect's engine quotes the error's repr (``Encountered exception during execution:
    SourceDataMalformed("connector 'x': ...")``): the repr is replaced by the message; a record
    that does not quote it gets the message after its own.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and is_expected(error):
            message = record.getMessage()
            text = one_line(scrub_exception_message(error))
            quoted = next((r for r in _reprs(error) if r in message), None)
            record.msg = message.replace(quoted, text) if quoted else f"{message}: {text}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines, stripped, joined by ``; ``."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _reprs(error: BaseException) -> tuple[str, ...]:
    """The error's repr as the engine wrote it, raw and as the record factory masked it."""
    try:
        raw = repr(error)
    except Exception:
        return ()
    return (raw, scrub_text(raw))


_FILTER = ExpectedFailures()


def install_expected_failure_filter() -> None:
    """Attach the filter to Prefect's run loggers (once per process)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


__all__ = ["ExpectedFailures", "install_expected_failure_filter", "is_expected", "one_line"]
