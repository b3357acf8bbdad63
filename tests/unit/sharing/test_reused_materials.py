"""历史材料免交: a material handed in before (the 电子材料库, landed through its contract into a
real signed log) stands in for a material while valid — its kind and holder as the log commits
to them; and the catalogue's ``reused`` entries are validated like the rest."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from catalog import Catalog, certificates, log_leaves
from cli.main import app
from contracts.compiler import compile_contract
from contracts.model import certificate_datasets, contract_by_id
from departments.materials import KINDS
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings
from sharing.matters import Catalogue, ReusedMaterials, load_matters
from sharing.skipcheck import EXPIRED, MAY_SKIP, MUST_BRING, NOT_FOUND, skip_check

LAKE_TESTS = Path(__file__).parents[1] / "lake"
KNOWN = certificate_datasets(Settings().contracts_dir)
LIBRARY_TYPE = "11120114MB1Q52740K001"
HOUSEHOLD_TYPE = "11100000000019342N001"
TODAY = dt.date(2026, 11, 21)
MINE = "120114001000"


# --- the catalogue -------------------------------------------------------------------------------


def test_the_shipped_catalogue_names_the_library_and_the_kinds_its_matters_reuse() -> None:
    catalogue = load_matters(Settings().matters_file, known_types=KNOWN)
    library = catalogue.reused_materials
    assert library is not None and KNOWN[library.certificate_type] == "submitted_material"
    assert library.kinds == KINDS  # the generator's kinds are the catalogue's
    reused = {
        (matter.code, material.name): material.reused
        for matter in catalogue.matters
        for material in matter.materials
        if material.reused
    }
    assert reused == {
        ("disability-allowances", "中华人民共和国残疾人证"): ("disability-card",),
        ("senior-preferential-card", "近期免冠照片"): ("photo",),
        ("employment-registration", "劳动合同"): ("labour-contract",),
        ("school-enrolment", "居住证明（不动产权证书）"): ("lease",),
        ("sole-trader-registration", "经营场所使用证明（自有房屋不动产权证书）"): ("lease",),
    }
    assert catalogue.asked("employment-registration").reused == library


LIBRARY = """reused_materials:
  certificate_type: 11120114MB1Q52740K001
  kinds:
    photo: 近期免冠照片
    lease: 房屋租赁合同
"""
MATTERS = """matters:
  - code: a
    name: 甲事项
    department: 某部门
    subject: person
    materials:
      - name: 近期免冠照片
        reused: [photo]
        note: 现场采集
  - code: b
    name: 乙事项
    department: 某部门
    subject: person
    materials:
      - name: 居住证明
        certificate_types: [11100000MB0H30096N001]
        reused: [lease]
      - name: 近期免冠照片
bundles:
  - code: both
    name: 两件
    matters: [a, b]
