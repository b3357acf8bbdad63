"""Approvals pushed to a real local supervisor (departments.supervisor) that misbehaves: down then
up, slow, 5xx, duplicate receipts, a forged signature — and overdue approvals announced once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from catalog import Catalog
from contracts.identifiers import citizen_id_check_char, uscc_check_char
from departments.approvals import APPROVAL_COLUMNS, approval_rows
from departments.supervisor import SupervisorEndpoint, SupervisorFaults
from evidence.keys import SigningKey
from evidence.log import KIND_SUPERVISION, TransparencyLog, leaves
from evidence.note import open_note
from lake.parquet import ParquetLake
from sharing.supervision import (
    MAX_RESULT,
    SupervisorClient,
    SupervisorRefused,
    find_overdue,
    mark_alerted,
    open_push,
    pull_receipts,
    push_document,
    push_pending,
    sign_push,
    supervision_status,
)

pytestmark = pytest.mark.integration

ORIGIN = "test.example/wuqing/evidence"
TOKEN = "supervision-test-token-0123456789"
APPROVALS = 12


def _businesses(n: int) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for i in range(n):
        body = f"92120114MA{i:07d}"
        uscc = body + uscc_check_char(body)
        person = f"12011419800101{i:03d}"
        rep_id = person + citizen_id_check_char(person) if i % 3 else None
        scope = "小餐饮；食品销售（仅销售预包装食品）" if i % 2 else "食品销售（仅销售预包装食品）"
        rows.append(
            (uscc, f"武清区测试{i}号便利店", f"张{i}", rep_id, f"天津市武清区杨村街道测试路{i}号",
             ("120114001000", "120114002000")[i % 2], scope, "2020-01-01", "存续")
        )  # fmt: skip
    return rows


@dataclass
class World:
    catalog: Catalog
    lake: ParquetLake
    log: TransparencyLog
    supervisor: SupervisorEndpoint

    def client(self, **options: object) -> SupervisorClient:
        options.setdefault("attempts", 3)
        options.setdefault("backoff_seconds", 0.01)
        return SupervisorClient(self.supervisor.base_url, TOKEN, **options)  # type: ignore[arg-type]

    def push(self, **options: object) -> object:
        with self.client(**options) as client:
            return push_pending(
                self.catalog, self.lake, self.log, client, dataset="approval", district="120114"
            )

    def pull(self) -> object:
        with self.client() as client:
            return pull_receipts(self.catalog, self.log, client)

    def pushes(self) -> list[sa.Row[object]]:
        with self.catalog.read() as conn:
            return list(conn.execute(sa.text("SELECT * FROM supervision_pushes ORDER BY approval_id")))

    def logged(self, event: str) -> list[dict[str, object]]:
        with self.catalog.read() as conn:
            entries = [
                json.loads(leaf.entry or b"{}") for leaf in leaves(conn) if leaf.kind == KIND_SUPERVISION
            ]
        return [e for e in entries if e["event"] == event]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    batch = approval_rows(np.random.default_rng(3), _businesses(APPROVALS))
    table = pa.table({name: [r[i] for r in batch.rows] for i, name in enumerate(APPROVAL_COLUMNS)})
    lake = ParquetLake(tmp_path / "lake")
    lake.write_accepted("approval", "batch-1", table, "township_code")
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
    key = SigningKey.generate(ORIGIN)
    log = TransparencyLog(key, ORIGIN)
    verifier = key.verifier
    supervisor = SupervisorEndpoint(TOKEN, lambda note: open_note(note, [verifier])).start()
    try:
        yield World(catalog, lake, log, supervisor)
    finally:
        supervisor.close()
        catalog.dispose()


def test_every_landed_approval_is_pushed_once_signed_and_logged(world: World) -> None:
    report = world.push()
    assert report.ok and len(report.pushed) == APPROVALS and report.pending == 0  # type: ignore[attr-defined]
    cases = world.supervisor.cases()
    assert len(cases) == APPROVALS and all(c["deliveries"] == 1 for c in cases)
    assert all(r.pushed_at is not None and r.case_id and r.leaf_index is not None for r in world.pushes())
    body = cases[0]["body"]
    assert body["schema"] == "onceonly-supervision-push/1" and body["approval_id"].startswith("WQSP")
    rep = body["legal_representative"]["id"]
    assert rep is None or "********" in rep  # never in clear to the supervisor
    logged = world.logged("pushed")
    assert len(logged) == APPROVALS
    text = json.dumps(logged, ensure_ascii=False)
    assert "198001010" not in text  # representatives committed, never named
    assert sum("subject_commitment" in e for e in logged) == sum(1 for i in range(APPROVALS) if i % 3)
    again = world.push()
    assert again.pushed == [] and len(world.supervisor.cases()) == APPROVALS  # type: ignore[attr-defined]


def test_a_retry_after_a_lost_answer_gets_the_same_case_never_a_second(world: World) -> None:
    world.push()
    before = {c["approval_id"]: c["case_id"] for c in world.supervisor.cases()}
    with world.catalog.begin() as conn:  # the run died after the pushes, before recording them
        conn.execute(sa.text("DELETE FROM supervision_pushes WHERE approval_id IN (SELECT approval_id "
                             "FROM supervision_pushes ORDER BY approval_id LIMIT 5)"))  # fmt: skip
    report = world.push()
    assert len(report.pushed) == 5 and report.duplicates == 5  # type: ignore[attr-defined]
    assert {c["approval_id"]: c["case_id"] for c in world.supervisor.cases()} == before
    assert sorted(c["deliveries"] for c in world.supervisor.cases()) == [1] * 7 + [2] * 5
    assert {r.approval_id: r.case_id for r in world.pushes()} == before


def test_supervisor_down_then_up_everything_is_pushed_on_the_next_run(world: World) -> None:
    world.supervisor.stop()
    report = world.push()
    assert report.unavailable and "unreachable" in report.unavailable  # type: ignore[attr-defined]
    assert "gave up after 3 attempts" in report.unavailable  # type: ignore[attr-defined]
    assert report.pushed == [] and report.pending == APPROVALS  # type: ignore[attr-defined]
    (tried,) = world.pushes()  # it stopped at the first: the supervisor is down, not the approval
    assert tried.pushed_at is None and tried.attempts == 3 and "unreachable" in tried.last_error
    world.supervisor.start()  # the same port
    report = world.push()
    assert report.ok and len(report.pushed) == APPROVALS and report.pending == 0  # type: ignore[attr-defined]
    assert len(world.supervisor.cases()) == APPROVALS
    rows = world.pushes()
    assert all(r.pushed_at is not None and r.last_error is None for r in rows)
    assert [r.attempts for r in rows if r.approval_id == tried.approval_id] == [4]


def test_a_slow_answer_times_out_is_retried_and_opens_one_case(world: World) -> None:
    world.supervisor.faults = SupervisorFaults(delay_seconds=1.5, slow_times=1)
    report = world.push(timeout=0.5)
    assert report.ok and len(report.pushed) == APPROVALS  # type: ignore[attr-defined]
    assert report.duplicates == 1  # type: ignore[attr-defined] # the timed-out try had opened the case
    cases = world.supervisor.cases()
    assert len(cases) == APPROVALS and sorted(c["deliveries"] for c in cases)[-1] == 2


def test_5xx_answers_are_retried(world: World) -> None:
    world.supervisor.faults = SupervisorFaults(status=503, fail_times=2)
    report = world.push()
    assert report.ok and len(report.pushed) == APPROVALS  # type: ignore[attr-defined]
    world.supervisor.faults = SupervisorFaults(status=502)  # always: the run gives up, keeps them
    with world.catalog.begin() as conn:
        conn.execute(sa.text("DELETE FROM supervision_pushes"))
    report = world.push()
    assert "answered HTTP 502" in report.unavailable and report.pending == APPROVALS  # type: ignore[attr-defined]
    assert len(world.supervisor.cases()) == APPROVALS


def test_a_forged_or_altered_push_is_refused_by_the_supervisor(world: World, tmp_path: Path) -> None:
    forger = TransparencyLog(SigningKey.generate(ORIGIN), ORIGIN)  # the same name, another key
    report = push_pending(
        world.catalog, world.lake, forger, world.client(), dataset="approval", district="120114"
    )
    assert not report.ok and report.pushed == [] and len(report.refused) == APPROVALS
    assert all("HTTP 422" in why and "签名无效" in why for why in report.refused.values())
    assert world.supervisor.cases() == [] and world.supervisor.refused_signatures == APPROVALS
    assert all(r.pushed_at is None and "HTTP 422" in r.last_error for r in world.pushes())

    approval = world.lake.read_accepted("approval").to_pylist()[0]
    note = sign_push(world.log, push_document(approval, "120114"))
    assert open_push(note, [world.log.key.verifier])["approval_id"] == approval["approval_id"]
    altered = note.replace(str(approval["licence_no"]), "JY19999999999999", 1)
    with world.client() as client, pytest.raises(SupervisorRefused) as refused:
        client.push(str(approval["approval_id"]), altered)
    assert refused.value.status == 422
    with world.client() as client:  # the genuine one goes through, once refused or not
        assert not client.push(str(approval["approval_id"]), note).duplicate
    wrong = SupervisorClient(world.supervisor.base_url, "wrong-token", attempts=1)
    with wrong as client, pytest.raises(SupervisorRefused) as refused:
        client.push(str(approval["approval_id"]), note)
    assert refused.value.status == 401


def test_receipts_and_feedback_are_kept_once_however_often_they_come(world: World) -> None:
    world.push()
    ids = sorted(c["approval_id"] for c in world.supervisor.cases())
    for approval_id in ids[:6]:
        world.supervisor.read(approval_id)
    for approval_id in ids[:3]:
        world.supervisor.feedback(approval_id, "现场检查符合要求")
    world.supervisor.faults = SupervisorFaults(duplicate_receipts=True)
    first = world.pull()
    assert first.received == 18 and first.new == 9 and first.repeated == 9  # type: ignore[attr-defined]
    assert first.reads == 6 and first.feedback == 3  # type: ignore[attr-defined]
    again = world.pull()  # everything sent again: nothing new
    assert again.new == 0 and again.repeated == 18 and again.reads == 0  # type: ignore[attr-defined]
    with world.catalog.read() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM supervision_receipts")).scalar_one() == 9
    assert len(world.logged("read")) == 6 and len(world.logged("feedback")) == 3
    rows = {r.approval_id: r for r in world.pushes()}
    assert all(rows[a].read_at is not None for a in ids[:6]) and rows[ids[6]].read_at is None
    assert {rows[a].feedback_result for a in ids[:3]} == {"现场检查符合要求"}


def test_overdue_approvals_are_announced_once(world: World) -> None:
    world.push()
    ids = sorted(c["approval_id"] for c in world.supervisor.cases())
    world.supervisor.read(ids[0])
    world.supervisor.feedback(ids[1], "已纳入日常监督检查计划")
    world.pull()
    hours, days = dt.timedelta(hours=24), dt.timedelta(days=15)
    assert find_overdue(world.catalog, unread_after=hours, feedback_after=days) == []  # just pushed
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)
    unread = find_overdue(world.catalog, unread_after=hours, feedback_after=days, now=later)
    assert {o.approval_id for o in unread} == set(ids[2:]) and {o.kind for o in unread} == {"unread"}
    assert "未签收" in unread[0].describe()
    mark_alerted(world.catalog, unread, later)
    assert find_overdue(world.catalog, unread_after=hours, feedback_after=days, now=later) == []
    much_later = later + dt.timedelta(days=15)
    late = find_overdue(world.catalog, unread_after=hours, feedback_after=days, now=much_later)
    assert {o.approval_id for o in late} == set(ids) - {ids[1]} and {o.kind for o in late} == {"no-feedback"}
    mark_alerted(world.catalog, late, much_later)
    assert find_overdue(world.catalog, unread_after=hours, feedback_after=days, now=much_later) == []


def _correct(world: World, approval_id: str, batch: str, **changes: object) -> None:
    """The approving department corrects an approval: a newer row of it lands."""
    (row,) = [r for r in world.lake.read_accepted("approval").to_pylist() if r["approval_id"] == approval_id]
    fixed = {**row, **changes, "updated_at": "2099-01-01 00:00:00"}
    world.lake.write_accepted("approval", batch, pa.Table.from_pylist([fixed]), "township_code")


def test_a_corrected_approval_is_sent_as_an_amendment_to_its_case(world: World) -> None:
    world.push()
    cases = {c["approval_id"]: c for c in world.supervisor.cases()}
    first = sorted(cases)[0]
    address = str(cases[first]["body"]["business_address"]) + "（更正）"
    _correct(world, first, "batch-2", business_address=address)
    report = world.push()
    assert report.pushed == [first] and report.amended == 1 and report.pending == 0  # type: ignore[attr-defined]
    after = {c["approval_id"]: c for c in world.supervisor.cases()}
    assert len(after) == APPROVALS and after[first]["case_id"] == cases[first]["case_id"]
    assert after[first]["body"]["business_address"] == address and after[first]["amendments"] == 1
    (amended,) = world.logged("amended")
    assert amended["case_id"] == cases[first]["case_id"] and amended["amends_body_sha256"]
    assert world.push().pushed == []  # type: ignore[attr-defined] # delivered: nothing pending


def test_a_push_that_timed_out_then_was_corrected_reaches_its_case(world: World) -> None:
    world.supervisor.faults = SupervisorFaults(delay_seconds=1.5, slow_times=1)
    report = world.push(timeout=0.5, attempts=1)  # the case is opened, the answer lost
    assert report.unavailable and report.pushed == []  # type: ignore[attr-defined]
    (case,) = world.supervisor.cases()
    _correct(world, case["approval_id"], "batch-2", business_items="热食类食品制售（更正）")
    report = world.push()  # POST answers 409 naming the case: sent as an amendment to it
    assert report.ok and len(report.pushed) == APPROVALS and report.refused == {}  # type: ignore[attr-defined]
    after = {c["approval_id"]: c for c in world.supervisor.cases()}
    assert len(after) == APPROVALS and after[case["approval_id"]]["case_id"] == case["case_id"]
    assert after[case["approval_id"]]["body"]["business_items"] == "热食类食品制售（更正）"
    rows = {r.approval_id: r for r in world.pushes()}
    assert rows[case["approval_id"]].case_id == case["case_id"] and rows[case["approval_id"]].pushed_at
    assert world.push().pushed == []  # type: ignore[attr-defined]


def test_a_receipt_sent_before_its_push_was_recorded_is_applied_when_it_is(world: World) -> None:
    world.push()
    ids = sorted(c["approval_id"] for c in world.supervisor.cases())
    with world.catalog.begin() as conn:  # the run died between the push and its record
        conn.execute(sa.text("DELETE FROM supervision_pushes WHERE approval_id = :a"), {"a": ids[0]})
    world.supervisor.read(ids[0])
    world.supervisor.read(ids[1])
    pulled = world.pull()
    assert pulled.new == 2 and pulled.reads == 1 and pulled.unknown == 1  # type: ignore[attr-defined]
    report = world.push()  # the push recorded again (the same case): the held receipt applied
    assert report.pushed == [ids[0]] and report.receipts_applied == 1  # type: ignore[attr-defined]
    rows = {r.approval_id: r for r in world.pushes()}
    assert rows[ids[0]].read_at is not None and rows[ids[1]].read_at is not None
    assert sorted(str(e["approval_id"]) for e in world.logged("read")) == ids[:2]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)
    unread = find_overdue(world.catalog, unread_after=dt.timedelta(hours=24),
                          feedback_after=dt.timedelta(days=15), now=later)  # fmt: skip
    assert ids[0] not in {o.approval_id for o in unread}  # no false "unread" event
    assert world.pull().new == 0  # type: ignore[attr-defined]


def test_the_supervisors_free_text_is_never_published_and_kept_scrubbed_and_cut(world: World) -> None:
    world.push()
    ids = sorted(c["approval_id"] for c in world.supervisor.cases())
    result = "现场检查记录：负责人 120114198001010011 在场。" + "符合要求。" * 15000  # ~75 KB
    world.supervisor.feedback(ids[0], result)
    pulled = world.pull()
    assert pulled.feedback == 1  # type: ignore[attr-defined]
    (logged,) = world.logged("feedback")
    assert "result" not in logged
    assert logged["result_sha256"] == hashlib.sha256(result.encode()).hexdigest()
    (row,) = [r for r in world.pushes() if r.approval_id == ids[0]]
    assert len(row.feedback_result) <= MAX_RESULT and "120114198001010011" not in row.feedback_result
    assert "120114********0011" in row.feedback_result
    hour, day = dt.timedelta(hours=1), dt.timedelta(days=1)
    status = supervision_status(
        world.catalog, world.lake, dataset="approval", unread_after=hour, feedback_after=day
    )
    shown = [r["监管结果"] for r in status.table() if r["许可决定编号"] == ids[0]]
    assert shown and "120114198001010011" not in shown[0] and len(shown[0]) <= MAX_RESULT
    world.supervisor.read(ids[1])  # the log still takes entries: the next pull works
    assert world.pull().reads == 1  # type: ignore[attr-defined]


def test_receipts_that_are_not_valid_are_refused_with_a_warning_and_skipped(world: World) -> None:
    world.push()
    ids = sorted(c["approval_id"] for c in world.supervisor.cases())
    world.supervisor.read(ids[0])
    bad = [(2, "R-bad-kind", ids[1], "JG00000002", "deleted"), (3, "R" * 65, ids[2], "JG00000003", "read"),
           (4, "R-long-case", ids[3], "J" * 65, "read")]  # fmt: skip
    with world.supervisor._db:  # a supervisor sending what it should not
        world.supervisor._db.executemany(
            "INSERT INTO receipts (seq, receipt_id, approval_id, case_id, kind, at, result) "
            "VALUES (?, ?, ?, ?, ?, '2026-11-20T08:00:00', NULL)",
            bad,
        )
    world.supervisor.read(ids[4])
    pulled = world.pull()
    assert pulled.new == 2 and pulled.reads == 2 and len(pulled.refused) == 3  # type: ignore[attr-defined]
    assert "'deleted' is none of read, feedback" in pulled.refused[0]  # type: ignore[attr-defined]
    assert all("已拒收跳过" in why for why in pulled.refused)  # type: ignore[attr-defined]
    with world.catalog.read() as conn:
        kept = {r[0] for r in conn.execute(sa.text("SELECT approval_id FROM supervision_receipts"))}
    assert kept == {ids[0], ids[4]}
