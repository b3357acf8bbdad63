"""Group commit (``sharing.logwriter``): many requests' entries in one transaction, each request
answered with its own leaves once they are committed; one request's failure is its own."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from catalog import Catalog
from cli.main import app as cli
from evidence.keys import log_verifiers, open_key_store
from evidence.log import TransparencyLog, leaf_at, use_entry, verify_log
from onceonly.settings import Settings
from sharing.logwriter import AppenderStopped, Logged, LogWriter
from sharing.service import open_log

TOWNSHIP = "120114001000"


@contextlib.contextmanager
def _writer(*, appender: bool = False, **options: Any) -> Iterator[LogWriter]:
    """A writer of a new catalog (``appender``: its transactions in a process of their own)."""
    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    if appender:
        turns = Path(settings.home) / "catalog.db.writer-lock"
        options |= {"turns": turns, "appender": partial(open_log, settings)}
    writer = LogWriter(catalog, log, **options)
    try:
        yield writer
    finally:
        writer.close()
        catalog.dispose()


@pytest.fixture(params=["thread", "appender"])
def writer(home: Path, request: pytest.FixtureRequest) -> Iterator[LogWriter]:
    """Every test of a writer, with its transactions in its thread and in an appender process."""
    with _writer(appender=request.param == "appender") as writer:
        yield writer


@pytest.fixture
def appending(home: Path) -> Iterator[LogWriter]:
    with _writer(appender=True) as writer:
        yield writer


def _hold_the_write_lock() -> sqlite3.Connection:
    """A connection of "another process" inside a write transaction (COMMIT releases it)."""
    blocker = sqlite3.connect(Path(Settings().home) / "catalog.db", isolation_level=None, timeout=30)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


@contextlib.contextmanager
def _writer_stuck_on_the_lock(writer: LogWriter) -> Iterator[list[str]]:
    """The writer holding job m1 and waiting on another process's write lock while the block
    runs; then the lock released, m3 appended, and the matters of every leaf logged filled in."""
    writer.append([_use(0)])
    blocker = _hold_the_write_lock()
    waiting = threading.Thread(target=writer.append, args=([_use(1)],))
    waiting.start()  # the writer takes it and waits on the lock
    threading.Event().wait(0.3)
    matters: list[str] = []
    try:
        yield matters
    finally:
        blocker.execute("COMMIT")
        blocker.close()
        waiting.join(30)
    logged = writer.append([_use(3)])
    with writer.catalog.read() as conn:
        matters += [json.loads(leaf_at(conn, i).entry or b"").get("matter") for i in range(logged.tree_size)]


def _use(n: int) -> object:
    return use_entry(matter=f"m{n}", certificate_id=f"c{n}", township=TOWNSHIP, subject=None)


def test_requests_waiting_together_share_one_transaction_and_get_their_own_leaves(writer: LogWriter) -> None:
    first = writer.append([_use(0)])
    blocker = _hold_the_write_lock()  # the writer's next transaction waits for this one
    results: dict[int, Logged] = {}

    def request(n: int) -> None:
        results[n] = writer.append([_use(n), _use(100 + n)])

    threads = [threading.Thread(target=request, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    threading.Event().wait(0.5)  # all queued behind the lock (the first of them is waiting on it)
    blocker.execute("COMMIT")
    blocker.close()
    for t in threads:
        t.join(30)
    assert sorted(results) == list(range(1, 9))
    with writer.catalog.read() as conn:
        for n, logged in results.items():
            assert len(logged.indices) == 2 and logged.indices[1] == logged.indices[0] + 1
            entries = [json.loads(leaf_at(conn, i).entry or b"") for i in logged.indices]
            assert [e["matter"] for e in entries] == [f"m{n}", f"m{100 + n}"]
        checkpoints = conn.exec_driver_sql("SELECT count(*) FROM checkpoints").scalar_one()
        verify_log(conn, log_verifiers(Settings()))
    # the first append, then at most two transactions for the eight requests (the one that took
    # the queue first, and everyone who queued behind it)
    assert first.tree_size > 0 and checkpoints <= 3
    assert len({i for logged in results.values() for i in logged.indices}) == 16


def test_a_failing_job_fails_alone(writer: LogWriter) -> None:
    class Spent(Exception):
        pass

    def spend(_: object) -> None:
        raise Spent("the consent code was spent meanwhile")

    with pytest.raises(Spent):
        writer.append([_use(1)], before=spend)
    logged = writer.append([_use(2)])
    with writer.catalog.read() as conn:
        matters = [json.loads(leaf_at(conn, i).entry or b"").get("matter") for i in range(logged.tree_size)]
    assert "m2" in matters and "m1" not in matters  # nothing of the failed job was logged


def test_a_job_with_nothing_to_log_runs_its_work_and_commits_it(writer: LogWriter) -> None:
    ran: list[bool] = []
    logged = writer.append([], before=lambda _: ran.append(True))
    assert ran == [True] and logged.indices == ()


def test_a_closed_writer_refuses(writer: LogWriter) -> None:
    writer.close()
    with pytest.raises(RuntimeError, match="stopped"):
        writer.append([_use(1)])


def test_a_request_that_gave_up_is_never_logged_later(writer: LogWriter) -> None:
    with _writer_stuck_on_the_lock(writer) as matters, pytest.raises(TimeoutError):
        writer.append([_use(2)], timeout=0.3)  # queued behind it, withdrawn
    assert "m1" in matters and "m3" in matters and "m2" not in matters


def test_closing_finishes_what_was_handed_over(writer: LogWriter) -> None:
    done: list[Logged] = []
    threads = [threading.Thread(target=lambda n=n: done.append(writer.append([_use(n)]))) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    writer.close()
    assert len(done) == 5 and len({i for d in done for i in d.indices}) == 5


def test_a_request_on_an_event_loop_awaits_its_commit_with_the_others(writer: LogWriter) -> None:
    """append_async: requests on a loop wait for the writer without a thread each; those that
    wait together share a transaction, each gets its own leaves and the entries written there."""
    import asyncio

    writer.append([_use(0)])
    blocker = _hold_the_write_lock()  # the first of them waits on the lock, the rest queue

    async def requests() -> list[Logged]:
        waiting = [asyncio.create_task(writer.append_async([_use(n), _use(100 + n)])) for n in range(1, 7)]
        await asyncio.sleep(0.5)
        blocker.execute("COMMIT")
        return list(await asyncio.gather(*waiting))

    results = asyncio.run(requests())
    blocker.close()
    assert len({r.checkpoint for r in results}) <= 2  # the first alone, the rest together
    assert sorted(i for r in results for i in r.indices) == sorted({i for r in results for i in r.indices})
    with writer.catalog.read() as conn:
        for n, logged in enumerate(results, start=1):
            stored = [leaf_at(conn, i).entry for i in logged.indices]
            assert list(logged.entries) == stored
            assert [json.loads(e or b"")["matter"] for e in stored] == [f"m{n}", f"m{100 + n}"]


def test_a_request_on_an_event_loop_that_gave_up_is_never_logged_later(writer: LogWriter) -> None:
    import asyncio

    with _writer_stuck_on_the_lock(writer) as matters, pytest.raises(TimeoutError):
        asyncio.run(writer.append_async([_use(2)], timeout=0.3))  # queued behind it, withdrawn
    assert "m1" in matters and "m3" in matters and "m2" not in matters


def test_writers_of_several_processes_take_turns_on_the_lock_file(writer: LogWriter, tmp_path: Path) -> None:
    """``turns``: each transaction waits for the lock file (another process's writer holding it),
    and goes on the moment it is released."""
    import fcntl
    import os

    turns = tmp_path / "catalog.db.writer-lock"
    other = LogWriter(writer.catalog, writer.log, turns=turns)
    try:
        other.append([_use(0)])
        assert oct(turns.stat().st_mode & 0o777) == "0o600"
        held = os.open(turns, os.O_RDWR)
        fcntl.flock(held, fcntl.LOCK_EX)  # another process writing
        done: list[Logged] = []
        waiting = threading.Thread(target=lambda: done.append(other.append([_use(1)])))
        waiting.start()
        waiting.join(0.5)
        assert done == []  # waits for its turn
        os.close(held)
        waiting.join(30)
        assert len(done) == 1 and done[0].indices
    finally:
        other.close()


def test_a_request_on_an_event_loop_whose_job_started_gets_its_commit_after_the_timeout(
    writer: LogWriter,
) -> None:
    """A job the writer took before the timeout is not withdrawn: its commit decides, and the
    request gets where its entries went (not a cancellation after they were logged)."""
    import asyncio

    writer.append([_use(0)])
    blocker = _hold_the_write_lock()  # the writer takes the job and waits on the lock

    async def request() -> Logged:
        waiting = asyncio.create_task(writer.append_async([_use(7)], timeout=0.3))
        await asyncio.sleep(0.6)  # past the timeout, the job running
        blocker.execute("COMMIT")
        return await waiting

    logged = asyncio.run(request())
    blocker.close()
    with writer.catalog.read() as conn:
        assert json.loads(leaf_at(conn, logged.indices[0]).entry or b"")["matter"] == "m7"


def test_requests_of_one_pass_of_the_loop_go_to_the_writer_together(writer: LogWriter) -> None:
    """The jobs a loop hands over while running its ready tasks share one transaction, even when
    the writer could have taken the first alone (each task lets go of the interpreter before it
    appends, as a query does)."""
    import asyncio
    import time

    writer.append([_use(0)])
    with writer.catalog.read() as conn:
        before = conn.exec_driver_sql("SELECT count(*) FROM checkpoints").scalar_one()

    async def request(n: int) -> Logged:
        time.sleep(0.01)  # releases the GIL: the writer thread is free to run meanwhile
        return await writer.append_async([_use(n)])

    async def requests() -> list[Logged]:
        return list(await asyncio.gather(*(request(n) for n in range(1, 7))))

    results = asyncio.run(requests())
    with writer.catalog.read() as conn:
        after = conn.exec_driver_sql("SELECT count(*) FROM checkpoints").scalar_one()
    assert after == before + 1 and len({r.checkpoint for r in results}) == 1
    assert sorted(i for r in results for i in r.indices) == list(
        range(results[0].indices[0], results[0].indices[0] + 6)
    )


def test_the_writer_copies_the_write_ahead_log_back_itself_and_keeps_it_short(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint (inside the transaction that reaches its threshold, here set to
    1,000 pages) is off for the writer's transactions: the writer copies the WAL back every
    CHECKPOINT_EVERY of them, after their requests are answered, so the WAL file stays short."""
    from catalog import _database

    monkeypatch.setattr(_database, "WAL_AUTOCHECKPOINT_PAGES", 1_000)  # reached within the test
    # In its thread (CHECKPOINT_EVERY patched where it is read), with a lock file to take turns on
    # (the test's own checkpoint then never runs beside the writer's: it would find it busy).
    with _writer(turns=home / "catalog.db.writer-lock") as writer:
        _copies_the_wal_back(writer, monkeypatch)


def _copies_the_wal_back(writer: LogWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    from sharing import logwriter

    wal = Path(Settings().home) / "catalog.db-wal"
    monkeypatch.setattr(logwriter, "CHECKPOINT_EVERY", 10**9)  # never: the WAL only grows
    for n in range(400):
        writer.append([_use(n)])
    pages = wal.stat().st_size // (4096 + 24)
    # SQLite's own checkpoint would have started it over at 1,000 pages (its file ~1,000 long)
    assert pages > 1_600, pages
    monkeypatch.setattr(logwriter, "CHECKPOINT_EVERY", 20)
    writer.append([_use(1000)])
    checkpointed = sqlite3.connect(wal.with_name("catalog.db"))
    try:
        for n in range(200):
            writer.append([_use(2000 + n)])
        # Everything the writer appended since its last checkpoint is at most 20 transactions.
        with writer.turn():  # not beside the writer's own checkpoint (it would find it busy)
            busy, frames, copied = checkpointed.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and frames - copied == 0 and frames <= 20 * 12, (frames, copied)
    finally:
        checkpointed.close()
    with writer.catalog.read() as conn:
        verify_log(conn, log_verifiers(Settings()))


def test_a_pass_of_more_jobs_than_a_batch_holds_is_committed_a_batch_at_a_time(home: Path) -> None:
    import asyncio

    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    writer = LogWriter(catalog, log, max_batch=4)
    try:
        writer.append([_use(0)])

        async def requests() -> list[Logged]:
            return list(await asyncio.gather(*(writer.append_async([_use(n)]) for n in range(1, 11))))

        results = asyncio.run(requests())
        per_checkpoint: dict[str, int] = {}
        for logged in results:
            per_checkpoint[logged.checkpoint] = per_checkpoint.get(logged.checkpoint, 0) + 1
        assert sorted(per_checkpoint.values()) == [2, 4, 4]  # one pass of 10: 4, 4 and 2
    finally:
        writer.close()
        catalog.dispose()


def test_a_request_cancelled_before_its_job_started_is_never_logged(writer: LogWriter) -> None:
    import asyncio

    async def request() -> None:
        task = asyncio.create_task(writer.append_async([_use(2)]))
        await asyncio.sleep(0.2)  # handed over, queued behind the job on the lock
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with _writer_stuck_on_the_lock(writer) as matters:
        asyncio.run(request())
    assert "m1" in matters and "m3" in matters and "m2" not in matters


def _matters(writer: LogWriter) -> list[str]:
    with writer.catalog.read() as conn:
        size = conn.exec_driver_sql("SELECT tree_size FROM log_head").scalar_one()
        verify_log(conn, log_verifiers(Settings()))
        return [json.loads(leaf_at(conn, i).entry or b"").get("matter") for i in range(size)]


def test_the_appender_process_commits_each_group_and_hands_back_where_it_went(home: Path) -> None:
    """With an appender the grouped transactions run in another process: the requests get
    their leaves and the entries as logged, and ``committed`` sees each append, as in the thread."""
    import asyncio
    import os

    followed: list[int] = []
    with _writer(appender=True, committed=lambda appended: followed.append(appended.tree_size)) as writer:
        assert writer._appender is not None and writer._appender.pid not in (None, os.getpid())
        first = writer.append([_use(0)])

        async def requests() -> list[Logged]:
            return list(await asyncio.gather(*(writer.append_async([_use(n)]) for n in range(1, 6))))

        results = asyncio.run(requests())
        assert len({r.checkpoint for r in results}) == 1  # one pass: one transaction
        assert followed == [first.tree_size, results[0].tree_size]
        with writer.catalog.read() as conn:
            for n, logged in enumerate(results, start=1):
                assert list(logged.entries) == [leaf_at(conn, i).entry for i in logged.indices]
                assert json.loads(logged.entries[0])["matter"] == f"m{n}"
        assert _matters(writer).count("m3") == 1


def test_an_outcome_the_appender_already_sent_is_taken_before_the_loop_polls_for_it(home: Path) -> None:
    """``take_ready``: a request on the loop takes the outcome the appender has already sent
    (the commit followed, its requests answered) before it reads the catalog, instead of at the
    loop's next poll — a loop busy with other requests does not poll until its pass ends."""
    import asyncio
    import time

    followed: list[int] = []
    with _writer(appender=True, committed=lambda appended: followed.append(appended.tree_size)) as writer:
        writer.append([_use(0)])  # the appender started
        followed.clear()

        async def busy_loop() -> Logged:
            request = asyncio.ensure_future(writer.append_async([_use(1)]))
            while writer._loop_out is None:  # handed over at the end of the pass
                await asyncio.sleep(0)
            time.sleep(0.3)  # the loop busy: committed meanwhile, its outcome not polled for
            assert not followed
            deadline = time.monotonic() + 10
            while not followed and time.monotonic() < deadline:
                writer.take_ready()  # still without yielding to the loop
                time.sleep(0.005)
            assert followed and writer._loop_out is None
            return await request

        logged = asyncio.run(busy_loop())
        assert followed == [logged.tree_size]
        with writer.catalog.read() as conn:
            assert json.loads(leaf_at(conn, logged.indices[0]).entry)["matter"] == "m1"
        writer.take_ready()  # not on the loop: nothing to take, nothing done


def _waiting_on_the_lock_file(pid: int, turns: Path, timeout: float = 30.0) -> None:
    """Until process ``pid`` holds ``turns`` open: it took a group and waits in its turn."""
    import os
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == str(turns):
                    return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never took the group")


def test_an_appender_killed_before_committing_its_group_leaves_it_to_the_writer(
    appending: LogWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while it waits for SQLite's lock (its transaction not yet committing): nothing of
    the group was committed, so the writer commits it itself — the request is answered, its use
    logged once — and the next group starts another appender (one that had run RETRY_AFTER)."""
    import os
    import signal

    from sharing.logwriter import _Appender

    monkeypatch.setattr(_Appender, "RETRY_AFTER", 0.0)

    appending.append([_use(0)])
    assert appending._appender is not None
    dead = appending._appender.pid
    assert dead is not None
    blocker = _hold_the_write_lock()
    done: list[Logged] = []
    waiting = threading.Thread(target=lambda: done.append(appending.append([_use(1)])))
    waiting.start()
    _waiting_on_the_lock_file(dead, Path(Settings().home) / "catalog.db.writer-lock")
    os.kill(dead, signal.SIGKILL)
    threading.Event().wait(0.3)  # the writer, told, waits on the lock in its own turn now
    blocker.execute("COMMIT")
    blocker.close()
    waiting.join(30)
    assert len(done) == 1 and done[0].indices
    logged = appending.append([_use(2)])
    assert appending._appender.pid not in (None, dead) and logged.indices
    assert [m for m in _matters(appending) if m] == ["m0", "m1", "m2"]


def _appender(main: Any, home: Path) -> Any:
    from sharing.logwriter import _Appender

    return _Appender(partial(open_log, Settings()), home / "catalog.db.writer-lock", main=main)


def test_an_appender_gone_before_committing_says_nothing_was_committed(home: Path) -> None:
    from appender_doubles import dies_before_committing

    from sharing.logwriter import AppenderUnavailable

    appender = _appender(dies_before_committing, home)
    with pytest.raises(AppenderUnavailable, match="before committing"):
        appender.append([_use(1)])
    assert appender.pid is None  # a later group starts another


def test_an_appender_gone_while_committing_says_the_uses_may_have_been_logged(home: Path) -> None:
    from appender_doubles import dies_while_committing

    appender = _appender(dies_while_committing, home)
    with pytest.raises(AppenderStopped, match="may have been logged"):
        appender.append([_use(1)])
    assert appender.pid is None


@pytest.mark.parametrize(
    ("stand_in", "error", "words"),
    [
        ("hangs_before_committing", "AppenderUnavailable", "before committing"),
        ("hangs_while_committing", "AppenderStopped", "may have been logged"),
    ],
)
def test_an_appender_that_stops_answering_is_killed_and_taken_as_one_that_died(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stand_in: str,
    error: str,
    words: str,
) -> None:
    """Hung, not dead (its pipe open, no EOF): after REPLY_TIMEOUT it is killed and the group
    goes as a dead one's — nothing committed before its COMMITTING, perhaps after."""
    import appender_doubles

    from sharing import logwriter
    from sharing.logwriter import _Appender

    monkeypatch.setattr(_Appender, "REPLY_TIMEOUT", 0.5)
    appender = _appender(getattr(appender_doubles, stand_in), home)
    process = appender._process
    with pytest.raises(getattr(logwriter, error), match=words):
        appender.append([_use(1)])
    assert appender.pid is None and process is not None and not process.is_alive()
    assert "did not answer within 0.5 s: killed" in caplog.text


def test_an_appender_slow_to_answer_but_never_silent_for_the_timeout_is_waited_for(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REPLY_TIMEOUT counts from its last word (the group sent, then its COMMITTING), in the
    writer's thread and on the loop: words 0.6 s apart under a 0.9 s timeout are each waited for,
    though the outcome comes 1.2 s after the group."""
    import asyncio

    from appender_doubles import words_slowly

    from sharing.logwriter import _Appender

    monkeypatch.setattr(_Appender, "REPLY_TIMEOUT", 0.9)
    appender = _appender(words_slowly, home)
    process = appender._process
    assert appender.append([_use(1)]).tree_size == 2  # the thread's exchange
    with _writer(appender=True) as writer:
        assert writer._appender is not None
        writer._appender.stop()
        writer._appender = appender

        async def request() -> Logged:
            return await writer.append_async([_use(2)])

        assert asyncio.run(request()).indices  # the loop's exchange
        assert appender._process is process and process is not None and process.is_alive()


def test_an_appender_answering_out_of_turn_is_killed_never_read_again(home: Path) -> None:
    from appender_doubles import answers_out_of_turn

    appender = _appender(answers_out_of_turn, home)
    process = appender._process
    with pytest.raises(AppenderStopped, match="out of turn"):
        appender.append([_use(1)])
    assert appender.pid is None and process is not None and not process.is_alive()


def test_an_appender_that_starts_too_slowly_is_killed_and_its_late_ready_never_read(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appender_doubles import starts_slowly

    from sharing.logwriter import AppenderUnavailable, _Appender

    monkeypatch.setattr(_Appender, "START_TIMEOUT", 0.5)
    children = set(multiprocessing.active_children())
    with pytest.raises(AppenderUnavailable, match="did not start in time"):
        _appender(starts_slowly, home)
    assert not [p for p in multiprocessing.active_children() if p not in children]


def test_while_no_appender_will_start_the_writer_commits_in_its_thread_and_tries_again_later(
    home: Path, tmp_path: Path
) -> None:
    """An appender that dies and cannot be started again (its catalog or key no longer opens):
    the writer commits every group itself, each request answered; one attempt to start it, not
    one per request — and once it opens again, after RETRY_AFTER, the appender takes over."""
    import asyncio
    import os
    import signal

    from appender_doubles import open_unless

    from sharing.logwriter import _Appender

    stop, starts = tmp_path / "stop", tmp_path / "starts"
    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    writer = LogWriter(
        catalog,
        log,
        turns=Path(settings.home) / "catalog.db.writer-lock",
        appender=partial(open_unless, stop, starts, settings),
    )
    try:
        assert writer._appender is not None and writer._appender.pid is not None
        stop.touch()
        os.kill(writer._appender.pid, signal.SIGKILL)
        writer._appender._process.join(10)  # type: ignore[union-attr]
        writer._appender._started_at -= _Appender.RETRY_AFTER  # it had served long: started again at once

        async def requests() -> list[Logged]:
            return list(await asyncio.gather(*(writer.append_async([_use(n)]) for n in range(1, 9))))

        results = asyncio.run(requests())
        results += [writer.append([_use(9)])]
        assert all(r.indices for r in results)
        assert len(starts.read_text().split()) == 2  # the first start, and one attempt after
        stop.unlink()
        writer._appender._retry_at = 0.0  # RETRY_AFTER has passed
        writer.append([_use(10)])
        assert writer._appender.pid is not None and len(starts.read_text().split()) == 3
        assert [m for m in _matters(writer) if m] == [f"m{n}" for n in range(1, 11)]
    finally:
        writer.close()
        catalog.dispose()
    assert _Appender.RETRY_AFTER >= 10


def test_an_appender_whose_log_signs_with_another_key_is_refused(home: Path) -> None:
    from appender_doubles import open_with_another_key

    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    try:
        with pytest.raises(ValueError, match="another signing key than the service's"):
            LogWriter(
                catalog,
                log,
                turns=Path(settings.home) / "catalog.db.writer-lock",
                appender=partial(open_with_another_key, settings),
            )
    finally:
        catalog.dispose()


def test_a_job_the_appender_fails_on_fails_alone(appending: LogWriter) -> None:
    """An entry the appender cannot log (its document is not JSON) fails its own request; the
    others handed over in the same pass are logged."""
    import asyncio

    from evidence.log import Committed

    bad = Committed("use", "c-bad", {"matter": "bad", "at": {1, 2}})

    async def requests() -> list[Logged | BaseException]:
        jobs = [appending.append_async(items) for items in ([_use(1)], [bad], [_use(3)])]
        return list(await asyncio.gather(*jobs, return_exceptions=True))

    first, failed, third = asyncio.run(requests())
    assert isinstance(failed, Exception) and not isinstance(failed, AppenderStopped), failed
    assert isinstance(first, Logged) and isinstance(third, Logged)
    assert [m for m in _matters(appending) if m] == ["m1", "m3"]


def test_jobs_with_work_of_their_own_commit_in_the_service_and_the_rest_in_the_appender(
    appending: LogWriter,
) -> None:
    """A job with ``before`` (a consent spent) commits in the service's process, taking its turn
    on the lock file with the appender's transactions: all logged, in the order handed over."""
    import os

    ran_in: list[int] = []
    appending.append([_use(1)])
    appending.append([_use(2)], before=lambda _: ran_in.append(os.getpid()))
    appending.append([_use(3)])
    assert ran_in == [os.getpid()] and [m for m in _matters(appending) if m] == ["m1", "m2", "m3"]


def test_the_appender_copies_the_write_ahead_log_back_itself(appending: LogWriter, tmp_path: Path) -> None:
    """SQLite's own checkpoint is off in the appender's transactions too: it copies the WAL back
    every CHECKPOINT_EVERY of them (the WAL file stays short) and when it stops (the database
    file alone, without its WAL, holds every append)."""
    import shutil

    home = Path(Settings().home)
    for n in range(400):
        appending.append([_use(n)])
    # 400 transactions of ~8 pages: ~3,400 frames without the appender's checkpoints
    assert (home / "catalog.db-wal").stat().st_size // (4096 + 24) < 1_000
    size = appending.append([_use(400)]).tree_size
    appender = appending._appender
    assert appender is not None and appender._process is not None
    process = appender._process
    appending.close()
    assert not process.is_alive() and process.exitcode == 0
    shutil.copyfile(home / "catalog.db", tmp_path / "alone.db")  # no -wal beside it
    alone = sqlite3.connect(tmp_path / "alone.db")
    try:
        assert alone.execute("SELECT tree_size FROM log_head").fetchone() == (size,)
    finally:
        alone.close()


def _wal_restarts(wal: Path) -> int:
    """How often SQLite has started the WAL over: its header's checkpoint sequence number."""
    with wal.open("rb") as f:
        return int.from_bytes(f.read(16)[12:16], "big")


def test_the_appenders_copier_thread_alone_copies_the_wal_back_and_sqlite_starts_it_over(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The appender's own copies off (CHECKPOINT_EVERY never reached; the appender is spawned
    with this process's value): its copier thread, woken at each commit, copies the WAL back,
    and SQLite starts it over at a transaction that begins with all of it copied. (Only a copy
    starts the WAL over: SQLite's own checkpoint is off in the appender's transactions.)"""
    import time

    from sharing import logwriter

    monkeypatch.setattr(logwriter, "CHECKPOINT_EVERY", 10**9)
    wal = home / "catalog.db-wal"
    with _writer(appender=True) as appending:
        appending.append([_use(0)])
        before = _wal_restarts(wal)
        for n in range(1, 200):
            appending.append([_use(n)])
            if n % 50 == 0:  # an idle moment, as between a counter's requests: the thread's copy
                time.sleep(0.2)  # ends before the next transaction begins (a busy machine's too)
        assert _wal_restarts(wal) >= before + 3
        assert [m for m in _matters(appending) if m] == [f"m{n}" for n in range(200)]


def test_the_wal_copier_copies_after_a_commit_and_says_when_the_appender_must_copy_itself(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nudged after a commit, the copier thread copies the WAL back (the database alone holds
    the commit). The appender copies it itself when the thread has not finished a whole copy in
    ``every`` commits (here held up by the appender's own copy), when the WAL the thread last
    copied was longer than WAL_FRAMES_LIMIT, or when the thread has stopped."""
    import shutil
    import time

    from sharing import logwriter

    catalog = Catalog.connect(Settings().catalog_url)
    writing = sqlite3.connect(home / "catalog.db", isolation_level=None)
    writing.execute("PRAGMA wal_autocheckpoint=0")
    copier = logwriter._WalCopier(catalog, every=3)

    def copied_through(commits: int) -> bool:
        """Wait until the thread's whole copies cover ``commits`` (the thread then idle)."""
        deadline = time.monotonic() + 10
        while copier._copied < commits and time.monotonic() < deadline:
            time.sleep(0.01)
        return not copier.behind() and copier.commits == commits == copier._copied

    try:
        assert not copier.behind()
        writing.execute("CREATE TABLE t (n INTEGER)")
        for n in range(50):
            writing.execute("INSERT INTO t VALUES (?)", (n,))
        copier.nudge()
        assert copied_through(1) and 50 <= copier.frames <= logwriter.WAL_FRAMES_LIMIT
        shutil.copyfile(home / "catalog.db", tmp_path / "alone.db")  # no -wal beside it
        alone = sqlite3.connect(tmp_path / "alone.db")
        try:
            assert alone.execute("SELECT count(*) FROM t").fetchone() == (50,)
        finally:
            alone.close()
        with copier._lock:  # the thread's copies held up (as by the appender's own): none copied
            for n in range(3):
                writing.execute("INSERT INTO t VALUES (?)", (100 + n,))
                copier.nudge()
                assert copier.behind() == (n == 2)
            with copier.paused() as idle:  # a copy under way: the appender leaves it to the thread
                assert not idle
        assert copied_through(4)  # let go, the thread copies them all
        monkeypatch.setattr(logwriter, "WAL_FRAMES_LIMIT", copier.frames - 1)
        assert copier.behind()
        monkeypatch.undo()
        with copier.paused() as idle:  # the thread idle: held off while the appender copies
            assert idle
            copier.nudge()
            copier.nudge()
            copier.nudge()
            assert copier.behind()
            copier.copied_all()  # the appender copied it all itself
            assert not copier.behind()
        copier.stop()
        assert copier.behind()  # stopped: the appender copies every CHECKPOINT_EVERY itself
    finally:
        copier.stop()
        writing.close()
        catalog.dispose()


def test_an_appender_that_cannot_open_the_log_stops_the_writer_from_starting(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    monkeypatch.setenv("ONCEONLY_KEY_PASSPHRASE", "not the passphrase")  # in the settings it opens with
    try:
        with pytest.raises(Exception, match=r"cannot read .*keys") as raised:
            LogWriter(
                catalog,
                log,
                turns=Path(settings.home) / "catalog.db.writer-lock",
                appender=partial(open_log, Settings()),
            )
        assert "not the passphrase" not in str(raised.value)
    finally:
        catalog.dispose()


def test_an_appender_dying_soon_after_its_start_is_not_started_again_before_retry_after(home: Path) -> None:
    """One that dies at every group (killed for its memory, say) would otherwise cost a new
    interpreter per group: within RETRY_AFTER of its start the writer commits without it."""
    import time

    from appender_doubles import dies_before_committing

    from sharing.logwriter import AppenderUnavailable, _Appender

    appender = _appender(dies_before_committing, home)
    with pytest.raises(AppenderUnavailable):
        appender.append([_use(1)])
    assert not appender.available() and appender.pid is None  # no new process
    assert appender._retry_at > time.monotonic() + _Appender.RETRY_AFTER - 5
    appender._retry_at = 0.0  # RETRY_AFTER has passed
    assert appender.available() and appender.pid is not None  # another
    appender.stop()


def test_a_service_that_exits_without_closing_its_writer_exits_and_logs_nothing_twice(home: Path) -> None:
    """The interpreter's exit while the writer's thread is still appending through the appender
    (no close: an exception, a script's end): the appender is stopped once the exchange under way
    is over, no new one is started, and the interpreter exits; the log verifies."""

    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    script = """
import threading, time
from functools import partial
from pathlib import Path
from catalog import Catalog
from evidence.keys import open_key_store
from evidence.log import TransparencyLog, use_entry
from onceonly.settings import Settings
from sharing.logwriter import LogWriter, _Appender
from sharing.service import open_log

_Appender.RETRY_AFTER = 0.0  # any appender gone is started again at once: not after the stop
settings = Settings()
catalog = Catalog.connect(settings.catalog_url)
log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
writer = LogWriter(catalog, log, turns=Path(settings.home) / "catalog.db.writer-lock",
                   appender=partial(open_log, settings))

def clerk(n):
    while True:
        try:
            writer.append([use_entry(matter=f"m{n}", certificate_id="c", township="1201", subject=None)])
        except Exception:
            return

for n in range(4):
    threading.Thread(target=clerk, args=(n,), daemon=True).start()
time.sleep(1.0)
print("leaving", flush=True)
"""
    _leaves_in_time(script)
    catalog = Catalog.connect(Settings().catalog_url)
    try:
        with catalog.read() as conn:
            verify_log(conn, log_verifiers(Settings()))
            leaves = conn.exec_driver_sql("SELECT count(*) FROM log_leaves WHERE kind = 'use'").scalar_one()
        assert leaves > 0
    finally:
        catalog.dispose()


def test_leaving_while_a_slow_appender_commits_neither_hangs_nor_commits_a_group_twice(
    home: Path, tmp_path: Path
) -> None:
    """The same exit with an appender whose transactions take 0.3 s, so that the exit meets
    groups under way: every group is committed once — by the appender or, once it is stopped,
    by the writer itself — and the interpreter exits. (Timing-bound: the code before the
    exchange lock passes it too on this machine; a reviewer's script with three clerks looping
    without end hung it, or committed a group twice, within a few tries.)"""

    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    record = tmp_path / "committed-by-the-appender"
    script = f"""
import sys, threading, time
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
import sharing.logwriter as lw
from appender_doubles import commits_slowly
from catalog import Catalog
from evidence.keys import open_key_store
from evidence.log import TransparencyLog, use_entry
from onceonly.settings import Settings

lw._appender_main = commits_slowly
lw._Appender.RETRY_AFTER = 0.0  # any appender gone is started again at once: not after the stop
settings = Settings()
catalog = Catalog.connect(settings.catalog_url)
log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
writer = lw.LogWriter(catalog, log, turns=Path(settings.home) / "lock", appender={str(record)!r})

def clerk(n):
    for k in range(1000):
        try:
            writer.append([use_entry(matter=f"m{{n}}-{{k}}", certificate_id="c", township="1", subject=None)])
        except Exception as exc:
            print("failed", n, k, type(exc).__name__, flush=True)

for n in range(3):
    threading.Thread(target=clerk, args=(n,), daemon=True).start()
    time.sleep(0.05)
time.sleep(0.1)
print("leaving", flush=True)
"""
    done = _leaves_in_time(script)
    by_appender = record.read_text().split() if record.exists() else []
    catalog = Catalog.connect(Settings().catalog_url)
    try:
        with catalog.read() as conn:
            size = conn.exec_driver_sql("SELECT tree_size FROM log_head").scalar_one_or_none() or 0
            if size:  # the writer committed some itself (the appender stopped under them)
                verify_log(conn, log_verifiers(Settings()))
            here = [json.loads(leaf_at(conn, i).entry or b"").get("matter") for i in range(size)]
    finally:
        catalog.dispose()
    assert by_appender, done.stdout
    assert len(by_appender) == len(set(by_appender)) and not set(by_appender) & set(here), (by_appender, here)


def _leaves_in_time(script: str) -> Any:
    """``script`` run by a new interpreter, which must print "leaving" and exit, in time."""
    import subprocess
    import sys
    import time

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "leaving" in done.stdout, done.stderr[-2000:]
    assert time.monotonic() - started < 90
    return done


def _thread_exchanges(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A 1 for each exchange the writer's thread has with an appender (the loop's are its own)."""
    from sharing.logwriter import _Appender

    exchanges: list[int] = []
    exchange = _Appender._exchange_taken
    monkeypatch.setattr(
        _Appender, "_exchange_taken", lambda self, message: exchanges.append(1) or exchange(self, message)
    )
    return exchanges


@pytest.mark.parametrize(
    ("stand_in", "outcome"),
    [
        ("dies_before_committing", "committed by the writer"),
        ("dies_while_committing", "may have been logged"),
        ("answers_out_of_turn", "out of turn"),
        ("hangs_before_committing", "committed by the writer"),
        ("hangs_while_committing", "may have been logged"),
    ],
)
def test_a_group_a_loop_hands_the_appender_is_taken_as_the_writers_thread_takes_one(
    home: Path, monkeypatch: pytest.MonkeyPatch, stand_in: str, outcome: str
) -> None:
    """Requests on an event loop exchange their group with the appender from the loop itself (no
    thread between): an appender gone before committing leaves the group to the writer's thread
    (each request answered, each use logged once); gone while committing, or answering out of
    turn, fails each request of the group (perhaps logged: never logged twice); the writer's
    thread never exchanged with it. One that stops answering is killed after REPLY_TIMEOUT, then
    taken as one that died."""
    import asyncio

    import appender_doubles

    from sharing.logwriter import _Appender

    thread_exchanges = _thread_exchanges(monkeypatch)
    with _writer(appender=True) as writer:
        assert writer._appender is not None
        writer.append([_use(0)])  # by the real appender
        writer._appender.stop()
        monkeypatch.setattr(_Appender, "REPLY_TIMEOUT", 0.5)  # the stand-in's, not the real one's
        writer._appender = stand = _appender(getattr(appender_doubles, stand_in), home)
        process = stand._process

        async def requests() -> list[Logged | BaseException]:
            jobs = [writer.append_async([_use(n)]) for n in range(1, 4)]
            return list(await asyncio.gather(*jobs, return_exceptions=True))

        results = asyncio.run(requests())
        assert thread_exchanges == [1] and stand.pid is None  # the first append's only; discarded
        assert process is not None and not process.is_alive()
        if outcome == "committed by the writer":
            assert all(isinstance(r, Logged) and r.indices for r in results), results
            assert [m for m in _matters(writer) if m] == ["m0", "m1", "m2", "m3"]
        else:
            assert all(isinstance(r, AppenderStopped) and outcome in str(r) for r in results), results
            assert [m for m in _matters(writer) if m] == ["m0"]


def test_a_group_a_loop_hands_over_while_the_thread_exchanges_goes_to_the_thread(
    appending: LogWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The appender busy with the writer's thread (its exchange taken): the loop does not wait
    for it, its group goes to the thread, which appends it once the exchange is free."""
    import asyncio

    appender = appending._appender
    assert appender is not None
    thread_exchanges = _thread_exchanges(monkeypatch)
    appender._exchange.acquire()
    threading.Timer(0.3, appender._exchange.release).start()

    async def requests() -> list[Logged]:
        return list(await asyncio.gather(*(appending.append_async([_use(n)]) for n in range(1, 4))))

    results = asyncio.run(requests())
    assert thread_exchanges == [1] and len({r.checkpoint for r in results}) == 1
    assert [m for m in _matters(appending) if m] == ["m1", "m2", "m3"]


def test_a_loop_closed_with_its_group_out_holds_no_other_exchange_up(home: Path, tmp_path: Path) -> None:
    """A loop that closed while the appender had its group (its requests gone with it) never
    reads the outcome: the next exchange takes it over (that appender discarded) instead of
    waiting for it, and the writer stops at once, not after its 30 s for an exchange."""
    import asyncio
    import time

    from appender_doubles import commits_slowly

    from sharing.logwriter import _Appender

    record = tmp_path / "record"  # commits_slowly's opener: where it writes what it "commits"
    with _writer(appender=True) as writer:
        assert writer._appender is not None
        writer._appender.stop()
        writer._appender = stand = _Appender(
            str(record),  # type: ignore[arg-type]
            home / "catalog.db.writer-lock",
            main=commits_slowly,
        )
        slow = stand._process

        async def leave_with_a_group_out() -> None:
            out = asyncio.ensure_future(writer.append_async([_use(1)]))
            await asyncio.sleep(0.1)  # sent: the appender takes 0.3 s over it
            assert not out.done()

        asyncio.run(leave_with_a_group_out())
        started = time.monotonic()
        logged = writer.append([_use(2)])  # not by the slow one: discarded, not started again for 30 s
        assert logged.indices and time.monotonic() - started < 5
        assert slow is not None and not slow.is_alive()
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert [m for m in _matters_of_home() if m] == ["m2"]


def _matters_of_home() -> list[str]:
    catalog = Catalog.connect(Settings().catalog_url)
    try:
        with catalog.read() as conn:
            size = conn.exec_driver_sql("SELECT tree_size FROM log_head").scalar_one()
            return [json.loads(leaf_at(conn, i).entry or b"").get("matter") for i in range(size)]
    finally:
        catalog.dispose()


def test_closing_finishes_the_loops_group_out_and_those_waiting_behind_it(appending: LogWriter) -> None:
    """close() from another thread (as the service's lifespan closes it) while the appender has
    the loop's group, waiting for its turn, and a later request waits behind it: both are
    appended before the appender stops."""
    import asyncio

    appending.append([_use(0)])
    turns = Path(Settings().home) / "catalog.db.writer-lock"

    async def requests() -> list[Logged | BaseException]:
        with _turn_held(turns):  # the appender waits for its turn (not yet committing)
            first = asyncio.ensure_future(appending.append_async([_use(1)]))
            await asyncio.sleep(0.3)  # sent: out
            second = asyncio.ensure_future(appending.append_async([_use(2)]))
            await asyncio.sleep(0.1)  # handed over: waiting behind it
            closer = threading.Thread(target=appending.close)
            closer.start()
            await asyncio.sleep(0.3)
        results = list(await asyncio.gather(first, second, return_exceptions=True))
        await asyncio.to_thread(closer.join, 30)
        return results

    results = asyncio.run(requests())
    assert all(isinstance(r, Logged) for r in results), results
    assert [m for m in _matters(appending) if m] == ["m0", "m1", "m2"]


@contextlib.contextmanager
def _turn_held(turns: Path) -> Iterator[None]:
    import fcntl
    import os

    fd = os.open(turns, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def test_a_request_withdrawn_while_its_group_could_not_be_sent_is_never_logged(appending: LogWriter) -> None:
    """A pass whose group the loop cannot send (an entry that does not pickle) goes to the
    writer's thread as it is: a request withdrawn by its timeout meanwhile (the thread busy with
    a job of its own) is never logged; the one that does not pickle fails alone."""
    import asyncio
    import time

    from evidence.log import Committed

    appending.append([_use(0)])
    bad = Committed("use", "c-bad", {"matter": "bad", "x": lambda: 0})
    busy = threading.Thread(
        target=appending.append, args=([_use(5)],), kwargs={"before": lambda _: time.sleep(1.5)}
    )
    busy.start()
    threading.Event().wait(0.2)  # the writer's thread is in that job

    async def requests() -> list[Logged | BaseException]:
        jobs = [appending.append_async([_use(1)], timeout=0.5), appending.append_async([bad], timeout=10)]
        return list(await asyncio.gather(*jobs, return_exceptions=True))

    withdrawn, failed = asyncio.run(requests())
    busy.join(30)
    assert isinstance(withdrawn, TimeoutError) and isinstance(failed, Exception), (withdrawn, failed)
    assert "pickle" in str(failed).lower(), failed
    appending.append([_use(6)])  # after everything the thread had
    assert [m for m in _matters(appending) if m] == ["m0", "m5", "m6"]


def test_a_blocking_append_on_the_loops_thread_while_its_group_is_out_is_committed_by_the_thread(
    appending: LogWriter,
) -> None:
    """append() (blocking) called on the loop's own thread while the appender has that loop's
    group: the writer's thread does not wait for the exchange the blocked loop holds, it commits
    the job itself in its turn."""
    import asyncio
    import time

    appending.append([_use(0)])

    async def main() -> tuple[Logged, float, Logged]:
        out = asyncio.ensure_future(appending.append_async([_use(1)]))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the pass ended: the loop sent its group
        assert appending._loop_out is not None
        started = time.monotonic()
        blocking = appending.append([_use(2)], timeout=10)
        return blocking, time.monotonic() - started, await out

    blocking, took, grouped = asyncio.run(main())
    assert blocking.indices and grouped.indices and took < 5
    assert sorted(m for m in _matters(appending) if m) == ["m0", "m1", "m2"]


def test_a_loops_group_is_followed_in_the_pool_while_the_view_is_busy(home: Path) -> None:
    """``committed`` runs on the loop for the loop's groups, unless ``committed_busy`` says it
    would wait (the view folding a growth elsewhere): then in a thread of the loop's pool, and
    the requests are answered once it has run."""
    import asyncio

    busy = threading.Event()
    ran_in: list[str] = []

    def committed(_: object) -> None:
        ran_in.append(threading.current_thread().name)

    with _writer(appender=True, committed=committed, committed_busy=busy.is_set) as writer:
        writer.append([_use(0)])

        async def request(n: int) -> Logged:
            return await writer.append_async([_use(n)])

        assert asyncio.run(request(1)).indices
        busy.set()
        assert asyncio.run(request(2)).indices
    assert ran_in[0] == "onceonly-log-writer" and ran_in[1] == "MainThread"
    assert ran_in[2] not in ("onceonly-log-writer", "MainThread"), ran_in


def test_a_big_group_out_and_a_blocking_append_on_the_loops_thread_do_not_wait_for_each_other(
    appending: LogWriter,
) -> None:
    """The appender sends a group's outcome after its turn: one larger than the pipe holds (1,500
    entries), not yet read by a loop blocked on a blocking append, holds nobody's turn, so the
    writer's thread commits that append and the loop then reads the outcome."""
    import asyncio
    import time

    appending.append([_use(0)])
    got: dict[str, Any] = {}

    async def main() -> None:
        out = asyncio.ensure_future(appending.append_async([_use(1000 + n) for n in range(1500)]))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the pass ended: the loop sent its group
        time.sleep(0.5)  # the appender has committed and is sending the outcome
        got["blocking"] = appending.append([_use(2)], timeout=5)
        got["grouped"] = await out

    running = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    running.start()
    running.join(30)
    assert not running.is_alive(), "the loop and the writer waited for each other"
    assert got["blocking"].indices and len(got["grouped"].indices) == 1500
    assert len([m for m in _matters(appending) if m]) == 1502


def test_closing_commits_a_loops_group_whose_appender_died_before_committing(appending: LogWriter) -> None:
    """close() from another thread while the appender has the loop's group; the appender killed
    before committing it: the writer's thread, still running until the loop's groups are done,
    commits the group — logged once, the request answered."""
    import asyncio
    import os
    import signal

    appending.append([_use(0)])
    turns = Path(Settings().home) / "catalog.db.writer-lock"

    async def main() -> Logged | BaseException:
        with _turn_held(turns):
            out = asyncio.ensure_future(appending.append_async([_use(1)]))
            await asyncio.sleep(0.3)
            assert appending._loop_out is not None and appending._appender is not None
            closer = _closing(appending)
            await asyncio.sleep(0.3)
            os.kill(appending._appender.pid or 0, signal.SIGKILL)
            await asyncio.sleep(0.3)
        return await _its_outcome(out, closer)

    _answered_and_logged_once(appending, asyncio.run(main()))


def _closing(writer: LogWriter) -> threading.Thread:
    """close() in a thread of its own, as the service's lifespan closes the writer."""
    closer = threading.Thread(target=writer.close)
    closer.start()
    return closer


async def _its_outcome(out: Any, closer: threading.Thread) -> Logged | BaseException:
    import asyncio

    result = (await asyncio.gather(out, return_exceptions=True))[0]
    await asyncio.to_thread(closer.join, 30)
    return result


def _answered_and_logged_once(writer: LogWriter, result: Logged | BaseException) -> None:
    assert isinstance(result, Logged) and result.indices, result
    assert [m for m in _matters(writer) if m] == ["m0", "m1"]


def test_closing_in_the_middle_of_a_loops_pass_appends_what_the_pass_accepted(appending: LogWriter) -> None:
    """close() from another thread while a loop's pass is under way: a job the pass accepted
    (handed over when the pass ends) is appended, not failed as stopped."""
    import asyncio
    import time

    appending.append([_use(0)])

    async def main() -> Logged | BaseException:
        out = asyncio.ensure_future(appending.append_async([_use(1)]))
        await asyncio.sleep(0)  # accepted in this pass; the pass not over
        closer = _closing(appending)
        time.sleep(0.3)  # the rest of a busy pass
        return await _its_outcome(out, closer)

    _answered_and_logged_once(appending, asyncio.run(main()))


def test_closing_on_the_loop_with_its_group_out_does_not_wait_for_it(appending: LogWriter) -> None:
    """close() called on the loop's own thread while the appender has the loop's group: the loop
    cannot read the outcome meanwhile, so the writer does not wait for it (its appender is
    discarded) and the request is answered that its use may have been logged (never twice)."""
    import asyncio
    import time

    appending.append([_use(0)])
    turns = Path(Settings().home) / "catalog.db.writer-lock"

    async def main() -> tuple[float, Logged | BaseException]:
        with _turn_held(turns):
            out = asyncio.ensure_future(appending.append_async([_use(1)]))
            await asyncio.sleep(0.3)
        started = time.monotonic()
        appending.close()
        took = time.monotonic() - started
        return took, (await asyncio.gather(asyncio.wait_for(out, 10), return_exceptions=True))[0]

    took, answer = asyncio.run(main())
    assert took < 5 and isinstance(answer, AppenderStopped), (took, answer)
    assert [m for m in _matters(appending) if m] in (["m0"], ["m0", "m1"])