"""


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            LIBRARY + MATTERS.replace("reused: [lease]", "reused: [leese]"),
            22,
            "matter 'b', material 居住证明: unknown reused material kind 'leese' (known: photo, lease)",
        ),
        (
            MATTERS,
            8,
            "unknown reused material kind 'photo' (known: none: the catalogue has no reused_materials)",
        ),
        (
            LIBRARY.replace("K001", "K999") + MATTERS,
            2,
            "reused_materials: unknown certificate type '11120114MB1Q52740K999'",
        ),
        (LIBRARY.replace("    photo:", "    Photo Card:") + MATTERS, 4, "kind code 'Photo Card' is not"),
        (
            LIBRARY.replace("  kinds:\n    photo: 近期免冠照片\n    lease: 房屋租赁合同\n", "") + MATTERS,
            1,
            "kinds",
        ),
    ],
)
def test_a_broken_reused_entry_names_the_file_and_the_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "matters.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_matters(path, known_types=KNOWN)
    assert f"matters.yaml:{line}:" in str(caught.value) and message in str(caught.value), str(caught.value)


def test_matters_check_refuses_an_unknown_kind(tmp_path: Path) -> None:
    path = tmp_path / "matters.yaml"
    path.write_text(LIBRARY + MATTERS.replace("[photo]", "[foto]"), "utf-8")
    result = CliRunner().invoke(app, ["matters", "check", str(path)])
    assert isinstance(result.exception, ConfigurationError)
    assert "matters.yaml:13:" in str(result.exception) and "'foto'" in str(result.exception)
    path.write_text(LIBRARY + MATTERS, "utf-8")
    assert CliRunner().invoke(app, ["matters", "check", str(path)]).exit_code == 0


def test_a_bundle_asks_once_for_a_material_with_every_kind_its_matters_reuse(tmp_path: Path) -> None:
    path = tmp_path / "matters.yaml"
    path.write_text(LIBRARY + MATTERS, "utf-8")
    catalogue = load_matters(path, known_types=KNOWN)
    asked = catalogue.asked("both")
    photo = [m for m in asked.materials if m.name == "近期免冠照片"]
    assert [m.reused for m in photo] == [("photo",)]  # once, with matter a's kind
    assert asked.needed_by[asked.materials.index(photo[0])] == ("a", "b")
    assert asked.reused == ReusedMaterials(
        certificate_type=LIBRARY_TYPE, kinds={"photo": "近期免冠照片", "lease": "房屋租赁合同"}
    )


# --- skip-check against the log -----------------------------------------------------------------


class Library:
    """A catalog, a lake and a signed log; the library's rows land through the real contract."""

    def __init__(self, tmp_path: Path) -> None:
        from landing_harness import ORIGIN, Harness

        from evidence.keys import SigningKey

        self.catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
        self.harness = Harness(self.catalog, tmp_path / "lake", SigningKey.generate(ORIGIN))
        self.compiled = compile_contract(contract_by_id(Settings().contracts_dir, "submitted_material"))
        self.pages: dict[str, int] = {}
        catalogue = load_matters(Settings().matters_file, known_types=KNOWN)
        self.catalogue: Catalogue = catalogue

    @property
    def verifiers(self) -> list[Any]:
        return [self.harness.key.verifier]

    def land(self, rows: list[dict[str, Any]], *, compiled: Any = None, connector: str = "") -> None:
        from evidence.status_list import publish_status_lists

        connector = connector or "zhengwu-materials"
        page = self.pages.get(connector, 0)
        self.pages[connector] = page + 1
        self.harness.land(
            rows,
            before={"page": page} if page else None,
            after={"page": page + 1},
            compiled=compiled or self.compiled,
            connector=connector,
        )
        with self.catalog.begin() as conn:
            publish_status_lists(conn, self.harness.log)

    def cert_of(self, material_id: str) -> str:
        with self.catalog.read() as conn:
            return str(
                conn.execute(
                    sa.select(certificates.c.cert_id).where(
                        certificates.c.record_key == material_id,
                        certificates.c.type_code == LIBRARY_TYPE,
                    )
                ).scalar_one()
            )

    def answer(self, subject: str, matter: str, material: str, **kw: Any) -> Any:
        kw.setdefault("verifiers", self.verifiers)
        with self.catalog.read() as conn:
            got = skip_check(
                conn, self.catalogue.asked(matter), subject, KNOWN, today=kw.pop("today", TODAY), **kw
            )
        return next(m for m in got.materials if m.material == material)


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Library]:
    monkeypatch.syspath_prepend(str(LAKE_TESTS))
    lib = Library(tmp_path)
    try:
        yield lib
    finally:
        lib.catalog.dispose()


def _person(seq: int) -> str:
    from landing_harness import citizen_id

    return str(citizen_id(seq))


def material(seq: int, holder: str, kind: str = "labour-contract", **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": seq,
        "material_id": f"WQCL2025{seq:08d}",
        "holder_id": holder,
        "holder_name": f"王{seq}",
        "material_code": kind,
        "material_name": KINDS[kind],
        "matter_code": "employment-registration",
        "matter_name": "就业登记",
        "case_number": f"WQSL20250301{seq:06d}",
        "submitted_on": "2025-03-01",
        "valid_to": "2028-02-29",
        "content_sha256": f"{seq:064x}",
        "township_code": MINE,
        "updated_at": f"2025-03-01 09:{seq % 60:02d}:00",
    }
    row.update(over)
    return row


