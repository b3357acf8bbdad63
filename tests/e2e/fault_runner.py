"""Run the ``onceonly`` command line in this process, deterministically, and die at a named point.

Usage (by tests/e2e/test_faults.py)::

    python tests/e2e/fault_runner.py [--kill-at POINT[:N]] -- run

``--kill-at`` sends this process SIGKILL — no cleanup, no ``finally``, exactly a crash or an
operator's ``kill -9`` — on the N-th time (default 1st) the run reaches POINT:

- ``after-pull``: a batch was pulled from the department system, not yet validated;
- ``after-validation``: a batch was validated, not yet landed;
- ``mid-issuance``: inside the landing transaction, after the certificates' log leaves were
  appended, before their catalog rows (the transaction never commits);
- ``after-commit``: the landing transaction committed, the batch's Parquet files are still in
  staging (not yet published to the lake);
- ``mid-extract``: township extracts are being written (some written, their marks not cleared);
- ``after-status-commit``: status lists were signed and committed, their files not yet written.

So that a killed run followed by a rerun can be compared with one clean run byte for byte
(log root included), the clock of the log's entries (batch receipts, status lists, lifecycle)
is fixed, each status list's random index order is drawn from a generator seeded by its
issuer and number instead of the OS, each certificate's commitment salt is derived from its
identifier, and a snapshot connector's generations are numbered 1, 2, … instead of named by the
clock and a random suffix (the name is in the cursor, so in the batch's id and the certificates
that cite it). None of this changes what is computed, only when and in
which order — which is what the comparison must not depend on.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import sys
import types
from collections.abc import Callable
from typing import Any

FIXED_NOW = dt.datetime(2026, 11, 21, 2, 0, 0, tzinfo=dt.UTC)


def _kill_on(count: int) -> Callable[[], None]:
    calls = 0

    def maybe_kill() -> None:
        nonlocal calls
        calls += 1
        if calls == count:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    return maybe_kill


def _before(module: Any, name: str, hook: Callable[[], None]) -> None:
    original = getattr(module, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        hook()
        return original(*args, **kwargs)

    setattr(module, name, wrapped)


def _after(module: Any, name: str, hook: Callable[[], None]) -> None:
    original = getattr(module, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        hook()
        return result

    setattr(module, name, wrapped)


def install_kill(point: str, count: int) -> None:
    import evidence.issuance
    import flows.daily_sharing
    import lake.parquet
    import sharing.extracts

    hook = _kill_on(count)
    if point == "after-pull":
        _before(flows.daily_sharing, "validate_batch", hook)
    elif point == "after-validation":
        _before(flows.daily_sharing, "land_batch", hook)
    elif point == "mid-issuance":
        _before(evidence.issuance, "_insert_certificates", hook)
    elif point == "after-commit":
        _before(lake.parquet.ParquetLake, "publish", hook)
    elif point == "mid-extract":  # a township's rows planned into its temporary folder's Parquet file
        _after(sharing.extracts, "_plan", hook)
    elif point == "after-status-commit":
        _before(flows.daily_sharing, "write_status_files", hook)
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def make_deterministic() -> None:
    import hashlib

    import pyarrow as pa

    import evidence.issuance
    import evidence.lifecycle
    import evidence.status_list
    import lake.landing

    # Each certificate's commitment salt from its id, not the OS: the same certificate gets the
    # same salt whichever run issues it.
    evidence.issuance.salts_for = (
        lambda ids: pa.array(  # type: ignore[assignment]
            [hashlib.sha256(f"salt {cert_id}".encode()).digest()[:16] for cert_id in ids.to_pylist()],
            pa.binary(),
        )
    )

    for module in (lake.landing, evidence.status_list, evidence.lifecycle):
        module.utcnow = lambda: FIXED_NOW  # type: ignore[attr-defined]
    create_list = evidence.status_list._create_list

    def seeded_create_list(conn: Any, issuer: str, list_no: int) -> None:
        rng = random.Random(f"{issuer}/{list_no}")
        real_os = evidence.status_list.os
        evidence.status_list.os = types.SimpleNamespace(urandom=rng.randbytes)  # type: ignore[assignment]
        try:
            create_list(conn, issuer, list_no)
        finally:
            evidence.status_list.os = real_os

    evidence.status_list._create_list = seeded_create_list

    import connectors.snapshot

    def numbered_generation(self: connectors.snapshot.SnapshotStore) -> str:
        # Still sorts after every generation there (pruning relies on it), as the real name does.
        there = (
            [int(p.name.split("-", 1)[0]) for p in self.dir.glob("*.parquet")] if self.dir.is_dir() else []
        )
        return f"{max(there, default=0) + 1:020d}-00000000"

    connectors.snapshot.SnapshotStore.new_generation = numbered_generation  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    kill_at = None
    if argv and argv[0] == "--kill-at":
        kill_at, argv = argv[1], argv[2:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    make_deterministic()
    if kill_at:
        point, _, count = kill_at.partition(":")
        install_kill(point, int(count or 1))
    from cli.main import main as cli_main

    sys.argv = ["onceonly", *argv]
    cli_main()


if __name__ == "__main__":
    main(sys.argv[1:])
