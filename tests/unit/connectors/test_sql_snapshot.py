"""The ``sql`` connector in snapshot mode, on real SQLite files: tables without a change timestamp.

PostgreSQL and MariaDB run the same scenario in ``tests/integration/test_sql_snapshot_servers.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from connector_sources import column, connector, drain, registration

from connectors.base import Pulled
from onceonly.errors import ConfigurationError, SourceSchemaChanged

metadata = sa.MetaData()
licences = sa.Table(  # no timestamp column at all: only snapshot mode can see what changed
    "licence",
    metadata,
    sa.Column("cert_no", sa.String(20), primary_key=True),
    sa.Column("holder", sa.String(50)),
    sa.Column("fee", sa.Numeric(10, 2)),
    sa.Column("issued", sa.Date),
    sa.Column("scan", sa.LargeBinary),
)


def licence(i: int, holder: str | None = None) -> dict[str, Any]:
    return {
        "cert_no": f"C{i:04d}",
        "holder": holder or f"持证人{i}",
        "fee": Decimal(i) / 4,
        "issued": dt.date(2020, 1, 1) + dt.timedelta(days=i),
        "scan": bytes([i % 256, 0x1F]),
    }


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[sa.Engine, str]]:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(licences), [licence(i) for i in range(1, 8)])
    yield engine, url
    engine.dispose()


def snapshot_registration(url: str, **options: Any) -> Any:
    return registration(
        "sql", name="scjg-licences", url=url, table="licence", change_detection="snapshot",
        key=["cert_no"], **options,
    )  # fmt: skip


def counts(pulled: list[Pulled]) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in pulled:
        for k, v in p.changes.items():
            total[k] = total.get(k, 0) + v
    return total


def test_new_changed_and_deleted_rows_are_detected_and_a_second_pull_yields_nothing(
    db: tuple[sa.Engine, str], tmp_path: Path
) -> None:
    engine, url = db
    reg = snapshot_registration(url)
    home = tmp_path / "home"

    first = drain(connector(reg, home=home), None, batch_size=3)
    assert sorted(column(first, "cert_no")) == [f"C{i:04d}" for i in range(1, 8)]
    assert [p.batch.num_rows for p in first] == [3, 3, 1]
    assert counts(first) == {"new": 7, "changed": 0, "deleted": 0}
    assert str(first[0].batch.schema.field("fee").type) == "decimal128(10, 2)"
    assert (home / "snapshots" / "scjg-licences").is_dir()

    assert drain(connector(reg, home=home), first[-1].cursor) == []  # nothing changed

    with engine.begin() as conn:
        conn.execute(sa.update(licences).where(licences.c.cert_no == "C0002").values(holder="改名"))
        conn.execute(sa.delete(licences).where(licences.c.cert_no == "C0005"))
        conn.execute(sa.insert(licences), [licence(9)])
    second = drain(connector(reg, home=home), first[-1].cursor, batch_size=3)
    assert sorted(column(second, "cert_no")) == ["C0002", "C0009"]
    assert sorted(column(second, "holder")) == sorted(["改名", "持证人9"])
    assert counts(second) == {"new": 1, "changed": 1, "deleted": 1}
    assert second[-1].deleted is not None and second[-1].deleted.to_pylist() == ["C0005"]

    assert drain(connector(reg, home=home), second[-1].cursor) == []


def test_a_change_in_any_column_counts_even_binary_or_null(db: tuple[sa.Engine, str], tmp_path: Path) -> None:
    engine, url = db
    reg = snapshot_registration(url)
    first = drain(connector(reg, home=tmp_path), None)
    with engine.begin() as conn:
        conn.execute(sa.update(licences).where(licences.c.cert_no == "C0003").values(scan=b"\x00"))
        conn.execute(sa.update(licences).where(licences.c.cert_no == "C0004").values(issued=None))
    second = drain(connector(reg, home=tmp_path), first[-1].cursor)
    assert sorted(column(second, "cert_no")) == ["C0003", "C0004"]
    assert counts(second) == {"new": 0, "changed": 2, "deleted": 0}


def test_a_run_that_dies_before_landing_resumes_the_staged_rows_not_the_moved_source(
    db: tuple[sa.Engine, str], tmp_path: Path
) -> None:
    engine, url = db
    reg = snapshot_registration(url)
    pulling = connector(reg, home=tmp_path).pull(None, 2)
    landed = next(pulling)  # the first batch lands, then the run dies
    pulling.close()
    with engine.begin() as conn:  # meanwhile the source moves on
        conn.execute(sa.insert(licences), [licence(20)])
    rest = drain(connector(reg, home=tmp_path), landed.cursor, batch_size=2)
    got = column([landed], "cert_no") + column(rest, "cert_no")
    assert sorted(got) == [f"C{i:04d}" for i in range(1, 8)]  # each once, the staged pull only
    after = drain(connector(reg, home=tmp_path), rest[-1].cursor)
    assert column(after, "cert_no") == ["C0020"] and counts(after)["new"] == 1


def test_a_query_works_in_snapshot_mode_and_sample_stages_nothing(
    db: tuple[sa.Engine, str], tmp_path: Path
) -> None:
    _, url = db
    reg = registration(
        "sql", url=url, query="SELECT cert_no, holder FROM licence WHERE fee > 1",
        change_detection="snapshot", key=["cert_no"],
    )  # fmt: skip
    assert connector(reg, home=tmp_path).sample(2).column("cert_no").to_pylist() == ["C0005", "C0006"]
    assert not (tmp_path / "snapshots").exists()
    pulled = drain(connector(reg, home=tmp_path), None)
    assert sorted(column(pulled, "cert_no")) == ["C0005", "C0006", "C0007"]


def test_a_key_column_missing_from_the_table_is_a_schema_change(
    db: tuple[sa.Engine, str], tmp_path: Path
) -> None:
    _, url = db
    reg = registration("sql", url=url, table="licence", change_detection="snapshot", key=["licence_no"])
    with pytest.raises(SourceSchemaChanged, match="'licence_no' is missing from table 'licence'"):
        drain(connector(reg, home=tmp_path))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"change_detection": "snapshot"}, "change_detection: snapshot needs key"),
        (
            {"change_detection": "snapshot", "key": ["cert_no"], "cursor": {"column": "u", "tiebreak": "id"}},
            "either cursor .* or change_detection: snapshot, not both",
        ),
        ({}, "give cursor: .* or change_detection: snapshot"),
        (
            {"key": ["cert_no"], "cursor": {"column": "u", "tiebreak": "id"}},
            "key is only used with change_detection: snapshot",
        ),
        ({"change_detection": "hash", "key": ["cert_no"]}, r"options\.change_detection"),
    ],
)
def test_registration_refuses_an_inconsistent_snapshot_setup(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        connector(registration("sql", name="scjg-licences", url="sqlite:///x.db", table="licence", **options))
    assert "'scjg-licences'" in str(info.value)