def test_a_labour_contract_in_force_is_skippable_with_its_identifier_and_the_use_is_logged(
    library: Library,
) -> None:
    from evidence.log import TransparencyLog

    worker = _person(1)
    library.land([material(1, worker)])
    cert_id = library.cert_of("WQCL202500000001")
    got = library.answer(worker, "employment-registration", "劳动合同")
    assert (got.skippable, got.verdict, got.certificate_id) == (True, MAY_SKIP, cert_id)
    assert got.reason == "可复用历史材料：2025-03-01 办理《就业登记》时提交，有效至 2028-02-29"
    assert cert_id.startswith(f"1.2.156.3005.2.{LIBRARY_TYPE}.11120114MB1Q52740K.")

    log: TransparencyLog = library.harness.log
    with library.catalog.begin() as conn:
        answer = skip_check(
            conn,
            library.catalogue.asked("employment-registration"),
            worker,
            KNOWN,
            today=TODAY,
            log=log,
            township=MINE,
            verifiers=library.verifiers,
            purpose="就业登记",
            case_number="WQ-2026-0001",
        )
    assert answer.skippable == ["劳动合同"] and len(answer.use_leaves) == 1
    with library.catalog.read() as conn:
        (use,) = conn.execute(
            sa.select(log_leaves.c.ref, log_leaves.c.entry).where(log_leaves.c.kind == "use")
        ).all()
    entry = bytes(use.entry).decode()
    assert use.ref == cert_id and '"material":"劳动合同"' in entry and worker not in entry
    assert '"matter":"employment-registration"' in entry


def test_an_expired_material_says_when_it_expired_and_the_newest_in_force_wins(library: Library) -> None:
    elder = _person(2)
    library.land(
        [
            material(2, elder, "photo", submitted_on="2025-01-10", valid_to="2025-07-09",
                     matter_code="senior-preferential-card", matter_name="老年人优待证办理"),
        ]
    )  # fmt: skip
    got = library.answer(elder, "senior-preferential-card", "近期免冠照片")
    assert (got.skippable, got.verdict) == (False, EXPIRED)
    assert got.certificate_id == library.cert_of("WQCL202500000002")
    assert got.reason == "历史材料已于 2025-07-09 到期（2025-01-10 办理《老年人优待证办理》时提交）；现场采集"
    # a later photo, handed in for another matter, is in force: it answers
    library.land(
        [
            material(3, elder, "photo", submitted_on="2026-10-08", valid_to="2027-04-07",
                     matter_code="residence-permit", matter_name="居住证申领",
                     updated_at="2026-10-08 10:00:00"),
        ]
    )  # fmt: skip
    got = library.answer(elder, "senior-preferential-card", "近期免冠照片")
    assert (got.skippable, got.certificate_id) == (True, library.cert_of("WQCL202500000003"))
    assert got.reason == "可复用历史材料：2026-10-08 办理《居住证申领》时提交，有效至 2027-04-07"
    # on a day after it too expired: the newest one's date
    later = library.answer(elder, "senior-preferential-card", "近期免冠照片", today=dt.date(2027, 5, 1))
    assert later.verdict == EXPIRED and "已于 2027-04-07 到期" in later.reason


def test_a_material_of_another_kind_or_another_person_does_not_count(library: Library) -> None:
    worker, stranger = _person(4), _person(5)
    library.land(
        [
            material(4, worker, "lease", matter_code="residence-permit", matter_name="居住证申领"),
            material(5, stranger),  # a labour contract, but someone else's
        ]
    )
    got = library.answer(worker, "employment-registration", "劳动合同")
    assert (got.skippable, got.verdict, got.certificate_id) == (False, MUST_BRING, None)
    assert got.reason == "电子材料库中没有申请人提交过的劳动合同；用人单位提供"
    # the lease stands in for the 居住证明 of school enrolment, not for a labour contract
    lease = library.answer(worker, "sole-trader-registration", "经营场所使用证明（自有房屋不动产权证书）")
    assert lease.skippable and lease.certificate_id == library.cert_of("WQCL202500000004")
    # nobody's material stands in without the log's keys (the kind is read from the log only)
    blind = library.answer(stranger, "employment-registration", "劳动合同", verifiers=None)
    assert not blind.skippable and blind.verdict == MUST_BRING


