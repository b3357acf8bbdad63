"""Every registered connector type keeps the connector contract.

Parametrized over ``connector_types()`` (the ``onceonly.connectors`` entry points): a type
registered without a real source below fails here, so a new type cannot skip the contract.
Each type reads the same 营业执照 register (generated demo data, the ``business_licence``
contract) from a real source of its kind — a SQLite database, the HTTP API on 127.0.0.1, a
CSV drop folder — and for each type there is also a source that is not there and one that is
broken (a missing table, a malformed JSON page, a truncated file).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from connectors import (
    EnvironmentSecrets,
    Pulled,
    Registration,
    SourcePaths,
    connector_types,
    create_connector,
)
from connectors.base import Connector, Cursor
from contracts.compiler import CompiledContract, compile_contract
from contracts.conform import conform
from contracts.model import contract_by_id
from departments import LICENCE_COLUMNS, Faults, LicenceApi, generate_all
from departments.licences import insert_licence_rows, read_licence_rows
from onceonly.errors import ConnectorError, OnceOnlyError, TerminalError, TransientError
from onceonly.settings import Settings

pytestmark = pytest.mark.integration

BATCH = 40
TOKEN = "conformance-token-0123456789"
LicenceRow = tuple[Any, ...]


@dataclass
class Case:
    source: Connector  # a real source holding the register
    missing: Connector  # the same kind of registration, pointed at a source that is not there
    broken: Connector  # the same kind of registration, on a source that answers nonsense
    add: Callable[[Sequence[LicenceRow]], None]  # put new rows into the source
    rows: int  # how many rows the source holds


def _connector(type_: str, options: dict[str, Any], secrets: dict[str, str] | None = None) -> Connector:
    reg = Registration(
        name=f"conformance-{type_}",
        department="测试",
        dataset="business_licence",
        type=type_,
        options=options,
        secrets={k: f"ONCEONLY_SECRET_CONFORMANCE_{type_.upper()}_{k.upper()}" for k in secrets or {}},
    )
    env = {f"ONCEONLY_SECRET_CONFORMANCE_{type_.upper()}_{k.upper()}": v for k, v in (secrets or {}).items()}
    return create_connector(
        reg, Path("/nonexistent"), EnvironmentSecrets(env), paths=SourcePaths.build(["/"])
    )


@pytest.fixture(scope="module")
def register(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated 营业执照 register, each key once (keyset pagination needs a unique tiebreak)."""
    root = tmp_path_factory.mktemp("departments")
    generate_all(root, rows=120, seed=7)
    db = root / "scjg" / "licences.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "DELETE FROM business_licence WHERE rowid NOT IN "
            "(SELECT min(rowid) FROM business_licence GROUP BY uscc)"
        )
    return db


@pytest.fixture(scope="module")
def compiled() -> CompiledContract:
    return compile_contract(contract_by_id(Settings().contracts_dir, "business_licence"))


def _own(register: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(register, tmp_path / "licences.db"))


def _sql(register: Path, tmp_path: Path, stack: list[Callable[[], None]]) -> Case:
    db = _own(register, tmp_path)
    options = {"table": "business_licence", "cursor": {"column": "updated_at", "tiebreak": "uscc"}}
    return Case(
        _connector("sql", {"url": f"sqlite:///{db}", **options}),
        _connector("sql", {"url": f"sqlite:///{tmp_path / 'gone.db'}", **options}),
        _connector("sql", {"url": f"sqlite:///{db}", **options, "table": "no_such_table"}),
        lambda rows: insert_licence_rows(db, rows),
        len(read_licence_rows(db)),
    )


def _http(register: Path, tmp_path: Path, stack: list[Callable[[], None]]) -> Case:
    db = _own(register, tmp_path)
    api = LicenceApi(db, token=TOKEN).start()
    faulty = LicenceApi(db, token=TOKEN, faults=Faults(malformed_pages={2})).start()
    stack += [api.stop, faulty.stop]
    options = {
        "path": "/business-licences",
        "fields": list(LICENCE_COLUMNS),
        "pagination": {"size": 30},
        "incremental": {"param": "updated_since", "field": "updated_at", "key": "uscc"},
        "auth": "bearer",
        "retries": 0,
    }
    secrets = {"token": TOKEN}
    return Case(
        _connector("http", {"base_url": api.base_url, **options}, secrets),
        _connector("http", {"base_url": "http://127.0.0.1:1/api/v1", **options}, secrets),
        _connector("http", {"base_url": faulty.base_url, **options}, secrets),
        lambda rows: insert_licence_rows(db, rows),
        len(read_licence_rows(db)),
    )


def _write_csv(path: Path, rows: Sequence[LicenceRow], age: float) -> None:
    with path.open("w", encoding="gb18030", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LICENCE_COLUMNS)
        writer.writerows(["" if v is None else v for v in r] for r in rows)
    os.utime(path, (time.time() - age, time.time() - age))


