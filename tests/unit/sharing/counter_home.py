"""A home as a station's counter sees it: two residents of two townships with a 居民户口簿 landed
through the contract into the home's signed log (the ``people`` fixture is in conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from catalog import Catalog
from cli.main import app as cli
from onceonly.settings import Settings
from sharing.stations import add_station

LAKE_TESTS = Path(__file__).parents[1] / "lake"
MINE, OTHER = "120114001000", "120114002000"


def land_people(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Land two residents, each with a 居民户口簿 issued through the contract into the home's signed log:
    one of township 120114001000, one of 120114002000."""
    monkeypatch.syspath_prepend(str(LAKE_TESTS))
    import pyarrow as pa
    from landing_harness import HOUSEHOLD, TODAY, citizen_id, household_row, validate

    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from evidence.status_list import publish_status_lists
    from lake.landing import Lander, content_digest
    from lake.parquet import ParquetLake

    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    ids = {"mine": citizen_id(11), "other": citizen_id(12)}
    rows = [
        household_row(11, person_id=ids["mine"], township_code=MINE),
        household_row(12, person_id=ids["other"], township_code=OTHER),
    ]
    Lander(catalog, ParquetLake(settings.lake_dir), log, run_id="run-1").land(
        connector="gongan-household",
        compiled=HOUSEHOLD,
        validation=validate(HOUSEHOLD, rows),
        cursor_before=None,
        cursor_after={"page": 1},
        content_sha256=content_digest(pa.Table.from_pylist(rows)),
        issue_date=TODAY,
    )
    with catalog.begin() as conn:
        publish_status_lists(conn, log)
    catalog.dispose()
    return ids


def station(township: str = MINE, matters: list[str] | None = None) -> str:
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url, create=False)
    with catalog.begin() as conn:
        _, token = add_station(conn, "杨村街道便民服务中心", township, district="120114", matters=matters)
    catalog.dispose()
    return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(*options: str) -> Iterator[str]:
    """``onceonly serve`` of the current ONCEONLY_HOME in its own process (with ``options``),
    until it answers ``/healthz``; its base URL. Stopped on exit."""
    with served(*options) as (url, _):
        yield url


@contextmanager
def served(*options: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`serving`, with the process (``--workers N``: the supervisor of N processes)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), *options],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "onceonly serve did not start"
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=20)
