"""办事堵点 on a real catalog: records landed through the real contracts (some quarantined), counter
answers 数据待部门更正 recorded as the counter gives them, work orders per department with the
right counts, files private and naming nobody, and a corrected record closing its work order."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import Catalog
from catalog._schema import blocked_materials, work_orders
from onceonly.settings import Settings

LAKE_TESTS = Path(__file__).parents[1] / "lake"
GONGAN, MINZHENG = "天津市公安局武清分局", "天津市武清区民政局"
MINE = "120114001000"


@dataclass
class World:
    settings: Settings
    catalog: Catalog
    land: Any  # (rows, compiled, connector) -> LandedBatch
    ids: dict[str, str]
    log: Any
    today: dt.date

    def ask(self, subject: str, matter: str, *, township: str | None = MINE, read_only: bool = False) -> Any:
        """A skip-check as the counter asks it: the CLI's --record-use (a write transaction with
        the log), or the service's (a read transaction, the uses handed back unlogged)."""
        from contracts.model import certificate_datasets
        from evidence.keys import log_verifiers
        from sharing.matters import load_matters
        from sharing.skipcheck import skip_check

        issued_by = certificate_datasets(self.settings.contracts_dir)
        catalogue = load_matters(self.settings.matters_file, known_types=issued_by)
        verifiers = log_verifiers(self.settings)
        common: dict[str, Any] = {
            "verifiers": verifiers,
            "relatives": catalogue.relatives,
            "today": self.today,
        }
        if read_only or township is None:
            with self.catalog.read() as conn:
                answer = skip_check(
                    conn,
                    catalogue.asked(matter),
                    subject,
                    issued_by,
                    township=township,
                    station="s1",
                    **common,
                )
            if answer.blocked is not None:  # as the service's log writer runs it, with the uses
                with self.catalog.begin() as conn:
                    answer.blocked(conn)
            return answer
        with self.catalog.begin() as conn:
            return skip_check(
                conn, catalogue.asked(matter), subject, issued_by, log=self.log, township=township, **common
            )

    def run(self, run_id: str, min_citizens: int = 1) -> Any:
        from sharing.bottlenecks import run_bottlenecks

        with self.catalog.begin() as conn:
            return run_bottlenecks(
                conn, contracts_dir=self.settings.contracts_dir, run_id=run_id, min_citizens=min_citizens
            )


