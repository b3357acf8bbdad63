"""Every registered connector type keeps the connector contract.

Parametrized over ``connector_types()`` (the ``onceonly.connectors`` entry points): a type
registered without a real source below fails here, so a new type cannot skip the contract.
For each type: a small real source and the same registration pointed at a missing source.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from connectors import EnvironmentSecrets, Pulled, Registration, connector_types, create_connector
from connectors.base import Connector, Cursor
from departments import LICENCE_COLUMNS, LicenceApi
from departments.licences import create_licence_db, insert_licence_rows
from onceonly.errors import ConnectorError, OnceOnlyError, TerminalError, TransientError

pytestmark = pytest.mark.integration

ROWS = 23
BATCH = 5
TOKEN = "conformance-token-0123456789"


@dataclass
class Case:
    source: Connector  # a small real source holding ROWS rows
    missing: Connector  # the same kind of registration, pointed at a source that is not there


def _connector(type_: str, options: dict[str, Any], secrets: dict[str, str] | None = None) -> Connector:
    reg = Registration(
        name=f"conformance-{type_}",
        department="测试",
        dataset="conformance",
        type=type_,
        options=options,
        secrets={k: f"CONFORMANCE_{k.upper()}" for k in secrets or {}},
    )
    env = {f"CONFORMANCE_{k.upper()}": v for k, v in (secrets or {}).items()}
    return create_connector(reg, Path("/nonexistent"), EnvironmentSecrets(env))


def _sql(tmp_path: Path, stack: list[Callable[[], None]]) -> Case:
    db = tmp_path / "source.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE member (id INTEGER PRIMARY KEY, name TEXT, updated_at DATETIME)")
        conn.exec_driver_sql(
            "INSERT INTO member VALUES "
            + ", ".join(f"({i}, '名{i}', '2026-11-20 08:0{i % 4}:00.000000')" for i in range(ROWS))
        )
    engine.dispose()
    options = {"table": "member", "cursor": {"column": "updated_at", "tiebreak": "id"}}
    return Case(
        _connector("sql", {"url": f"sqlite:///{db}", **options}),
        _connector("sql", {"url": f"sqlite:///{tmp_path / 'gone.db'}", **options}),
    )


def _http(tmp_path: Path, stack: list[Callable[[], None]]) -> Case:
    db = tmp_path / "licences.db"
    create_licence_db(db)
    insert_licence_rows(
        db,
        [
            (f"91120114MA0000{i:03d}X", f"公司{i}", *([None] * 12), f"2026-11-20T08:0{i % 4}:00+08:00")
            for i in range(ROWS)
        ],
    )
    api = LicenceApi(db, token=TOKEN).start()
    stack.append(api.stop)
    options = {
        "path": "/business-licences",
        "fields": list(LICENCE_COLUMNS),
        "pagination": {"size": 10},
        "incremental": {"param": "updated_since", "field": "updated_at", "key": "uscc"},
        "auth": "bearer",
        "retries": 0,
    }
    return Case(
        _connector("http", {"base_url": api.base_url, **options}, {"token": TOKEN}),
        _connector("http", {"base_url": "http://127.0.0.1:1/api/v1", **options}, {"token": TOKEN}),
    )


def _files(tmp_path: Path, stack: list[Callable[[], None]]) -> Case:
    folder = tmp_path / "drop"
    folder.mkdir()
    for name, numbers in (("a.csv", range(0, 10)), ("b.csv", range(10, ROWS))):
        with (folder / name).open("w", encoding="gbk", newline="") as f:
            csv.writer(f).writerows([("编号", "姓名"), *((str(i), f"名{i}") for i in numbers)])
        os.utime(folder / name, (0, 0))
    options = {"encoding": "gbk", "rename": {"编号": "no", "姓名": "name"}}
    return Case(
        _connector("files", {"path": str(folder), **options}),
        _connector("files", {"path": str(tmp_path / "not-mounted"), **options}),
    )


CASES: dict[str, Callable[[Path, list[Callable[[], None]]], Case]] = {
    "sql": _sql,
    "http": _http,
    "files": _files,
}


@pytest.fixture(params=sorted(connector_types()))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    build = CASES.get(request.param)
    if build is None:
        pytest.fail(f"connector type {request.param!r} has no conformance source; add one to CASES")
    stack: list[Callable[[], None]] = []
    try:
        yield build(tmp_path, stack)
    finally:
        for stop in reversed(stack):
            stop()


def _pull(source: Connector, cursor: Cursor | None) -> list[Pulled]:
    return list(source.pull(cursor, BATCH))


def _records(pulled: list[Pulled]) -> list[dict[str, Any]]:
    return [r for p in pulled for r in p.batch.to_pylist()]


def test_pull_yields_record_batches_with_json_cursors(case: Case) -> None:
    pulled = _pull(case.source, None)
    assert pulled, "a source with rows yields batches"
    for p in pulled:
        assert isinstance(p, Pulled)
        assert isinstance(p.batch, pa.RecordBatch) and 0 < p.batch.num_rows <= BATCH
        assert p.batch.schema == pulled[0].batch.schema  # one schema for a pull of one source
        assert json.loads(json.dumps(p.cursor)) == p.cursor
    assert sum(p.batch.num_rows for p in pulled) == ROWS


def test_a_pull_from_the_final_cursor_yields_nothing(case: Case) -> None:
    final = _pull(case.source, None)[-1].cursor
    assert _pull(case.source, json.loads(json.dumps(final))) == []


def test_a_pull_from_an_intermediate_cursor_yields_exactly_the_rest(case: Case) -> None:
    pulled = _pull(case.source, None)
    everything = _records(pulled)
    for k in (0, len(pulled) // 2, len(pulled) - 2):
        rest = _records(_pull(case.source, json.loads(json.dumps(pulled[k].cursor))))
        assert _records(pulled[: k + 1]) + rest == everything


def test_a_missing_source_raises_a_connector_error_that_says_whether_to_retry(case: Case) -> None:
    with pytest.raises(OnceOnlyError) as info:
        _pull(case.missing, None)
    error = info.value
    assert isinstance(error, ConnectorError) and error.connector == case.missing.name
    assert isinstance(error, TransientError) != isinstance(error, TerminalError)
    assert case.missing.name in str(error)


def test_the_type_name_is_the_entry_point_name(case: Case) -> None:
    assert connector_types()[case.source.type_name] is type(case.source)


def test_a_sample_is_a_small_table_from_the_start(case: Case) -> None:
    sample = case.source.sample(3)
    assert isinstance(sample, pa.Table) and sample.num_rows == 3
    assert sample.to_pylist() == _records(_pull(case.source, None))[:3]