def test_a_certificate_of_the_material_answers_first_and_a_lease_only_when_there_is_none(
    library: Library,
) -> None:
    from landing_harness import HOUSEHOLD, household_row

    owner = _person(6)
    library.land([household_row(6)], compiled=HOUSEHOLD, connector="gongan-household")
    library.land(
        [material(6, owner, "lease", submitted_on="2024-03-01", valid_to="2025-02-28",
                  matter_code="residence-permit", matter_name="居住证申领")]
    )  # fmt: skip
    got = library.answer(owner, "school-enrolment", "居住证明（不动产权证书）")
    # no 不动产权证书 and only an expired lease: the lease's date, and what to bring
    assert (got.skippable, got.verdict) == (False, EXPIRED)
    assert got.reason.startswith("历史材料已于 2025-02-28 到期（2024-03-01 办理《居住证申领》时提交）")
    assert got.reason.endswith("；无自有住房的，提交租赁合同及居住证")
    household = library.answer(owner, "employment-registration", "居民户口簿")
    assert household.skippable and household.reason == "证照有效"  # untouched by the library


def test_a_catalog_row_edited_grants_nothing_the_log_does_not(library: Library) -> None:
    worker, other = _person(7), _person(8)
    library.land(
        [
            material(7, worker, valid_to="2025-12-31"),
            material(8, other, "photo", submitted_on="2026-10-01", valid_to="2027-03-31"),
        ]
    )
    mine, theirs = library.cert_of("WQCL202500000007"), library.cert_of("WQCL202500000008")
    with library.catalog.begin() as conn:  # validity extended, in the catalog only
        conn.execute(
            sa.update(certificates)
            .where(certificates.c.cert_id == mine)
            .values(valid_to=dt.date(2030, 12, 31))
        )
    got = library.answer(worker, "employment-registration", "劳动合同")
    assert (got.skippable, got.verdict) == (False, EXPIRED) and "已于 2025-12-31 到期" in got.reason
    # someone else's photo reassigned to the worker in the catalog: the log names its holder
    with library.catalog.begin() as conn:
        conn.execute(sa.update(certificates).where(certificates.c.cert_id == theirs).values(holder_id=worker))
    photo = library.answer(worker, "senior-preferential-card", "近期免冠照片")
    assert not photo.skippable and "持有人不符" in photo.reason


def test_as_of_a_past_checkpoint_the_library_answers_as_it_did_then(library: Library) -> None:
    from evidence.lifecycle import Lifecycle
    from evidence.log import tree_size
    from evidence.status_list import publish_status_lists

    worker = _person(9)
    library.land([material(9, worker)])
    cert_id = library.cert_of("WQCL202500000009")
    with library.catalog.read() as conn:
        before = tree_size(conn)
    with library.catalog.begin() as conn:
        Lifecycle(library.harness.log).change(conn, cert_id, "revoke", reason="合同已解除")
        publish_status_lists(conn, library.harness.log)
    now = library.answer(worker, "employment-registration", "劳动合同")
    assert (now.skippable, now.certificate_id) == (False, cert_id)
    assert now.verdict == "证照已吊销" and "撤销" in now.reason
    then = library.answer(worker, "employment-registration", "劳动合同", as_of=before)
    assert (then.skippable, then.certificate_id) == (True, cert_id)
    assert then.verdict == MAY_SKIP and then.reason.startswith("可复用历史材料：2025-03-01")


