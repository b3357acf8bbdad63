"""What the flows hand to Prefect is scrubbed here: citizen IDs masked, secret values removed.

Example::

    install_prefect_scrubbing()                     # when a flow starts: log records scrubbed
    remember_secrets(pipeline.secret_values())      # values no message may carry
    table_artifact(key="contract-x", table=rows, description="...")  # not create_table_artifact
    except Exception as exc:                        # in a flow
        return failed_state(exc)                    # expected: Failed, one line; a bug: raised

Prefect keeps what it is given in its own database (``prefect.db`` of a temporary server, or
the server's PostgreSQL): state messages, logs, artifacts, events. OnceOnly's masking of the
catalog and the lake does not reach it, and a file without its header once put a full citizen
ID there, in the message of a task run's state (issue "Hostile input"). Text crosses into
Prefect through four doors, each guarded here once:

- log records: a filter on every handler of Prefect's loggers and the root logger, the API
  handler (the door to Prefect's database) among them (:func:`install_prefect_scrubbing`);
- state messages: the exceptions that leave our tasks (:func:`scrubbed_errors`) and flows
  (:func:`failed_state`), of which Prefect makes the state's message, and the messages of the
  states the flows return (:func:`failure_message`, :func:`scrub`);
- artifacts: :func:`table_artifact`, :func:`link_artifact`;
- events: :func:`event`.

The secret values are the settings' own (key passphrase, database password), the environment
values of every secret a registration names (a message may quote one before its connector has
resolved it) and whatever the pipeline's resolver hands to a connector; each also in its URL
encodings, as a driver quoting a connection string would show it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, ParamSpec, TypeVar
from urllib.parse import quote, quote_plus

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.events import emit_event
from prefect.states import Failed, State

from flows.run_log import install_expected_failure_filter, is_expected, one_line
from onceonly.errors import OnceOnlyError
from onceonly.privacy import install_log_masking, scrub_text

P = ParamSpec("P")
R = TypeVar("R")

MASK = "***"
# A secret shorter than this is not searched for: masking every "ab" in every message would
# hide more than it protects (and a secret that short protects nothing anyway).
_SHORTEST_SECRET = 4

_secrets: tuple[str, ...] = ()  # replaced whole, never changed in place: readers need no lock
_lock = threading.Lock()


def remember_secrets(values: Iterable[str | None]) -> None:
    """Add ``values`` to what :func:`scrub` removes, for the life of the process."""
    global _secrets
    forms = {
        form
        for value in values
        if value and len(value) >= _SHORTEST_SECRET
        for form in (value, quote(value, safe=""), quote_plus(value))
    }
    with _lock:
        # Longest first: a secret that contains another is replaced whole.
        _secrets = tuple(sorted(set(_secrets) | forms, key=lambda s: (-len(s), s)))


def scrub(text: str) -> str:
    """``text`` with citizen IDs masked and without the remembered secret values (``***``): IDs
    first, so a secret that is part of an ID ("1990") cannot break the ID's pattern and leave
    the rest of it in clear."""
    text = scrub_text(text)
    for value in _secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrub_value(value: Any) -> Any:
    """:func:`scrub` applied to every string in a JSON-like value (dicts, lists, tuples)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {scrub_value(k): scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not hide the original error
        return f"<unprintable {type(exc).__name__}>"


def failure_message(exc: BaseException) -> str:
    """The one line a run shows for ``exc``: its message, scrubbed."""
    return scrub(one_line(_text(exc))) or type(exc).__name__


class RedactedError(Exception):
    """Stands in for an exception whose message could not be scrubbed in place (its text does
    not come from its ``args``); raised from it, so the traceback still shows where."""


def scrubbed(exc: BaseException) -> BaseException:
    """``exc`` with its message scrubbed in place, or a :class:`RedactedError` carrying the
    scrubbed message when its type builds the text from other attributes."""
    text = _text(exc)
    clean = scrub(text)
    if clean == text:
        return exc
    exc.args = tuple(scrub(a) if isinstance(a, str) else a for a in exc.args)
    cause = getattr(exc, "cause", None)  # ConnectorError keeps its cause beside the message
    if isinstance(cause, str):
        exc.cause = scrub(cause)  # type: ignore[attr-defined]
    if scrub(_text(exc)) == _text(exc):
        return exc
    return RedactedError(f"{type(exc).__name__}: {clean}")


def _raise_scrubbed(exc: Exception) -> NoReturn:
    clean = scrubbed(exc)
    if clean is exc:
        raise exc
    raise clean from exc


def scrubbed_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """For a task: an exception leaving ``fn`` is scrubbed first (Prefect makes the task run's
    state message and event of it). The task still fails by raising, so its caller sees the
    error; an expected one is logged in one line (``flows.run_log``)."""

    @functools.wraps(fn)
    def scrubbing(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            _raise_scrubbed(exc)

    return scrubbing


def failed_state(exc: Exception) -> State:
    """For a flow, in its ``except`` clause: an expected failure ends the run Failed with one
    scrubbed line (the state's message; the error is its data, raised again by
    ``state.result()``) and no traceback; any other exception (a bug) is scrubbed and raised
    again, its traceback logged by Prefect::

        try:
            return _pull(...)
        except Exception as exc:
            return failed_state(exc)
    """
    if not (isinstance(exc, OnceOnlyError) and is_expected(exc)):
        _raise_scrubbed(exc)
    clean = scrubbed(exc)
    message = failure_message(clean)
    run_logger().error("%s", message)
    return Failed(message=message, data=clean)


def run_logger() -> Any:
    """The run's logger inside a flow or task run, else this module's."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Artifacts and events


def table_artifact(*, key: str, table: list[dict[str, Any]], description: str) -> None:
    """``create_table_artifact`` with every cell and the description scrubbed."""
    create_table_artifact(key=key, table=scrub_value(table), description=scrub(description))


def markdown_artifact(*, key: str, markdown: str, description: str) -> None:
    """``create_markdown_artifact`` with the text and the description scrubbed."""
    create_markdown_artifact(key=key, markdown=scrub(markdown), description=scrub(description))


def progress_artifact(*, key: str, progress: float, description: str) -> Any:
    """``create_progress_artifact`` with the description scrubbed; its id, for :func:`update_progress`."""
    return create_progress_artifact(progress, key=key, description=scrub(description))


def update_progress(artifact_id: Any, *, progress: float, description: str) -> None:
    """``update_progress_artifact`` with the description scrubbed."""
    update_progress_artifact(artifact_id, progress, description=scrub(description))


def link_artifact(*, key: str, link: str, link_text: str, description: str) -> None:
    """``create_link_artifact`` with the link, its text and the description scrubbed."""
    create_link_artifact(
        key=key, link=scrub(link), link_text=scrub(link_text), description=scrub(description)
    )


def event(
    event: str,
    *,
    resource: dict[str, str],
    related: list[dict[str, str]] | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """``emit_event`` with the resources and the payload scrubbed."""
    emit_event(
        event=event,
        resource=scrub_value(resource),
        related=scrub_value(related) if related is not None else None,
        payload=scrub_value(payload) if payload is not None else None,
    )


# --------------------------------------------------------------------------------------------
# Log records

_EXC_FORMATTER = logging.Formatter()


class ScrubRecords(logging.Filter):
    """Scrubs a record's message, traceback text and stack before a handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken format string: logging's own error handling reports it
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[0] is not None:
            # Formatters keep the formatted traceback in exc_text: fill it in, scrubbed.
            text = record.exc_text or _EXC_FORMATTER.formatException(record.exc_info)
            clean = scrub(text)
            if clean != text:
                record.exc_text = clean
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_FILTER = ScrubRecords()


def install_prefect_scrubbing() -> None:
    """Guard the run's log, once per process and again for handlers added since: citizen IDs
    masked as records are made (``onceonly.privacy``), expected failures in one line
    (``flows.run_log``), and :class:`ScrubRecords` on every handler of the root logger and of
    Prefect's loggers."""
    install_log_masking()
    install_expected_failure_filter()
    loggers = [logging.getLogger()] + [
        logger
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if name.split(".")[0] == "prefect" and isinstance(logger, logging.Logger)
    ]
    for handler in {h for logger in loggers for h in logger.handlers}:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


__all__ = [
    "MASK",
    "RedactedError",
    "ScrubRecords",
    "event",
    "failed_state",
    "failure_message",
    "install_prefect_scrubbing",
    "link_artifact",
    "markdown_artifact",
    "progress_artifact",
    "remember_secrets",
    "run_logger",
    "scrub",
    "scrub_value",
    "scrubbed",
    "scrubbed_errors",
    "table_artifact",
    "update_progress",
]