def _files(register: Path, tmp_path: Path, stack: list[Callable[[], None]]) -> Case:
    folder, broken = tmp_path / "drop", tmp_path / "broken"
    folder.mkdir()
    broken.mkdir()
    rows = read_licence_rows(register)
    half = len(rows) // 2
    _write_csv(folder / "a.csv", rows[:half], age=30)
    _write_csv(folder / "b.csv", rows[half:], age=20)
    (broken / "cut.csv").write_bytes((folder / "a.csv").read_bytes()[:-40] + b',"cut inside a quote')
    os.utime(broken / "cut.csv", (time.time() - 30, time.time() - 30))
    added: list[int] = []

    def add(new: Sequence[LicenceRow]) -> None:
        added.append(len(added))
        _write_csv(folder / f"new-{len(added)}.csv", new, age=10)

    options = {"pattern": "*.csv", "settle_seconds": 1}
    return Case(
        _connector("files", {"path": str(folder), **options}),
        _connector("files", {"path": str(tmp_path / "not-mounted"), **options}),
        _connector("files", {"path": str(broken), **options}),
        add,
        len(rows),
    )


CASES: dict[str, Callable[[Path, Path, list[Callable[[], None]]], Case]] = {
    "sql": _sql,
    "http": _http,
    "files": _files,
}


@pytest.fixture(params=sorted(connector_types()))
def case(request: pytest.FixtureRequest, register: Path, tmp_path: Path) -> Iterator[Case]:
    build = CASES.get(request.param)
    if build is None:
        pytest.fail(f"connector type {request.param!r} has no conformance source; add one to CASES")
    stack: list[Callable[[], None]] = []
    try:
        yield build(register, tmp_path, stack)
    finally:
        for stop in reversed(stack):
            stop()


def _pull(source: Connector, cursor: Cursor | None) -> list[Pulled]:
    return list(source.pull(json.loads(json.dumps(cursor)) if cursor else None, BATCH))


def _records(pulled: list[Pulled]) -> list[dict[str, Any]]:
    return [r for p in pulled for r in p.batch.to_pylist()]


def _later(rows: Sequence[LicenceRow], n: int) -> list[LicenceRow]:
    """``n`` new licences, changed after everything in the register."""
    updated = LICENCE_COLUMNS.index("updated_at")
    new = []
    for i, row in enumerate(rows[:n]):
        r = list(row)
        r[0] = f"Z{i:017d}"
        r[updated] = f"2026-12-01T08:00:{i:02d}+08:00"
        new.append(tuple(r))
    return new


def test_batches_match_the_contract_schema_and_json_cursors(case: Case, compiled: CompiledContract) -> None:
    pulled = _pull(case.source, None)
    assert pulled, "a source with rows yields batches"
    for p in pulled:
        assert isinstance(p, Pulled)
        assert isinstance(p.batch, pa.RecordBatch) and 0 < p.batch.num_rows <= BATCH
        assert p.batch.schema == pulled[0].batch.schema  # one schema for a pull of one source
        assert json.loads(json.dumps(p.cursor)) == p.cursor
        conformed = conform(p.batch, compiled, connector=case.source.name)  # raises on a missing column
        assert conformed.table.schema == compiled.arrow_schema and not conformed.extra_columns
        bad = {c: ok.false_count for c, ok in conformed.type_ok.items() if ok.false_count}
        assert not bad, f"values that do not convert to the contract's types: {bad}"
    assert sum(p.batch.num_rows for p in pulled) == case.rows


def test_a_pull_from_the_final_cursor_yields_nothing_and_then_only_what_was_added(
    case: Case, register: Path
) -> None:
    final = _pull(case.source, None)[-1].cursor
    assert _pull(case.source, final) == []
    new = _later(read_licence_rows(register), 3)
    case.add(new)
    added = _records(_pull(case.source, final))
    assert [r["uscc"] for r in added] == [r[0] for r in new]


def test_a_pull_from_an_intermediate_cursor_yields_exactly_the_rest(case: Case) -> None:
    pulled = _pull(case.source, None)
    everything = _records(pulled)
    for k in (0, len(pulled) // 2, len(pulled) - 2):
        rest = _records(_pull(case.source, pulled[k].cursor))
        assert _records(pulled[: k + 1]) + rest == everything


def test_a_missing_source_raises_a_connector_error_that_says_whether_to_retry(case: Case) -> None:
    with pytest.raises(OnceOnlyError) as info:
        _pull(case.missing, None)
    error = info.value
    assert isinstance(error, ConnectorError) and error.connector == case.missing.name
    assert isinstance(error, TransientError) != isinstance(error, TerminalError)
    assert case.missing.name in str(error)


def test_a_broken_source_raises_only_a_terminal_connector_error(case: Case) -> None:
    try:
        _pull(case.broken, None)
    except OnceOnlyError as error:
        assert isinstance(error, ConnectorError) and isinstance(error, TerminalError), repr(error)
        assert error.connector == case.broken.name and case.broken.name in str(error)
    except Exception as error:  # pragma: no cover - the failure this test exists to catch
        pytest.fail(f"{case.broken.type_name} raised {type(error).__name__}, not an OnceOnlyError: {error}")
    else:
        pytest.fail("a broken source must fail")


def test_the_type_name_is_the_entry_point_name(case: Case) -> None:
    assert connector_types()[case.source.type_name] is type(case.source)


def test_a_sample_is_a_small_table_from_the_start(case: Case) -> None:
    sample = case.source.sample(3)
    assert isinstance(sample, pa.Table) and sample.num_rows == 3
    assert sample.to_pylist() == _records(_pull(case.source, None))[:3]
