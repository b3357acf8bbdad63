"""flows.prefetch: the next item produced on another thread, errors and stops handed across."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flows.prefetch import prefetched

_RUN: contextvars.ContextVar[str] = contextvars.ContextVar("run", default="none")


class _Source:
    """A generator that records which thread produced each item and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.produced: list[int] = []
        self.threads: set[int] = set()
        self.closed_on: int | None = None
        self.contexts: list[str] = []

    def items(self) -> Iterator[int]:
        try:
            for i in range(self.count):
                self.threads.add(threading.get_ident())
                self.contexts.append(_RUN.get())
                if i == self.fail_at:
                    raise ConnectionError(f"source went away at {i}")
                self.produced.append(i)
                yield i
        finally:
            self.closed_on = threading.get_ident()


def test_every_item_in_order_from_one_other_thread_in_the_callers_context() -> None:
    source = _Source(50)
    _RUN.set("run-7")
    assert list(prefetched(source.items)) == list(range(50))
    assert len(source.threads) == 1 and threading.get_ident() not in source.threads
    assert source.contexts == ["run-7"] * 50  # tasks it calls belong to the caller's flow run
    assert source.closed_on in source.threads


def test_an_error_arrives_after_the_items_before_it() -> None:
    source = _Source(10, fail_at=4)
    got: list[int] = []
    with pytest.raises(ConnectionError, match="source went away at 4"):
        for item in prefetched(source.items):
            got.append(item)
    assert got == [0, 1, 2, 3]


def test_an_error_in_make_itself_reaches_the_consumer() -> None:
    def broken() -> Iterator[int]:
        raise PermissionError("wrong password for gongan-household")

    with pytest.raises(PermissionError, match="wrong password"):
        list(prefetched(broken))


def test_the_producer_stays_at_most_depth_ahead() -> None:
    source = _Source(100)
    items = prefetched(source.items, depth=2)
    assert next(items) == 0
    time.sleep(0.3)  # plenty of time to run ahead, if it could
    # item 0 handed over, 1 and 2 in the queue, 3 produced and waiting to be put
    assert len(source.produced) <= 4
    items.close()


def test_a_consumer_that_stops_early_stops_and_closes_the_producer() -> None:
    source = _Source(1000)
    items = prefetched(source.items)
    for item in items:
        if item == 3:
            break
    items.close()
    assert source.closed_on in source.threads  # the generator's finally ran on its own thread
    assert len(source.produced) <= 6
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())


def test_an_error_while_consuming_stops_the_producer() -> None:
    source = _Source(1000)

    def land_all() -> None:
        for item in prefetched(source.items, name="prefetch-landing"):
            if item == 2:
                raise RuntimeError("the contract breached")

    with pytest.raises(RuntimeError, match="breached"):
        land_all()
    assert source.closed_on is not None
    assert not any(t.name == "prefetch-landing" and t.is_alive() for t in threading.enumerate())


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        next(prefetched(lambda: iter([1]), depth=0))


def test_an_interrupt_waits_only_briefly_for_a_batch_being_pulled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import flows.prefetch as prefetch

    monkeypatch.setattr(prefetch, "_INTERRUPTED_WAIT", 0.2)
    release = threading.Event()

    def slow() -> Iterator[int]:
        yield 1
        release.wait(10)  # a long query, a whole-table snapshot being staged
        yield 2

    items = prefetched(slow, name="prefetch-slow")
    assert next(items) == 1
    started = time.monotonic()
    with caplog.at_level("WARNING"), pytest.raises(KeyboardInterrupt):
        items.throw(KeyboardInterrupt)  # Ctrl-C while landing waited for the next batch
    assert time.monotonic() - started < 5
    assert "interrupted while a batch was being pulled" in caplog.text
    release.set()


def test_a_pull_that_fails_to_close_is_logged_by_type_only(caplog: pytest.LogCaptureFixture) -> None:
    def leaky() -> Iterator[str]:
        try:
            for i in range(100):
                yield f"110101199003071234-{i}"
        finally:
            raise OSError("cannot close 110101199003071234's file")

    items = prefetched(leaky, name="prefetch-leaky")
    with caplog.at_level("WARNING"):
        assert next(items).startswith("110101")
        items.close()
    assert "closing the stopped pull failed: OSError" in caplog.text
    assert "110101199003071234" not in caplog.text


def test_a_connector_whose_landed_hook_may_meet_its_pull_is_not_prefetched() -> None:
    from connectors.base import Connector
    from connectors.files import FilesConnector
    from connectors.http import HttpConnector
    from connectors.sql import SqlConnector

    class Acknowledging(SqlConnector):
        def landed(self, cursor: Any) -> None:  # e.g. acknowledges on the pull's own channel
            pass

    class Declared(Acknowledging):
        landed_while_pulling = True

    def prefetchable(cls: type[Connector]) -> bool:
        return bool(Connector.prefetchable.fget(object.__new__(cls)))  # type: ignore[attr-defined]

    assert prefetchable(SqlConnector) and prefetchable(HttpConnector) and prefetchable(FilesConnector)
    assert not prefetchable(Acknowledging)
    assert prefetchable(Declared)
