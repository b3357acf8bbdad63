"""Pull and validate the next batch on a second thread while the flow lands the one before.

Example (what ``flows.daily_sharing`` does with the thread runner)::

    for pulled, validation in prefetched(lambda: pull_and_validate(connector, cursor)):
        land(pulled, validation)          # meanwhile the next batch is pulled and validated

A daily run has two cores and three stages per batch: pull and validate (the source's driver,
Arrow, Great Expectations) and land (SQLite or PostgreSQL, Parquet, the log), each spending
much of its time outside the GIL. Here the producer runs the whole generator on one thread —
the pull's cursor, connection and files are only touched there; a connector whose ``landed``
hook (called by the flow after each batch lands) could meet its pull says so and is pulled
inline (``Connector.prefetchable``) — and hands over at most ``depth`` items ahead of the
consumer: ``depth + 2`` batches in memory, besides what a connector reads ahead itself.

Nothing about landing changes: batches land in the order they were pulled, one at a time, by
the flow; a batch pulled ahead of a failure is simply not landed (the next run pulls it again
from the catalog's cursor). An error in the producer is raised to the consumer at the place of
the item it failed to produce, after every item before it; an error in the consumer (a breach,
a failed landing) stops the producer, which closes the generator on its own thread, and is
waited for — a retry must not pull while it still does. An interrupt (Ctrl-C, Prefect's
cancellation) waits at most ``_INTERRUPTED_WAIT`` for it: the process is on its way out.

The producer runs in a copy of the consumer's context (as Prefect's ``ThreadPoolTaskRunner``
does), so the tasks it calls belong to the same flow run and its log lines to the same run.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = 0, 1, 2
_POLL = 0.1  # seconds between looks at the stop flag while the consumer holds the queue full
_INTERRUPTED_WAIT = 5.0  # seconds an interrupted consumer waits for the producer's current batch
_log = logging.getLogger(__name__)


def prefetched(make: Callable[[], Iterator[T]], *, depth: int = 1, name: str = "prefetch") -> Iterator[T]:
    """The items of ``make()``, produced on another thread at most ``depth`` ahead of the caller."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    handover: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[int, object]) -> bool:
        while not stop.is_set():
            try:
                handover.put(message, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        items: Iterator[T] | None = None
        try:
            items = make()
            for item in items:
                if not put((_ITEM, item)):
                    break  # the consumer stopped: close the generator, here
            else:
                put((_END, None))
                return
        except BaseException as exc:  # every error, bugs included, goes to the consumer
            put((_ERROR, exc))
            return
        close = getattr(items, "close", None)
        try:
            if close is not None:
                close()  # a generator's finally blocks run on the thread that ran it
        except BaseException as exc:  # nobody is left to raise it to; its type only (no data)
            _log.warning("%s: closing the stopped pull failed: %s", name, type(exc).__name__)

    context = contextvars.copy_context()
    producer = threading.Thread(target=context.run, args=(produce,), name=name, daemon=True)
    producer.start()
    interrupted = False
    try:
        while True:
            kind, value = handover.get()
            if kind == _END:
                return
            if kind == _ERROR:
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    except BaseException as exc:
        interrupted = not isinstance(exc, (Exception, GeneratorExit))  # Ctrl-C, a cancellation
        raise
    finally:
        stop.set()  # a producer waiting to hand over sees it within _POLL; one pulling, after the batch
        producer.join(_INTERRUPTED_WAIT if interrupted else None)
        if producer.is_alive():
            _log.warning("%s: interrupted while a batch was being pulled; not waiting for it", name)


__all__ = ["prefetched"]