@pytest.fixture
def world(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.syspath_prepend(str(LAKE_TESTS))
    from landing_harness import HOUSEHOLD, MARRIAGE, TODAY, citizen_id, household_row, marriage_row, validate

    from cli.main import app as cli
    from connectors.registry import register_directory
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from evidence.status_list import publish_status_lists
    from lake.landing import Lander, content_digest
    from lake.parquet import ParquetLake

    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    register_directory(catalog, settings.registrations_dir)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    runs = iter(range(1, 100))

    def land(
        rows: list[dict[str, Any]], compiled: Any = HOUSEHOLD, connector: str = "gongan-household"
    ) -> Any:
        n = next(runs)
        landed = Lander(catalog, ParquetLake(settings.lake_dir), log, run_id=f"run-{n}").land(
            connector=connector,
            compiled=compiled,
            validation=validate(compiled, rows),
            cursor_before=None if n == 1 else {"page": n - 1},
            cursor_after={"page": n},
            content_sha256=content_digest(pa.Table.from_pylist(rows)),
            issue_date=TODAY,
        )
        with catalog.begin() as conn:
            publish_status_lists(conn, log)
        return landed

    ids = {
        "good": citizen_id(1),
        "township": citizen_id(5),  # household record with an unknown township code
        "name": citizen_id(6),  # household record without a name
        "nobody": citizen_id(7),  # bad too, but nobody asks about them
        "husband": citizen_id(101),
        "wife": citizen_id(201, birth="19920101"),
    }
    land(
        [
            household_row(1, township_code=MINE),
            household_row(5, township_code="120114999000"),
            household_row(6, name=None),
            household_row(7, township_code="120114999000"),
            household_row(8, registered_on="2099-01-01"),  # a warning: lands, stops nobody
        ]
    )
    land([marriage_row(1, cert_no="J12-bad")], MARRIAGE, "minzheng-marriages")
    try:
        yield World(settings, catalog, land, ids, log, TODAY)
    finally:
        catalog.dispose()


def _blocked(world: World) -> list[Any]:
    with world.catalog.read() as conn:
        return list(conn.execute(sa.select(blocked_materials).order_by(blocked_materials.c.id)).all())


def test_answers_needing_correction_are_recorded_with_the_citizen_committed(world: World) -> None:
    answer = world.ask(world.ids["township"], "pension-enrolment")
    assert {m.material: m.verdict for m in answer.materials}["居民户口簿"] == "数据待部门更正"
    # the same citizen again, and another matter through the service's read-only path
    world.ask(world.ids["township"], "pension-enrolment", read_only=True)
    world.ask(world.ids["name"], "minimum-living-allowance", read_only=True)
    # a what-if probe (no township) and a citizen with nothing wrong record nothing
    world.ask(world.ids["name"], "pension-enrolment", township=None)
    world.ask(world.ids["good"], "pension-enrolment")

    rows = _blocked(world)
    assert [(r.matter, r.material, r.dataset, r.holder) for r in rows] == [
        ("pension-enrolment", "居民户口簿", "household", "applicant"),
        ("pension-enrolment", "居民户口簿", "household", "applicant"),
        ("minimum-living-allowance", "居民户口簿", "household", "applicant"),
    ]
    assert rows[0].subject_commitment == rows[1].subject_commitment != rows[2].subject_commitment
    assert rows[1].station == "s1" and rows[0].station is None and rows[0].township == MINE
    stored = json.dumps([[str(v) for v in r] for r in rows])
    assert all(i not in stored for i in world.ids.values())  # nobody named: only commitments


def test_work_orders_per_department_with_the_citizens_each_record_stopped(world: World, home: Path) -> None:
    from sharing.bottlenecks import list_orders, trend, workorders_dir, write_work_order_files

    world.ask(world.ids["township"], "pension-enrolment")
    world.ask(world.ids["township"], "minimum-living-allowance")  # same citizen, second matter
    world.ask(world.ids["name"], "pension-enrolment", read_only=True)
    world.ask(world.ids["husband"], "minimum-living-allowance")  # his 结婚证's record is bad
    world.ask(world.ids["wife"], "minimum-living-allowance")

    first = world.run("run-a")
    assert {d: (c.open, c.new, c.closed, c.citizens) for d, c in first.departments.items()} == {
        GONGAN: (2, 2, 0, 2),
        MINZHENG: (1, 1, 0, 2),
    }
    with world.catalog.read() as conn:
        orders = {(o.department, o.key_shown): o for o in list_orders(conn, status="open")}
    township = orders[(GONGAN, f"{world.ids['township'][:6]}********{world.ids['township'][-4:]}")]
    assert township.citizens == 1 and township.stops == 2
    assert [r["rule"] for r in township.rules] == ["township_code.region_code"]
    assert {(m["matter"], m["material"], m["citizens"]) for m in township.materials} == {
        ("pension-enrolment", "居民户口簿", 1),
        ("minimum-living-allowance", "居民户口簿", 1),
    }
    marriage = next(o for (d, _), o in orders.items() if d == MINZHENG)
    assert marriage.citizens == 2 and marriage.dataset == "marriage"
    assert marriage.key_shown and [r["rule"] for r in marriage.rules] == ["cert_no.pattern"]
    # the record nobody was stopped by gets no work order (at min_citizens 1) ...
    assert len(orders) == 3

    with world.catalog.read() as conn:
        written = write_work_order_files(conn, workorders_dir(home), first, day=dt.date(2026, 11, 21))
    assert {w.department: w.rows for w in written} == {GONGAN: 2, MINZHENG: 1}
    for w in written:
        assert w.csv.parent == workorders_dir(home) / w.department / "2026-11-21"
        for path in (w.csv, w.xlsx):
            assert path.stat().st_mode & 0o777 == 0o600
        for folder in (w.csv.parent, w.csv.parent.parent, workorders_dir(home)):
            assert folder.stat().st_mode & 0o777 == 0o700
        text = w.csv.read_text(encoding="utf-8-sig")
        with zipfile.ZipFile(w.xlsx) as book:
            text += "".join(book.read(n).decode("utf-8") for n in book.namelist() if n.endswith(".xml"))
        assert "工单号" in text and "受阻群众（人）" in text
        assert all(i not in text for i in world.ids.values())  # no clear citizen ID anywhere
    gongan_csv = next(w.csv for w in written if w.department == GONGAN).read_text(encoding="utf-8-sig")
    assert "township_code.region_code" in gongan_csv and "name.required" in gongan_csv
    assert "待更正" in gongan_csv

    # The department corrects record 5 at the source: the next pull passes, resolving its entries.
    from landing_harness import household_row

    corrected = world.land([household_row(5, township_code=MINE, updated_at="2026-11-21 09:00:00")])
    second = world.run("run-b")
    assert {d: (c.open, c.new, c.closed, c.citizens) for d, c in second.departments.items()} == {
        GONGAN: (1, 0, 1, 1),
        MINZHENG: (1, 0, 0, 2),
    }
    assert second.closed == (township.order_id,)
    with world.catalog.read() as conn:
        done = {o.order_id: o for o in list_orders(conn, status="closed")}
        runs = trend(conn)
    closed = done[township.order_id]
    assert closed.status_name == "已更正" and closed.closed_run == "run-b"
    assert closed.closed_by_batch == corrected.batch_id
    assert closed.closed_by_cert and closed.closed_by_cert.startswith("1.2.156.")
    answer = world.ask(world.ids["township"], "pension-enrolment")
    assert {m.material: m.skippable for m in answer.materials}["居民户口簿"]  # the citizen may skip now
    assert [r.run_id for r in runs] == ["run-a", "run-b"]
    assert [r.departments[GONGAN].open for r in runs] == [2, 1]
    assert [r.departments[GONGAN].closed for r in runs] == [0, 1]

    # A third run changes nothing and never opens a second work order for the same record.
    third = world.run("run-c")
    assert third.opened == () and third.closed == ()
    with world.catalog.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(work_orders)).scalar_one() == 3


