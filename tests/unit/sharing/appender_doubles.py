"""Stand-ins for the log writer's appender process (``sharing.logwriter._Appender``), run by
``spawn`` in a process of their own: module-level, so that the process can import them."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

from sharing.logwriter import _COMMITTING


def _ready_then_take_a_group(pipe: Any) -> None:
    pipe.send("ready")
    pickle.loads(pipe.recv_bytes())


def dies_before_committing(pipe: Any, *_: Any) -> None:
    _ready_then_take_a_group(pipe)
    os._exit(3)


def dies_while_committing(pipe: Any, *_: Any) -> None:
    _ready_then_take_a_group(pipe)
    pipe.send(_COMMITTING)
    os._exit(3)


def answers_out_of_turn(pipe: Any, *_: Any) -> None:
    _ready_then_take_a_group(pipe)
    pipe.send(_COMMITTING)
    pipe.send("ready")  # not where a group went
    time.sleep(60)


def starts_slowly(pipe: Any, *_: Any) -> None:
    time.sleep(3)
    pipe.send("ready")
    time.sleep(60)


def open_unless(stop: Path, starts: Path, settings: Any) -> Any:
    """The service's opener (``sharing.service.open_log``), counting its starts in ``starts``;
    refusing once ``stop`` exists (a catalog or key that no longer opens)."""
    from sharing.service import open_log

    with starts.open("a") as f:
        f.write(f"{os.getpid()}\n")
    if stop.exists():
        raise RuntimeError("the catalog does not open (stand-in)")
    return open_log(settings)


def open_with_another_key(settings: Any) -> Any:
    """The catalog and a log signing with a key that is not the service's (rotated meanwhile)."""
    from catalog import Catalog
    from evidence.keys import SigningKey
    from evidence.log import TransparencyLog

    catalog = Catalog.connect(settings.catalog_url, create=False)
    return catalog, TransparencyLog(SigningKey.generate(settings.log_origin), settings.log_origin)


def commits_slowly(pipe: Any, record: str, *_: Any) -> None:
    """An appender whose transactions take 0.3 s (no catalog): each group it "commits" is
    written to the file ``record`` (its opener's place), after its ``committing``; it stops as
    the real one does, on None or EOF, never on a signal."""
    _answers_slowly(pipe, before=0.3, after=0.0, record=record)


def _answers_slowly(pipe: Any, *, before: float, after: float, record: str | None = None) -> None:
    """Each group answered ``before`` s after it came with its COMMITTING, then ``after`` s later
    with an outcome (no catalog; its matters appended to ``record`` between the two)."""
    _deaf_to_signals()
    pipe.send("ready")
    while True:
        try:
            items = pickle.loads(pipe.recv_bytes())
        except (EOFError, OSError):
            return
        if items is None:
            return
        time.sleep(before)
        pipe.send(_COMMITTING)
        if record is not None:
            with open(record, "a", encoding="utf-8") as f:
                f.writelines(f"{item[2]['matter']}\n" for item in items)
        time.sleep(after)
        pipe.send((1, 1 + len(items), b"r" * 32, "checkpoint", tuple(b"e" for _ in items)))


def _deaf_to_signals() -> None:
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def hangs_before_committing(pipe: Any, *_: Any) -> None:
    """Takes a group and never answers (stuck, not dead: its pipe stays open)."""
    _deaf_to_signals()
    _ready_then_take_a_group(pipe)
    time.sleep(600)


def hangs_while_committing(pipe: Any, *_: Any) -> None:
    """Says it is committing a group, then never answers again."""
    _deaf_to_signals()
    _ready_then_take_a_group(pipe)
    pipe.send(_COMMITTING)
    time.sleep(600)


def words_slowly(pipe: Any, *_: Any) -> None:
    """Each word 0.6 s after the last: its COMMITTING 0.6 s after a group came, its outcome 0.6 s
    later (no catalog) — slow, never silent for 0.9 s."""
    _answers_slowly(pipe, before=0.6, after=0.6)
