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

:meth:`LogWriter.append_async` is the same for a request answered on an event loop: it waits
for the commit without holding a thread (the service answers on its loop and wakes on the
writer's result, instead of parking a pool thread per request on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Connection

from catalog import Catalog
from evidence.log import Appended, Committed, TransparencyLog, append_committed_many

_logger = logging.getLogger("onceonly.serve")

MAX_BATCH = 256  # requests per transaction at most (a burst drains in a few)


@dataclass(frozen=True)
class Logged:
    """Where a job's entries went: their leaves, and the checkpoint signed over them."""

    indices: tuple[int, ...]
    tree_size: int
    checkpoint: str
    entries: tuple[bytes, ...] = ()  # the job's entries as logged (its leaves' bytes)


@dataclass
class _Job:
    items: Sequence[Committed]
    before: Callable[[Connection], object] | None
    done: Future[Logged] = field(default_factory=Future)


class LogWriter:
    """One thread that appends the entries requests hand it, as many as wait, per transaction."""

    def __init__(
        self,
        catalog: Catalog,
        log: TransparencyLog,
        *,
        max_batch: int = MAX_BATCH,
        committed: Callable[[Appended], object] | None = None,
        turns: Path | None = None,
    ) -> None:
        """``committed``: called in the writer's thread with each append once it is committed,
        before any of its requests is woken (a service's view of the log follows it there).
        ``turns``: a lock file the writers of several processes on one SQLite catalog take
        turns on around each transaction (``onceonly serve --workers N``): the kernel hands
        the lock over at once, where SQLite's own busy handler sleeps 1, 2, 5, 10… ms between
        tries."""
        self.catalog, self.log, self.max_batch = catalog, log, max_batch
        self._committed = committed
        self._turns = turns
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
        job = self._submit(items, before)
        try:
            return job.done.result(timeout)
        except FutureTimeout:
            if job.done.cancel():  # not started: withdrawn
                raise TimeoutError("the transparency log did not take the entries in time") from None
            return job.done.result()  # started meanwhile: its commit decides

    async def append_async(
        self,
        items: Sequence[Committed],
        *,
        before: Callable[[Connection], object] | None = None,
        timeout: float = 60.0,
    ) -> Logged:
        """:meth:`append` for a caller on an event loop: the loop goes on serving while the
        entries wait; the same withdrawal after ``timeout``. (Committing on the loop itself
        was measured too: slower, as the loop then waits for each commit's fsync.)"""
        job = self._submit(items, before)
        waiting = asyncio.wrap_future(job.done)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout)
        except TimeoutError:
            if job.done.cancel():  # not started: withdrawn
                raise TimeoutError("the transparency log did not take the entries in time") from None
            return await waiting  # started meanwhile: its commit decides

    def _submit(self, items: Sequence[Committed], before: Callable[[Connection], object] | None) -> _Job:
        job = _Job(tuple(items), before)
        with self._guard:
            if self._closed or not self._thread.is_alive():
                raise RuntimeError("the log writer has stopped")
            self._queue.put(job)
        return job

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
                self._commit_jobs(jobs)
        finally:  # whatever stopped the thread, nobody waits for it in vain
            stopped = RuntimeError("the log writer has stopped")
            while True:
                try:
                    left = self._queue.get_nowait()
                except queue.Empty:
                    break
                if left is not None and left.done.set_running_or_notify_cancel():
                    left.done.set_exception(stopped)

    def _commit_jobs(self, jobs: list[_Job]) -> None:
        # A job whose request gave up is withdrawn; the others are now running.
        jobs = [j for j in jobs if j.done.set_running_or_notify_cancel()]
        for alone in [j for j in jobs if j.before is not None]:
            self._commit([alone])
        grouped = [j for j in jobs if j.before is None]
        if grouped:
            self._commit(grouped)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """This process's turn to write, among the writers sharing ``turns`` (none: always);
        for another transaction of the service that appends to the log (a consent granted)."""
        if self._turns is None:
            yield
            return
        fd = os.open(self._turns, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _commit(self, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        try:
            with self.turn(), self.catalog.begin() as conn:
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
        if appended is not None and self._committed is not None:
            try:
                self._committed(appended)
            except Exception:  # committed whatever it says: the requests are answered
                _logger.exception("following the log's own append failed")
        at = appended.first_index if appended is not None else 0
        for job in jobs:
            count = len(job.items)
            job.done.set_result(
                Logged(
                    tuple(range(at, at + count)),
                    appended.tree_size if appended is not None else 0,
                    appended.checkpoint if appended is not None else "",
                    _entries_of(appended, at, count) if appended is not None else (),
                )
            )
            at += count


def _entries_of(appended: Appended, first: int, count: int) -> tuple[bytes, ...]:
    """The entries of leaves ``first..first+count-1`` among those ``appended`` handed back."""
    start = first - (appended.tree_size - len(appended.entries))
    return appended.entries[start : start + count] if start >= 0 else ()


__all__ = ["MAX_BATCH", "LogWriter", "Logged"]