def test_the_bundle_of_a_reused_material_verifies_offline(library: Library) -> None:
    from evidence.bundle import export_bundle, verify_bundle
    from onceonly.errors import VerificationFailed

    holder = _person(10)
    library.land(
        [material(10, holder, "disability-card", submitted_on="2024-06-03", valid_to="2031-05-30",
                  matter_code="disability-allowances", matter_name="残疾人两项补贴申请")]
    )  # fmt: skip
    got = library.answer(holder, "disability-allowances", "中华人民共和国残疾人证")
    assert got.skippable and got.verdict == MAY_SKIP
    with library.catalog.read() as conn:
        bundle, status = export_bundle(conn, got.certificate_id, library.harness.key.vkey)
    shipped = json.loads(json.dumps(bundle))
    verified = verify_bundle(shipped, trusted_vkey=library.harness.key.vkey, today=TODAY)
    assert status == "有效" and verified.status == "有效"
    fields = shipped["certificate"]["fields"]
    assert fields["material_code"] == "disability-card" and fields["content_sha256"] == f"{10:064x}"
    assert shipped["certificate"]["valid_to"] == "2031-05-30"
    shipped["certificate"]["fields"]["material_code"] = "photo"  # one field changed: refused
    with pytest.raises(VerificationFailed):
        verify_bundle(shipped, trusted_vkey=library.harness.key.vkey, today=TODAY)


def test_a_quarantined_library_row_is_not_a_material(library: Library) -> None:
    holder = _person(11)
    spoilt = holder[:-1] + ("0" if holder[-1] != "0" else "1")
    library.land([material(11, spoilt), material(12, holder, "photo", submitted_on="2026-11-01",
                                                  valid_to="2027-04-30")])  # fmt: skip
    with library.catalog.read() as conn:
        issued = conn.execute(
            sa.select(sa.func.count())
            .select_from(certificates)
            .where(certificates.c.type_code == LIBRARY_TYPE)
        ).scalar_one()
    assert issued == 1  # the spoilt ID's row was kept back by the contract
    got = library.answer(holder, "employment-registration", "劳动合同")
    assert got.verdict in (MUST_BRING, NOT_FOUND) and not got.skippable


def test_each_answer_says_the_state_and_validity_the_log_gives_not_the_catalogs(library: Library) -> None:
    from landing_harness import HOUSEHOLD, household_row

    owner = _person(9)
    library.land([household_row(9)], compiled=HOUSEHOLD, connector="gongan-household")
    library.land(
        [material(9, owner, valid_to="2028-02-29"), material(10, owner, "photo", valid_to="2025-12-31")]
    )
    with library.catalog.read() as conn:
        (logged_from,) = conn.execute(
            sa.select(certificates.c.valid_from).where(
                certificates.c.holder_id == owner, certificates.c.type_code == HOUSEHOLD_TYPE
            )
        ).one()
    household = library.answer(owner, "employment-registration", "居民户口簿")
    assert household.skippable and (household.status, household.valid_to) == ("有效", None)  # 长期
    assert household.valid_from == (logged_from.isoformat() if logged_from else None)
    contract = library.answer(owner, "employment-registration", "劳动合同")
    assert (contract.skippable, contract.status, contract.valid_from, contract.valid_to) == (
        True,
        "有效",
        "2025-03-01",
        "2028-02-29",
    )
    photo = library.answer(owner, "senior-preferential-card", "近期免冠照片")  # in the status list 有效,
    assert (photo.verdict, photo.status, photo.valid_to) == (EXPIRED, "有效", "2025-12-31")  # but expired
    # a validity extended in the catalog only: the answer still gives the logged one
    with library.catalog.begin() as conn:
        conn.execute(
            sa.update(certificates)
            .where(certificates.c.cert_id == library.cert_of("WQCL202500000009"))
            .values(valid_to=dt.date(2035, 1, 1))
        )
    assert library.answer(owner, "employment-registration", "劳动合同").valid_to == "2028-02-29"
    # without the log's keys nothing is read from the log: no state, no dates
    blind = library.answer(owner, "employment-registration", "居民户口簿", verifiers=None)
    assert blind.skippable and (blind.status, blind.valid_from, blind.valid_to) == (None, None, None)
    with library.catalog.read() as conn:
        payload = skip_check(
            conn, library.catalogue.asked("employment-registration"), owner, KNOWN, today=TODAY,
            verifiers=library.verifiers,
        ).to_json()  # fmt: skip
    shown = {m["material"]: m for m in payload["materials"]}["劳动合同"]
    assert (shown["status"], shown["valid_from"], shown["valid_to"]) == ("有效", "2025-03-01", "2028-02-29")
