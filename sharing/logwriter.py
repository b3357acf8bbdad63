"""Group commit for the counter's service: the log entries of many requests, one transaction.

Example::

    writer = LogWriter(catalog, log)          # one thread appends; requests wait for it
    logged = writer.append(answer.uses)        # blocks until durable; logged.indices
    writer.close()

Every answer the service gives is a use of someone's data, logged before the answer leaves
(``sharing.service``). One transaction, one signed checkpoint and one fsync per answer held the
service to a few dozen answers a second; here requests queue their entries and a single writer
thread appends everything waiting in one transaction under one checkpoint
(``evidence.log.append_committed_many``), then wakes each request with the leaves its own entries
got. A request is answered only once its entries are committed: nothing is answered that the log
does not hold.

A job may carry ``before``: work that must commit with its entries or not at all (spending a
citizen's single-use consent code). Such a job is committed alone, so its failure (the code was
spent meanwhile) is its own; if a grouped transaction fails, each of its jobs is retried alone,
so one request's error is never another's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from catalog import Catalog
from evidence.log import Committed, TransparencyLog, append_committed_many

MAX_BATCH = 256  # requests per transaction at most (a burst drains in a few)


@dataclass(frozen=True)
class Logged:
    """Where a job's entries went: their leaves, and the checkpoint signed over them."""

    indices: tuple[int, ...]
    tree_size: int
    checkpoint: str


@dataclass
class _Job:
    items: Sequence[Committed]
    before: Callable[[Connection], object] | None
    done: Future[Logged] = field(default_factory=Future)


class LogWriter:
    """One thread that appends the entries requests hand it, as many as wait, per transaction."""

    def __init__(self, catalog: Catalog, log: TransparencyLog, *, max_batch: int = MAX_BATCH) -> None:
        self.catalog, self.log, self.max_batch = catalog, log, max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._guard = threading.Lock()  # closing and queueing do not interleave
        self._thread = threading.Thread(target=self._run, name="onceonly-log-writer", daemon=True)
        self._thread.start()

    def append(
        self,
        items: Sequence[Committed],
        *,
        before: Callable[[Connection], object] | None = None,
        timeout: float = 60.0,
    ) -> Logged:
        """Append ``items`` (after ``before``, in the same transaction) and wait until committed;
        ``before``'s exception or the append's is raised here. A job not started within
        ``timeout`` is withdrawn (never committed later) and TimeoutError raised."""
        job = _Job(tuple(items), before)
        with self._guard:
            if self._closed or not self._thread.is_alive():
                raise RuntimeError("the log writer has stopped")
            self._queue.put(job)
        try:
            return job.done.result(timeout)
        except FutureTimeout:
            if job.done.cancel():  # not started: withdrawn
                raise TimeoutError("the transparency log did not take the entries in time") from None
            return job.done.result()  # started meanwhile: its commit decides

    def close(self) -> None:
        """Finish every job already handed over, then stop."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                jobs = [job]
                while len(jobs) < self.max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    jobs.append(more)
                # A job whose request gave up is withdrawn; the others are now running.
                jobs = [j for j in jobs if j.done.set_running_or_notify_cancel()]
                for alone in [j for j in jobs if j.before is not None]:
                    self._commit([alone])
                grouped = [j for j in jobs if j.before is None]
                if grouped:
                    self._commit(grouped)
        finally:  # whatever stopped the thread, nobody waits for it in vain
            stopped = RuntimeError("the log writer has stopped")
            while True:
                try:
                    left = self._queue.get_nowait()
                except queue.Empty:
                    break
                if left is not None and left.done.set_running_or_notify_cancel():
                    left.done.set_exception(stopped)

    def _commit(self, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        try:
            with self.catalog.begin() as conn:
                for job in jobs:
                    if job.before is not None:
                        job.before(conn)
                appended = append_committed_many(conn, self.log, items) if items else None
        except Exception as exc:  # handed to the waiting request, which raises it
            if len(jobs) > 1:
                for job in jobs:
                    self._commit([job])
            else:
                jobs[0].done.set_exception(exc)
            return
        at = appended.first_index if appended is not None else 0
        for job in jobs:
            count = len(job.items)
            job.done.set_result(
                Logged(
                    tuple(range(at, at + count)),
                    appended.tree_size if appended is not None else 0,
                    appended.checkpoint if appended is not None else "",
                )
            )
            at += count


__all__ = ["MAX_BATCH", "LogWriter", "Logged"]