def test_min_citizens_zero_opens_one_for_every_failing_record(world: World) -> None:
    result = world.run("run-0", min_citizens=0)
    # records 5, 6, 7 (公安) and the marriage (民政): the warning on record 8 is no work order
    assert {d: (c.open, c.citizens) for d, c in result.departments.items()} == {
        GONGAN: (3, 0),
        MINZHENG: (1, 0),
    }


def test_the_cli_lists_and_shows_work_orders_masked(world: World) -> None:
    from cli.bottlenecks import app

    world.ask(world.ids["township"], "pension-enrolment")
    world.run("run-a")
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    (item,) = json.loads(listed.output)
    assert item["department"] == GONGAN and item["citizens"] == 1 and item["status"] == "open"
    assert world.ids["township"] not in listed.output
    assert runner.invoke(app, ["list", "--department", "民政"]).output.startswith("no ")
    assert "no " in runner.invoke(app, ["list", "--closed"]).output
    shown = runner.invoke(app, ["show", str(item["id"])])
    assert shown.exit_code == 0, shown.output
    assert "township_code.region_code" in shown.output and "待更正" in shown.output
    assert world.ids["township"] not in shown.output
    missing = runner.invoke(app, ["show", "999"])
    assert missing.exit_code != 0


def test_the_demo_counter_asks_about_quarantined_citizens(world: World) -> None:
    from cli.bottlenecks import counter_visits_for_demo

    assert counter_visits_for_demo(world.settings, citizens=10) == 4  # 3 household records, 1 marriage
    result = world.run("run-demo")
    assert {d: (c.open, c.citizens) for d, c in result.departments.items()} == {
        GONGAN: (3, 3),
        MINZHENG: (1, 1),
    }


def test_an_answer_of_the_counters_service_records_who_was_stopped(people: dict[str, str]) -> None:
    """Through the HTTP service (answers inside a read transaction): the stop is recorded in a
    transaction of its own, the answer unchanged."""
    from counter_home import station
    from fastapi.testclient import TestClient

    from catalog import quarantine
    from sharing.service import create_app

    catalog = Catalog.connect(Settings().catalog_url, create=False)
    with catalog.begin() as conn:  # her marriage record failed its contract at the 民政局
        conn.execute(
            sa.insert(quarantine).values(
                batch_id="q" * 32,
                dataset="marriage",
                contract_id="marriage",
                contract_version="1.0.0",
                record_key="J120114-2025-000001",
                subject_id=f"{people['other']} {people['mine']}",
                rule="cert_no.pattern",
                column="cert_no",
                severity="error",
                value_masked="J12-bad",
                detected_at=dt.datetime.now(dt.UTC),
            )
        )
    token = station()
    with TestClient(create_app(Settings())) as client:
        response = client.post(
            "/api/skip-check",
            json={
                "subject_id": people["mine"],
                "matter": "minimum-living-allowance",
                "purpose": "最低生活保障申请",
                "case_number": "WQ-2026-0002",
            },
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    verdicts = {m["material"]: m["verdict"] for m in response.json()["materials"]}
    assert verdicts["婚姻状况证明（结婚证）"] == "数据待部门更正" and verdicts["居民户口簿"] == "可免交"
    with catalog.read() as conn:
        (row,) = conn.execute(sa.select(blocked_materials)).all()
    catalog.dispose()
    assert (row.matter, row.material, row.dataset, row.township) == (
        "minimum-living-allowance",
        "婚姻状况证明（结婚证）",
        "marriage",
        "120114001000",
    )
    assert row.station and people["mine"] not in row.subject_commitment
