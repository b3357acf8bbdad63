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
writer's result, instead of parking a pool thread per request on it). The jobs a loop hands
over in one pass of its ready tasks go to the writer together, at the end of that pass: handed
over one by one, the writer woke for each (the loop lets go of the interpreter at its next
query) and committed the first alone — 1.2 answers a transaction under 8 connections, each
transaction ~0.6 ms of CPU, as much as the rest of the writer's work for an answer.

On a SQLite catalog the writer's transactions do not copy the write-ahead log back into the
database themselves (SQLite's automatic checkpoint, inside the transaction that reaches its
threshold: then 1,000 pages, ~200 answers; now 256 MiB of WAL, ``catalog``): every
:data:`CHECKPOINT_EVERY` of them the writer does, once the requests of the transaction are
woken, in its turn (``PRAGMA wal_checkpoint(PASSIVE)``; nobody else writes then, so it copies
everything and the next transaction starts the WAL over). The transaction that ran into the
automatic checkpoint held its own requests and every one behind it for ~16 MB of copying: at
1M certificates over one connection the p99 was 8 ms against a p50 of 1.9. (A checkpoint in a
thread of the service's own, beside the writer, never caught up with it: the WAL grew past
300 MB in 20 s, and every read slowed with it.)

With ``appender`` (``onceonly serve`` on a SQLite file, one process) the grouped transactions
run in a process of their own (:class:`_Appender`, started with the writer): the writer thread
hands each group over a pipe and waits for the append without the interpreter lock. In the
service's process the appending thread needed that lock a dozen times a transaction (each query
gives it up and takes it back), and took it back only when the loop let go: a transaction took
~2 ms of wall time for ~1.1 ms of CPU, and the writer, one transaction at a time, was what the
answers waited for. The appender's transactions take turns with the service's own (``before``
jobs: a consent spent) on the same lock file. It copies the write-ahead log back in a thread
of its own, woken at each commit (:class:`_WalCopier`): that thread mostly keeps up, and SQLite
starts the WAL over in the appender's idle moments; every ``CHECKPOINT_EVERY`` transactions the
appender copies it back itself, in its turn, only if the thread has fallen behind. A
group the appender failed on is retried a job at a time, as in the thread. One it died under
before its COMMIT (killed, out of memory) is committed by the writer itself; one it died under
during the COMMIT fails (:class:`AppenderStopped`: it may have been logged — the view finds it
when it next reads the log — and is never logged twice). One that stops answering (hung, not
dead: no EOF on its pipe) is killed after ``_Appender.REPLY_TIMEOUT`` (90 s) and then taken as
one that died. A later group starts a new appender, not within 30 s of the last one's start (nor
of a start that failed); meanwhile the writer commits in its own thread. Stopped (``close``, or
at exit), it finishes the exchange under way.

The jobs of an event loop (:meth:`LogWriter.append_async`, without ``before``) do not go through
the writer's thread to the appender: the loop sends each group over the pipe itself and reads
the outcome when the pipe is readable (``add_reader``), the jobs handed over meanwhile waiting
for the next group. Through the thread, a group woke it, and it took the interpreter lock back
from the loop at each read and write of the pipe: with requests spread out (20 connections
pausing between answers, 1M certificates) the serving process spent 1.03-1.04 ms of CPU an
answer, 0.86-0.95 without the thread between. The outcome is taken as the thread takes it: gone
before ``committing``, the group goes to the thread, which commits it; gone after, or out of
turn, its requests fail (:class:`AppenderStopped`); rolled back, its jobs are tried alone in the
thread. The appender busy with the thread's own exchange, or not running (started again in the
thread, never on the loop), the loop's group goes to the thread; the thread in turn never waits
for a loop's exchange (a loop blocked on a blocking ``append``, or stopped, would never end it):
it commits that group itself, in its turn on the lock file (the appender sends its outcome after
its turn, so one the loop has not read yet holds nobody's turn). ``close`` first lets the loops
hand over what their passes accepted and waits for the loop's group out and those behind it (the
writer's thread still taking what falls to it), then stops the thread and the appender. A loop
closed with a group out never reads its outcome, nor does one blocked in ``close`` on its own
thread: the next exchange takes the pipe over and discards that appender.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from catalog import Catalog
from evidence.log import Appended, Committed, TransparencyLog, append_committed_many
from onceonly.privacy import scrub_text

_logger = logging.getLogger("onceonly.serve")

MAX_BATCH = 256  # requests per transaction at most (a burst drains in a few)
# The writer's transactions between two checkpoints of a SQLite catalog's write-ahead log
# (~10 pages each: the WAL stays near 200 pages; a long one slows every read too).
CHECKPOINT_EVERY = 20
# The appender's WAL, in frames (~2 MiB of 4 KiB pages), past which it copies the WAL back in its
# own turn after all, at its next CHECKPOINT_EVERY: its copier thread's copies keep ending after
# the appender's next transaction has begun, so SQLite has not started the WAL over.
WAL_FRAMES_LIMIT = 500


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
    # append_async's: the loop and its future, settled from ``done`` once per transaction
    waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[Logged]] | None = None
    alone: bool = False  # committed in a transaction of its own (a group it was in rolled back)


