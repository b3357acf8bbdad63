"""Who used my data on PostgreSQL and MariaDB: each use proven, and a use hidden from its subject's
list — its opening removed, or its leaf — found in every list, as on SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from catalog import Catalog, log_leaves, use_subjects
from contracts.identifiers import citizen_id_check_char
from evidence.keys import SigningKey
from evidence.log import TransparencyLog, append_committed_many, use_entry
from sharing.uses import uses_of

pytestmark = pytest.mark.integration

ORIGIN = "onceonly.example/test/uses"
KEY = SigningKey.generate(ORIGIN)
ME = "12011419900307001" + citizen_id_check_char("12011419900307001")
YOU = "12011419920101002" + citizen_id_check_char("12011419920101002")


@pytest.fixture(params=["postgresql", "mariadb"])
def catalog(request: pytest.FixtureRequest) -> Iterator[Catalog]:
    catalog = Catalog.connect(request.getfixturevalue(f"{request.param}_database"))
    log = TransparencyLog(KEY, ORIGIN)
    with catalog.begin() as conn:
        for n, who in enumerate((ME, YOU, ME)):
            use = use_entry(
                matter="pension-enrolment",
                certificate_id=f"cert-{n}",
                township="120114001000",
                material="居民户口簿",
                purpose="参保",
                subject=who,
                case_number=f"WQ-{n}",
            )
            append_committed_many(conn, log, [use])
    try:
        yield catalog
    finally:
        catalog.dispose()


def _mine(catalog: Catalog, who: str = ME) -> list[int]:
    with catalog.read() as conn:
        return list(
            conn.execute(
                sa.select(use_subjects.c.leaf_index)
                .where(use_subjects.c.subject_id == who)
                .order_by(use_subjects.c.leaf_index)
            ).scalars()
        )


def test_each_use_is_proven_and_the_list_complete(catalog: Catalog) -> None:
    with catalog.read() as conn:
        report = uses_of(conn, ME, [KEY.verifier])
    assert [u.entry["case_number"] for u in report.uses] == ["WQ-0", "WQ-2"]
    assert report.proven and report.hidden == ()


@pytest.mark.parametrize("removed", ["opening", "leaf"])
def test_a_hidden_use_is_found_in_every_list(catalog: Catalog, removed: str) -> None:
    first = _mine(catalog)[0]
    with catalog.begin() as conn:
        conn.execute(sa.delete(use_subjects).where(use_subjects.c.leaf_index == first))
        if removed == "leaf":
            conn.execute(sa.delete(log_leaves).where(log_leaves.c.leaf_index == first))
    with catalog.read() as conn:
        mine, yours = uses_of(conn, ME, [KEY.verifier]), uses_of(conn, YOU, [KEY.verifier])
    assert [u.entry["case_number"] for u in mine.uses] == ["WQ-2"]
    for report in (mine, yours):
        assert not report.proven and len(report.hidden) == 1
        problem = report.hidden[0]
        assert (
            f"(leaves {first})" in problem if removed == "opening" else "the log does not verify" in problem
        )