class LogWriter:
    """One thread that appends the entries requests hand it, as many as wait, per transaction."""

    def __init__(
        self,
        catalog: Catalog,
        log: TransparencyLog,
        *,
        max_batch: int = MAX_BATCH,
        committed: Callable[[Appended], object] | None = None,
        committed_busy: Callable[[], bool] | None = None,
        turns: Path | None = None,
        appender: Callable[[], tuple[Catalog, TransparencyLog]] | None = None,
    ) -> None:
        """``committed``: called with each append once it is committed, before any of its
        requests is woken (a service's view of the log follows it there): in the writer's thread,
        or on the loop for a group the loop exchanged with the appender — in a thread of the
        loop's pool instead when ``committed_busy()`` says it would wait now (the view folding a
        growth in another thread: the loop does not wait for that).
        ``turns``: a lock file the writers of several processes on one SQLite catalog take
        turns on around each transaction (``onceonly serve --workers N``): the kernel hands
        the lock over at once, where SQLite's own busy handler sleeps 1, 2, 5, 10… ms between
        tries. ``appender``: the grouped transactions in a process of their own, which opens
        its catalog and log with this (picklable: a module-level function or a partial of one)
        and takes turns on ``turns`` (required with it)."""
        if appender is not None and turns is None:
            raise ValueError("an appender process takes turns with this process: give the turns lock file")
        self.catalog, self.log, self.max_batch = catalog, log, max_batch
        self._committed, self._committed_busy = committed, committed_busy
        self._turns = turns
        self._queue: queue.SimpleQueue[_Job | list[_Job] | None] = queue.SimpleQueue()
        # Jobs of a loop's current pass (append_async), handed over together when it ends.
        self._passing: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self._closed = False  # the writer's thread told to stop: nothing more reaches it
        self._closing = False  # close() under way: no new job (those handed over are finished)
        self._guard = threading.Lock()  # closing and queueing do not interleave
        self._sqlite = catalog.engine.dialect.name == "sqlite"
        self._since_checkpoint = 0
        self._appender = (
            _Appender(appender, turns, key=log.key.vkey)
            if appender is not None and turns is not None
            else None
        )
        # The loop's own exchanges with the appender (append_async, jobs without ``before``): the
        # loop sends a group over the pipe and reads the outcome when the pipe is readable, so
        # neither a thread's wake-up nor its taking the interpreter lock back (at each read and
        # write of the pipe) stands between a request and its answer. The first loop that
        # appends has them; jobs handed over while a group is out wait for the next one.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_waiting: list[_Job] = []
        self._loop_out: list[_Job] | None = None  # the group the appender has from the loop
        self._loop_committing = False
        self._loop_fd = -1  # the pipe the loop reads its outcome from
        self._loop_timer: asyncio.TimerHandle | None = None  # the group out's REPLY_TIMEOUT
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
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Logged] = loop.create_future()
        job = self._submit_in_pass(items, before, (loop, waiter))

        def expire() -> None:
            if job.done.cancel() and not waiter.done():  # not started: withdrawn
                waiter.set_exception(TimeoutError("the transparency log did not take the entries in time"))

        timer = loop.call_later(timeout, expire)  # started meanwhile: its commit decides
        try:
            return await waiter
        except asyncio.CancelledError:  # the request given up (a shutdown): withdrawn if not started
            job.done.cancel()
            raise
        finally:
            timer.cancel()

    def _submit(self, items: Sequence[Committed], before: Callable[[Connection], object] | None) -> _Job:
        job = _Job(tuple(items), before)
        with self._guard:
            if self._closing or self._closed or not self._thread.is_alive():
                raise RuntimeError("the log writer has stopped")
            self._queue.put(job)
        return job

    def _submit_in_pass(
        self,
        items: Sequence[Committed],
        before: Callable[[Connection], object] | None,
        waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[Logged]],
    ) -> _Job:
        """Queue a job of the running loop's current pass, handed to the writer when the pass
        ends (``call_soon``: after the tasks already ready, which may append too)."""
        if self._closing or self._closed or not self._thread.is_alive():
            raise RuntimeError("the log writer has stopped")
        loop = waiter[0]
        job = _Job(tuple(items), before, waiter=waiter)
        passing = self._passing.get(loop)
        if passing is None:
            self._passing[loop] = passing = []
            loop.call_soon(self._hand_over, loop)
        passing.append(job)
        return job

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._hand_over_pass(loop, list(self._passing.get(loop, ())))
        finally:  # seen by close() until they are waiting, out or with the thread
            self._passing.pop(loop, None)

    def _hand_over_pass(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        with self._guard:  # one loop has the exchanges; another once that one has closed
            mine = self._appender is not None and (
                self._loop is None or self._loop is loop or self._loop.is_closed()
            )
            if mine and self._loop is not loop:
                self._loop, self._loop_out, self._loop_waiting, self._loop_committing = loop, None, [], False
                self._stop_timer()  # the closed loop's (it never fires there)
        if mine:
            self._loop_waiting += [j for j in jobs if j.before is None]
            jobs = [j for j in jobs if j.before is not None]  # committed in the writer's thread
            self._pump()
            if not jobs:
                return
        self._to_thread(jobs)

    def _to_thread(self, jobs: list[_Job]) -> None:
        """``jobs`` (none running yet) handed to the writer's thread; failed if it has stopped."""
        with self._guard:
            if not self._closed and self._thread.is_alive():
                for start in range(0, len(jobs), self.max_batch):  # a transaction holds max_batch at most
                    self._queue.put(jobs[start : start + self.max_batch])
                return
        stopped = RuntimeError("the log writer has stopped")
        for job in jobs:  # closed meanwhile: nobody waits in vain
            if job.done.set_running_or_notify_cancel():
                job.done.set_exception(stopped)
        _settle(jobs)

    def _pump(self) -> None:
        """On the loop: the next group of waiting jobs sent to the appender, unless one is out.
        The writer's thread takes them instead when the appender is busy with the thread's own
        exchange, or is not running (started again there, not on the loop), or has stopped."""
        appender, loop = self._appender, self._loop
        if self._loop_out is not None or not self._loop_waiting or appender is None or loop is None:
            return
        group = [j for j in self._loop_waiting[: self.max_batch] if not j.done.cancelled()]
        self._loop_out = group  # out from here (close() waits for it), until the thread has it
        del self._loop_waiting[: self.max_batch]
        if not group:
            self._loop_out = None
            self._pump()
            return
        if not appender.take_exchange(loop):
            self._to_thread(group)
            self._loop_out = None
            self._pump()
            return
        reading = running = False
        try:
            message = _group_message([item for job in group for item in job.items])
            pipe = appender.pipe()
            self._loop_fd = pipe.fileno()
            loop.add_reader(self._loop_fd, self._on_reply)  # before sending: an outcome is always read
            reading = True
            for job in group:
                job.done.set_running_or_notify_cancel()  # none was withdrawn: checked above, on this loop
            running = True
            self._loop_committing = False
            self._loop_timer = loop.call_later(appender.REPLY_TIMEOUT, self._reply_overdue, group)
            pipe.send_bytes(message)  # the last step here: once sent, it may be committed there
        except Exception as exc:  # nothing committed there: the thread commits them, or says why
            self._stop_timer()
            if reading:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self._loop_fd)
            if running:  # perhaps half sent: the process is never read out of turn
                appender.discard()
            appender.give_exchange()
            if not isinstance(exc, OSError | ValueError):  # not a pipe gone: say what
                _logger.warning(
                    "the log appender could not take a group from the loop: %s", scrub_text(str(exc))
                )
            self._to_thread(_again(group) if running else group)
            self._loop_out = None
            self._pump()

    def take_ready(self) -> None:
        """On the loop that has the exchange: what the appender has already sent about the
        group out (its outcome), taken now rather than at the loop's next poll. A request read
        in the same pass as the commit otherwise finds the catalog's newest checkpoint ahead of
        the service's view, which then follows the log from the catalog (the note's signature
        checked, the entries read back) instead of from the entries the outcome hands it: ~4 %
        of the loop's CPU under 3 connections."""
        loop = self._loop
        if self._loop_out is None or self._appender is None or loop is None or _running_loop() is not loop:
            return
        while self._loop_out is not None:
            pipe = self._appender.running_pipe()
            if pipe is None or not pipe.poll():
                return
            out = self._loop_out
            self._on_reply()
            if self._loop_out is not out:  # taken (the next group may be out already): enough
                return

    def _reply_overdue(self, group: list[_Job]) -> None:
        """On the loop: no word on ``group`` within REPLY_TIMEOUT (since it was sent, or since its
        COMMITTING): the appender is hung, and killed (not waited for: the loop goes on); the EOF
        that follows is read as a dead one's (:meth:`_on_reply`). A word already waiting in the
        pipe is read first, the timer started again."""
        appender, loop = self._appender, self._loop
        if self._loop_out is not group or appender is None or loop is None:
            return
        pipe = appender.running_pipe()
        if pipe is not None and pipe.poll():
            self._loop_timer = loop.call_later(appender.REPLY_TIMEOUT, self._reply_overdue, group)
            return
        appender.kill_hung(wait=False)

    def _stop_timer(self) -> None:
        if self._loop_timer is not None:
            self._loop_timer.cancel()
            self._loop_timer = None

    def _on_reply(self) -> None:
        """On the loop: the appender's word on the group it has (``_COMMITTING``, then the
        outcome), taken as :meth:`_Appender.append` takes it in the writer's thread."""
        appender, group, loop = self._appender, self._loop_out, self._loop
        assert appender is not None and group is not None and loop is not None
        pipe = appender.running_pipe()
        if pipe is None:  # stopped by close() on this loop's thread with the group out: not read
            self._stop_timer()
            with contextlib.suppress(Exception):
                loop.remove_reader(self._loop_fd)
            stopped = AppenderStopped(
                "the log appender process was stopped with the group out; the uses may have been logged"
            )
            for job in group:
                job.done.set_exception(stopped)
            _settle(group)
            self._loop_out = None
            return
        gone = False
        try:
            reply = pipe.recv()
            if reply == _COMMITTING and not self._loop_committing:
                self._loop_committing = True
                if not pipe.poll():  # the outcome comes once committed, its REPLY_TIMEOUT from now
                    self._stop_timer()
                    self._loop_timer = loop.call_later(appender.REPLY_TIMEOUT, self._reply_overdue, group)
                    return
                reply = pipe.recv()
        except Exception as exc:  # gone, or an answer that does not read: never read out of turn
            reply, gone = exc, True
        loop.remove_reader(pipe.fileno())
        self._stop_timer()
        committing = self._loop_committing
        rolled_back = not gone and isinstance(reply, BaseException)
        done = not gone and committing and _is_outcome(reply)
        if not (rolled_back or done):
            appender.discard()
        try:
            if done:  # followed before the exchange is given back: the follows come in log order
                self._finished_on_loop(loop, group, Appended(*reply))
        finally:
            appender.give_exchange()
        try:
            if rolled_back:  # each job alone, in the writer's thread (one's error is its own)
                self._to_thread(_again(group, alone=True))
            elif gone and not committing:  # nothing committed there: the writer's thread commits it
                _logger.warning(
                    "the log appender process stopped before committing; "
                    "the log writer commits the group itself"
                )
                self._to_thread(_again(group))
            elif not done:  # perhaps committed: never tried again (the view will see)
                stopped = AppenderStopped(
                    "the log appender process stopped while committing; the uses may have been logged"
                    if gone
                    else f"the log appender process answered {type(reply).__name__} out of turn"
                )
                for job in group:
                    job.done.set_exception(stopped)
                _settle(group)
        finally:
            self._loop_out = None
            self._pump()

    def _finished_on_loop(
        self, loop: asyncio.AbstractEventLoop, group: list[_Job], appended: Appended
    ) -> None:
        """The loop's group committed: followed and answered here, or in a thread of the loop's
        pool when following would wait now (``committed_busy``)."""
        if self._committed is not None and self._committed_busy is not None and self._committed_busy():
            try:
                loop.run_in_executor(None, partial(self._finish, group, appended, wake=_wake))
                return
            except RuntimeError:  # the loop's pool shut down (the loop ending): here, then
                pass
        self._finish(group, appended, wake=_settle)

    def close(self) -> None:
        """Finish every job already handed over, then stop."""
        with self._guard:
            if self._closing:
                return
            self._closing = True
        self._loop_groups_finished(timeout=60)  # what the loop hands the thread meanwhile, it takes
        with self._guard:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=60)
        if self._appender is not None and not self._thread.is_alive():
            self._appender.stop()  # it copies its own write-ahead log back as it stops
            self._fail_loop_groups()
        if self._sqlite and self._since_checkpoint and not self._thread.is_alive():
            self._checkpoint()

    def _fail_loop_groups(self) -> None:
        """Closed on the loop's own thread (which could not read the outcome meanwhile): the group
        it had out fails as perhaps logged (its appender was stopped under it; its reader, on a
        closed pipe, never fires), and the jobs waiting behind it as stopped."""
        loop = self._loop
        if loop is None or loop is not _running_loop():
            return
        group, waiting = self._loop_out or [], self._loop_waiting
        self._loop_out, self._loop_waiting = None, []
        self._stop_timer()
        with contextlib.suppress(Exception):
            loop.remove_reader(self._loop_fd)
        out = AppenderStopped("the log writer was closed with the group out; the uses may have been logged")
        for job in group:
            if not job.done.done():
                job.done.set_exception(out)
        stopped = RuntimeError("the log writer has stopped")
        for job in waiting:
            if job.done.set_running_or_notify_cancel():
                job.done.set_exception(stopped)
        _settle([*group, *waiting])

    def _loop_groups_finished(self, timeout: float) -> None:
        """Until the jobs loops accepted are handed over, and the loop's group out and those
        waiting behind it appended or handed to the writer's thread (the loops running on, in
        other threads; not within ``timeout``: left to the appender's stop)."""
        here = _running_loop()

        def running(loop: asyncio.AbstractEventLoop | None) -> bool:
            # closed on a loop itself, that loop cannot run the exchange meanwhile
            return loop is not None and loop is not here and loop.is_running() and not loop.is_closed()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            passing = any(running(loop) for loop in list(self._passing))
            out = running(self._loop) and (self._loop_out is not None or bool(self._loop_waiting))
            if not (passing or out):
                return
            time.sleep(0.002)

    def _checkpoint(self) -> None:
        self._since_checkpoint = 0
        _wal_checkpoint(self.catalog, self._turns)

    def _run(self) -> None:
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                jobs = job if isinstance(job, list) else [job]  # a list handed over is the writer's
                while len(jobs) < self.max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    jobs += more if isinstance(more, list) else [more]  # under twice max_batch
                try:
                    self._commit_jobs(jobs)
                except Exception as exc:  # not the jobs' own errors (those are theirs): none waits in vain
                    _logger.exception("the log writer failed on a batch")
                    for failed in jobs:
                        if not failed.done.done():
                            failed.done.set_exception(exc)
                    _wake(jobs)
        finally:  # whatever stopped the thread, nobody waits for it in vain
            stopped = RuntimeError("the log writer has stopped")
            while True:
                try:
                    left = self._queue.get_nowait()
                except queue.Empty:
                    break
                for job in left if isinstance(left, list) else [left] if left is not None else []:
                    if job.done.set_running_or_notify_cancel():
                        job.done.set_exception(stopped)
                    _wake([job])

    def _commit_jobs(self, jobs: list[_Job]) -> None:
        # A job whose request gave up is withdrawn; the others are now running.
        jobs = [j for j in jobs if j.done.set_running_or_notify_cancel()]
        for alone in [j for j in jobs if j.before is not None or j.alone]:
            self._commit([alone])
        grouped = [j for j in jobs if j.before is None and not j.alone]
        if grouped:
            self._commit(grouped)

    def turn(self) -> contextlib.AbstractContextManager[None]:
        """This process's turn to write, among the writers sharing ``turns`` (none: always);
        for another transaction of the service that appends to the log (a consent granted)."""
        return _turn(self._turns)

    def _commit_here(self, jobs: list[_Job], items: list[Committed]) -> Appended | None:
        """``jobs`` committed in this thread: each one's ``before``, then ``items`` appended."""
        with self.turn(), self.catalog.begin_kept() as conn:
            if self._sqlite:  # copied back by the writer after its requests are woken (_checkpoint)
                conn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
            for job in jobs:
                if job.before is not None:
                    job.before(conn)
            return append_committed_many(conn, self.log, items) if items else None

    def _commit(self, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        appender = self._appender if items and all(job.before is None for job in jobs) else None
        by_appender = False
        try:
            appended: Appended | None = None
            if appender is not None:
                try:  # not while a loop has the exchange: the group is committed here, in its turn
                    appended = appender.try_append(items)
                    by_appender = appended is not None
                except AppenderUnavailable as exc:  # nothing committed there: here, then
                    _logger.warning("%s; the log writer commits the group itself", exc)
            if not by_appender:
                appended = self._commit_here(jobs, items)
        except AppenderStopped as exc:  # perhaps committed: not tried again (the view will see)
            for job in jobs:
                job.done.set_exception(exc)
            _wake(jobs)
            return
        except Exception as exc:  # handed to the waiting request, which raises it
            if len(jobs) > 1:
                for job in jobs:
                    self._commit([job])
            else:
                jobs[0].done.set_exception(exc)
                _wake(jobs)
            return
        self._finish(jobs, appended, wake=_wake)
        if self._sqlite and not by_appender:  # the appender checkpoints its own
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_EVERY:
                self._checkpoint()

    def _finish(
        self, jobs: list[_Job], appended: Appended | None, *, wake: Callable[[Sequence[_Job]], None]
    ) -> None:
        """``appended`` committed: followed (``committed``), then each job given its leaves."""
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
        wake(jobs)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """This thread's running event loop, if any (one blocked here cannot end its exchange)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _again(jobs: Sequence[_Job], *, alone: bool = False) -> list[_Job]:
    """Jobs already running, as new ones for the writer's thread: the same entries and waiters
    (no longer withdrawn by their timeout: the writer commits them)."""
    return [_Job(job.items, job.before, waiter=job.waiter, alone=alone) for job in jobs]


def _group_message(items: Sequence[Committed]) -> bytes:
    # Pickled as plain tuples (a dataclass each pickles ~2x slower): an entry that does not
    # pickle is its request's error, and nothing was sent.
    return pickle.dumps(
        [(item.kind, item.ref, item.document, item.subject) for item in items], pickle.HIGHEST_PROTOCOL
    )


def _is_outcome(reply: object) -> bool:
    return isinstance(reply, tuple) and len(reply) == 5


@contextlib.contextmanager
def _turn(turns: Path | None) -> Iterator[None]:
    """A turn on the lock file ``turns`` among the processes writing one catalog (none: always)."""
    if turns is None:
        yield
        return
    fd = os.open(turns, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _wal_checkpoint(catalog: Catalog, turns: Path | None) -> bool:
    """Copy a SQLite catalog's write-ahead log back into the database, in this writer's turn:
    whether all of it was copied."""
    try:
        with _turn(turns):
            raw = catalog.engine.raw_connection()
            try:
                whole, frames, copied = _copy_wal(raw)
            finally:
                raw.close()
        if not whole:  # a reader still on old frames, or another copy under way: the next one
            _logger.info("the catalog's WAL checkpoint copied %s of %s frames", copied, frames)
        return whole
    except Exception as exc:  # the next one copies what this one could not
        _logger.warning("checkpointing the catalog's write-ahead log failed: %s", scrub_text(str(exc)))
        return False


def _copy_wal(raw: Any) -> tuple[bool, int, int]:
    """``PRAGMA wal_checkpoint(PASSIVE)`` on the DBAPI connection of ``raw``: whether it copied
    the whole WAL, the WAL's length and the frames copied (-1, -1 when another connection's copy
    held SQLite's checkpoint lock)."""
    busy, frames, copied = raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return busy == 0 and copied == frames, int(frames), int(copied)


class AppenderStopped(RuntimeError):
    """The appender process stopped while committing a group: it may or may not have committed."""


class AppenderUnavailable(RuntimeError):
    """No appender process took the group (it could not start, or was gone, or stopped before
    committing): nothing of it was committed there, and the writer commits it itself."""


_COMMITTING = "committing"  # the appender's word just before COMMIT: from here on, perhaps logged


class _Appender:
    """The writer's grouped transactions in a process of their own (spawned: the service's
    process has threads and a loop running), one at a time over a pipe. Each group is answered
    ``_COMMITTING`` just before its COMMIT and then with where it went, or with the error that
    rolled it back: a process gone before the first word committed nothing (the group can be
    committed elsewhere), one gone after it may have. Any other answer, or an error reading
    one, and the process is killed, never read out of turn. Started again for a later group,
    not more often than every :data:`RETRY_AFTER` seconds once a start has failed."""

    START_TIMEOUT = 120.0  # s: the process imports the catalog and opens the log's key
    RETRY_AFTER = 30.0  # s: between attempts to start it again after one failed
    # s: the longest a group waits for the process's next word. A group commits in ~1 ms; a
    # healthy process may wait for its turn (the writer's thread holding it through its own
    # 30 s wait for SQLite's lock) and then for SQLite's lock (its own 30 s busy timeout, after
    # which it says so). A process silent for longer is hung (a dead one's pipe reads EOF at
    # once): it is killed, and its group then goes as a dead one's would (to the writer before
    # its COMMITTING, failed after).
    REPLY_TIMEOUT = 90.0

    def __init__(
        self,
        opener: Callable[[], tuple[Catalog, TransparencyLog]],
        turns: Path,
        *,
        key: str | None = None,
        main: Callable[..., None] | None = None,
    ) -> None:
        """``key``: the verifier key (``SigningKey.vkey``) the appender's log must sign with —
        the service's (a key rotated since the service started is refused). ``main``: the
        process's function (tests stand in for it)."""
        self._opener, self._turns, self._key = opener, turns, key
        self._main = main or _appender_main
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._pipe: Pipe | None = None
        self._retry_at = 0.0
        self._started_at = 0.0
        self._stopped = False
        # One exchange at a time: the writer's thread appends; stop() (close, or atexit while
        # that thread may still be appending) waits for the exchange under way.
        self._exchange = threading.Lock()
        # The loop whose exchange is under way (take_exchange): one that closed never ends it.
        self._loop_holder: asyncio.AbstractEventLoop | None = None
        self._takeover = threading.Lock()
        self._start()
        # Before multiprocessing's own exit handler, which would wait for it: an appender
        # stops when told or when its pipe closes, not on SIGTERM (see _appender_main).
        atexit.register(self.stop)

    def _start(self) -> None:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=self._main,
            # CHECKPOINT_EVERY as this process has it (a test sets it: the appender's is spawned)
            args=(theirs, self._opener, self._turns, self._key, CHECKPOINT_EVERY),
            name="onceonly-log-appender",
        )
        process.daemon = True  # never outlives the service
        process.start()
        theirs.close()
        try:  # opened, or why not (a missing catalog, a key that does not open)
            if not ours.poll(self.START_TIMEOUT):
                raise AppenderUnavailable("the log appender process did not start in time")
            ready = ours.recv()
            if isinstance(ready, BaseException):
                raise ready
            if ready != "ready":
                raise AppenderUnavailable(
                    f"the log appender process answered {type(ready).__name__} as it started"
                )
        except BaseException as exc:
            _end(ours, process)  # a late "ready" is never read as a group's answer
            if isinstance(exc, EOFError | OSError):
                raise AppenderUnavailable("the log appender process stopped as it started") from exc
            raise
        self._process, self._pipe, self._started_at = process, ours, time.monotonic()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def available(self) -> bool:
        """Running, or started again now: not before :data:`RETRY_AFTER` after a failed start,
        nor within :data:`RETRY_AFTER` of the start of one that died (one dying at every group
        would otherwise be started again for each); never once stopped."""
        self._take()  # not beside stop(): a process started after it would outlive it
        try:
            return self._available()
        finally:
            self._exchange.release()

    def _take(self, timeout: float | None = None, *, give_way: bool = False) -> bool:
        """The exchange, once the one under way is over (False if not within ``timeout``; with
        ``give_way``, False at once while an event loop has it). One an event loop left out when
        it closed is never over: it is taken over, and its process discarded (the outcome of the
        group it had is never read; its requests ended with their loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        step = 0.01 if give_way else 0.5
        while True:
            holder = self._loop_holder
            if give_way and holder is not None and not holder.is_closed():
                return False
            wait = step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))
            if self._exchange.acquire(timeout=wait):
                return True
            with self._takeover:
                holder = self._loop_holder
                if holder is not None and (holder.is_closed() or holder is _running_loop()):
                    self._loop_holder = None
                    self._discard()
                    return True  # the lock it held is this caller's to release
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _available(self) -> bool:
        if self._stopped:
            return False
        if self._pipe is not None and self._process is not None and self._process.is_alive():
            return True
        if self._started_at:  # one ran, and died or was discarded
            self._retry_at = max(self._retry_at, self._started_at + self.RETRY_AFTER)
            self._started_at = 0.0
        self._discard()
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._start()
        except Exception as exc:
            self._retry_at = time.monotonic() + self.RETRY_AFTER
            _logger.warning(
                "the log appender process could not be started again; the log writer commits in "
                "its own thread for %.0f s: %s",
                self.RETRY_AFTER,
                scrub_text(str(exc)),
            )
            return False
        return True

    def append(self, items: Sequence[Committed]) -> Appended:
        """``items`` appended in one transaction by the process (:meth:`available` first).
        :class:`AppenderUnavailable`: nothing was committed there; :class:`AppenderStopped`:
        it may have been; any other error is the append's own (rolled back)."""
        message = _group_message(items)
        self._take()
        try:
            return self._exchange_taken(message)
        finally:
            self._exchange.release()

    def try_append(self, items: Sequence[Committed]) -> Appended | None:
        """:meth:`append` if the process runs (started again here when due) and no event loop
        has the exchange; None otherwise, for the caller to commit the group itself. A loop's
        exchange is not waited for: a loop blocked waiting for the caller, or stopped, would
        never end it."""
        message = _group_message(items)
        if not self._take(give_way=True):
            return None
        try:
            return self._exchange_taken(message) if self._available() else None
        finally:
            self._exchange.release()

    def _exchange_taken(self, message: bytes) -> Appended:
        pipe = self._pipe
        if pipe is None or self._stopped:
            raise AppenderUnavailable("no log appender process is running")
        committing = False
        try:
            pipe.send_bytes(message)
            reply = self._recv(pipe)
            if reply == _COMMITTING:
                committing = True
                reply = self._recv(pipe)
        except Exception as exc:  # gone, or an answer that does not read: never read out of turn
            self._discard()
            if committing:
                raise AppenderStopped(
                    "the log appender process stopped while committing; the uses may have been logged"
                ) from exc
            raise AppenderUnavailable("the log appender process stopped before committing") from exc
        if isinstance(reply, BaseException):
            raise reply  # rolled back
        if committing and _is_outcome(reply):
            return Appended(*reply)
        self._discard()
        raise AppenderStopped(f"the log appender process answered {type(reply).__name__} out of turn")

    def _recv(self, pipe: Pipe) -> Any:
        """The process's next word on ``pipe``; silent for :data:`REPLY_TIMEOUT`, it is killed
        first (:meth:`kill_hung`), and the word is then what it said before, or EOF."""
        if not pipe.poll(self.REPLY_TIMEOUT):
            self.kill_hung()
        return pipe.recv()

    def kill_hung(self, *, wait: bool = True) -> None:
        """The process killed, its pipe left open: what it sent before it was killed (its
        COMMITTING) is still read, then EOF, as from a process that died (``wait``: once it has
        gone; an event loop does not wait, the EOF wakes it)."""
        process = self._process
        if process is not None and process.is_alive():
            _logger.error(
                "the log appender process (pid %s) did not answer within %g s: killed",
                process.pid,
                self.REPLY_TIMEOUT,
            )
            process.kill()
            if wait:
                process.join(5)

    def take_exchange(self, loop: asyncio.AbstractEventLoop) -> bool:
        """For an event loop's exchange (:meth:`LogWriter._pump`): the exchange taken without
        waiting, if no other is under way and the process is running (never started here: a
        start may take seconds); False otherwise. :meth:`give_exchange` once its outcome is read."""
        if not self._exchange.acquire(blocking=False):
            return False
        if self._stopped or self._pipe is None or self._process is None or not self._process.is_alive():
            self._exchange.release()
            return False
        self._loop_holder = loop
        return True

    def give_exchange(self) -> None:
        with self._takeover:
            if self._loop_holder is None:
                return  # taken over meanwhile (the loop was closed): not the loop's to release
            self._loop_holder = None
        self._exchange.release()

    def pipe(self) -> Pipe:
        """The running process's pipe (only under the exchange taken)."""
        if self._pipe is None:
            raise AppenderUnavailable("no log appender process is running")
        return self._pipe

    def running_pipe(self) -> Pipe | None:
        """The running process's pipe, or None once it was discarded or stopped."""
        return self._pipe

    def discard(self) -> None:
        """The process killed and its pipe closed (only under the exchange taken)."""
        self._discard()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the process for good: once the exchange under way (if any) is over, told to, it
        copies its write-ahead log back and exits (killed if it has not within ``timeout``). An
        exchange still going after ``timeout`` has its process killed under it (its group then
        fails or is committed by the writer, by what the process had said)."""
        self._stopped = True  # no new exchange, no new process
        atexit.unregister(self.stop)
        if not self._take(timeout):
            process = self._process
            if process is not None and process.is_alive():
                process.kill()
            return
        try:
            pipe, process = self._pipe, self._process
            self._pipe = self._process = None
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):
                    pipe.send_bytes(pickle.dumps(None))
            if process is not None:
                process.join(timeout)
            _end(pipe, process)
        finally:
            self._exchange.release()

    def _discard(self) -> None:
        """The process killed (if any), its pipe closed: a later group starts another."""
        pipe, process = self._pipe, self._process
        self._pipe = self._process = None
        _end(pipe, process)


def _end(pipe: Pipe | None, process: BaseProcess | None) -> None:
    if process is not None and process.is_alive():
        process.kill()
        process.join(5)
    if pipe is not None:
        pipe.close()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` as it can cross the pipe: itself if it pickles back, else its kind and words."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {scrub_text(str(exc))}")
    return exc


def _appender_main(
    pipe: Pipe,
    opener: Callable[[], tuple[Catalog, TransparencyLog]],
    turns: Path,
    key: str | None,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> None:
    """The appender process: each group received appended in a transaction of its own, in its
    turn on ``turns``; ``_COMMITTING`` sent just before COMMIT, then the outcome. On SQLite the
    write-ahead log is copied back by a thread beside the transactions (:class:`_WalCopier`),
    and by the appender itself, in its turn, every ``checkpoint_every`` transactions when that
    thread has fallen behind or stopped, and when it stops: told to, or its service gone (the
    pipe closed). Signals do not stop it: a terminal's Ctrl-C or a service manager's SIGTERM to
    the whole group reaches the service too, which answers what it holds, then tells it to stop."""
    from onceonly.files import restrict_new_files
    from onceonly.privacy import install_log_masking

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    install_log_masking()  # as the service's own process does
    restrict_new_files()
    try:
        catalog, log = opener()
        if key is not None and log.key.vkey != key:
            catalog.dispose()
            raise ValueError(
                "the log appender opened another signing key than the service's (rotated since it "
                "started?): restart the service"
            )
    except Exception as exc:
        pipe.send(_portable(exc))
        return
    sqlite = catalog.engine.dialect.name == "sqlite"
    copier = _WalCopier(catalog, checkpoint_every) if sqlite else None
    pipe.send("ready")
    try:
        while True:
            try:
                items = pickle.loads(pipe.recv_bytes())
            except (EOFError, OSError):
                return  # the service is gone
            if items is None:
                return
            outcome: Any
            with _turn(turns):
                try:
                    with catalog.begin_kept() as conn:
                        if sqlite:
                            conn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
                        a = append_committed_many(conn, log, [Committed(*item) for item in items])
                        pipe.send(_COMMITTING)
                    outcome = (a.first_index, a.tree_size, a.root_hash, a.checkpoint, a.entries)
                except Exception as exc:  # rolled back
                    outcome = _portable(exc)
                # Leaving the turn cannot make a committed group an error (an exception there
                # ends the process: after its COMMITTING, the writer never tries the group again).
            # Sent after the turn: a big outcome the service's loop has not read yet (the loop
            # blocked on the writer's thread, which commits in its own turn meanwhile) holds
            # nobody's turn.
            pipe.send(outcome)
            if copier is not None and not isinstance(outcome, BaseException):
                copier.nudge()
                if copier.commits % checkpoint_every == 0 and copier.behind():
                    with copier.paused() as idle:  # not while the thread copies (a long WAL)
                        if idle and _wal_checkpoint(catalog, turns):
                            copier.copied_all()
    finally:
        if copier is not None:
            copier.stop()
            if copier.commits:  # the database file alone holds every append (the thread's last
                _wal_checkpoint(catalog, turns)  # nudge may have found it stopping)
        catalog.dispose()


class _WalCopier:
    """The appender's thread copying a SQLite catalog's write-ahead log back into the database
    beside its transactions: woken after each commit, it copies what is there
    (``PRAGMA wal_checkpoint(PASSIVE)``, on a connection of its own; SQLite runs it without the
    interpreter lock). Each copy is a transaction's pages or a few, and it ends before the
    appender's next transaction begins more often than not: SQLite then starts the WAL over, in
    the appender's idle moments. The appender copying every :data:`CHECKPOINT_EVERY`
    transactions itself instead held the groups behind each copy for 2-4 ms (1M certificates,
    3 connections, three interleaved rounds: p99 7.2-7.9 ms against 5.5-5.9 with the thread).

    :meth:`behind` tells the appender when to copy in its own turn after all: the thread has
    stopped, or has not finished a whole copy in ``every`` commits (a starved thread; another
    process's checkpoint holding SQLite's checkpoint lock), or its copies keep ending too late
    for SQLite to start the WAL over (longer than :data:`WAL_FRAMES_LIMIT`). An error is logged
    (once until a copy succeeds again) and the thread goes on at the next commit."""

    def __init__(self, catalog: Catalog, every: int) -> None:
        self._catalog, self._every = catalog, every
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one copy at a time: the thread's or the appender's own
        self._stopping = False
        self.commits = 0  # nudges so far: the appender's commits
        self._copied = 0  # the commits a whole copy of the thread (or the appender's) covered
        self.frames = 0  # the WAL's length in frames at the last whole copy
        self._thread = threading.Thread(target=self._run, name="onceonly-wal-copier", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """A transaction committed: copy the WAL back (once, for all nudges meanwhile)."""
        self.commits += 1
        self._wake.set()

    def behind(self) -> bool:
        """Whether the appender should copy the WAL back itself (see the class)."""
        return (
            not self._thread.is_alive()
            or self.commits - self._copied >= self._every
            or self.frames > WAL_FRAMES_LIMIT
        )

    @contextlib.contextmanager
    def paused(self) -> Iterator[bool]:
        """The thread's copies held off while the appender copies the WAL itself: True, or False
        (held off nothing) when the thread is copying now — a long WAL, another process's
        landing: the appender leaves it to the thread rather than wait for it."""
        idle = self._lock.acquire(blocking=False)
        try:
            yield idle
        finally:
            if idle:
                self._lock.release()

    def copied_all(self) -> None:
        """The appender copied the whole WAL itself (held :meth:`paused`)."""
        self._copied, self.frames = self.commits, 0

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            raw = self._catalog.engine.raw_connection()
        except Exception as exc:  # the appender copies it back itself then (behind())
            _logger.warning("the log appender cannot copy the WAL back beside it: %s", scrub_text(str(exc)))
            return
        failing = False
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                covered = self.commits
                try:
                    with self._lock:
                        whole, frames, _ = _copy_wal(raw)
                except Exception as exc:  # a transient error: tried again at the next commit
                    if not failing:
                        _logger.warning(
                            "the log appender's WAL copier failed (tried again at each commit): %s",
                            scrub_text(str(exc)),
                        )
                    failing = True
                    continue
                failing = False
                if whole:  # (the appender's own copy may have covered more meanwhile: copied_all)
                    self._copied, self.frames = max(self._copied, covered), frames
        finally:
            raw.close()


def _wake(jobs: Sequence[_Job]) -> None:
    """Hand the outcome of ``jobs`` to their loops' waiters: one wake-up of each loop for all of
    its jobs of a transaction (a wake-up per job cost the loop ~5 % of an answer)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in jobs:
        if job.waiter is not None:
            by_loop.setdefault(job.waiter[0], []).append(job)
    for loop, woken in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits there
            loop.call_soon_threadsafe(_settle, woken)


def _settle(jobs: Sequence[_Job]) -> None:
    """On the loop: each job's waiter gets what its job got (one withdrawn or given up: nothing)."""
    for job in jobs:
        if job.waiter is None or job.waiter[1].done() or not job.done.done() or job.done.cancelled():
            continue
        error = job.done.exception()
        if error is not None:
            job.waiter[1].set_exception(error)
        else:
            job.waiter[1].set_result(job.done.result())


def _entries_of(appended: Appended, first: int, count: int) -> tuple[bytes, ...]:
    """The entries of leaves ``first..first+count-1`` among those ``appended`` handed back."""
    start = first - (appended.tree_size - len(appended.entries))
    return appended.entries[start : start + count] if start >= 0 else ()


__all__ = [
    "CHECKPOINT_EVERY",
    "MAX_BATCH",
    "WAL_FRAMES_LIMIT",
    "AppenderStopped",
    "AppenderUnavailable",
    "LogWriter",
    "Logged",
]
