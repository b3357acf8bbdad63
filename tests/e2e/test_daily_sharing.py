"""The daily sharing flow end to end, on generated department systems, through Prefect.

One module-scoped scenario walks what a district does over a few days: the first full run,
a bundle exported and verified offline, a second run that adds nothing, the next day's
changes, a department whose API rejects us while the others go on, and its recovery.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cli.main import app
from departments import LicenceApi, Manifest, add_updates, demo_token, generate_all, local_registrations
from evidence.log import leaves

pytestmark = pytest.mark.e2e

ROWS = 400
SEED = 7
PASSPHRASE = "e2e-passphrase-0123456789-abcdefghij"


@dataclass
class World:
    home: Path
    manifest: Manifest
    api: LicenceApi
    monkeypatch: pytest.MonkeyPatch
    catalog_url: str

    def run(self) -> Any:
        from flows.daily_sharing import daily_sharing, summary_of

        state = daily_sharing(return_state=True)
        return state, summary_of(state)

    def catalog(self) -> sa.Engine:
        return sa.create_engine(self.catalog_url)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def scenario_catalog(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The whole scenario on the embedded SQLite catalog and on the real PostgreSQL (a schema of its own)."""
    if request.param == "sqlite":
        yield ""  # the default: home/catalog.db
        return
    url: str = request.getfixturevalue("module_postgresql_database")
    yield url


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness: None, scenario_catalog: str
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e")
    home = root / "var"
    manifest = generate_all(home / "departments", rows=ROWS, seed=SEED)
    token = demo_token(SEED)
    api = LicenceApi(home / "departments" / "scjg" / "licences.db", token=token)
    api.start()
    # The shipped registrations, pointed at this test's API port, files read without settling.
    regs = local_registrations(root / "registrations", api.base_url, backoff_seconds=0.01)
    mp = pytest.MonkeyPatch()
    mp.setenv("ONCEONLY_HOME", str(home))
    mp.setenv("ONCEONLY_KEY_PASSPHRASE", PASSPHRASE)
    mp.setenv("ONCEONLY_REGISTRATIONS_DIR", str(regs))
    mp.setenv("ONCEONLY_RETRY_WAIT_SECONDS", "0")
    mp.setenv("ONCEONLY_CONNECTOR_ATTEMPTS", "1")
    mp.setenv("ONCEONLY_SECRET_SCJG_LICENCES_TOKEN", token)
    mp.delenv("ONCEONLY_DATABASE_URL", raising=False)
    if scenario_catalog:
        mp.setenv("ONCEONLY_DATABASE_URL", scenario_catalog)
    try:
        yield World(home, manifest, api, mp, scenario_catalog or f"sqlite:///{home / 'catalog.db'}")
    finally:
        api.stop()
        mp.undo()
        shutil.rmtree(root, ignore_errors=True)


# The generator's manifest names the department systems; the pipeline names contract ids.
SOURCE_OF = {
    "household": "household",
    "business_licence": "licences",
    "marriage": "marriages",
    "birth": "births",
    "property_right": "properties",
    "social_insurance": "insurance",
    "approval": "approvals",  # permit decisions: pushed to supervision, no certificate
    "submitted_material": "materials",  # 电子材料库: a 历史申请材料 per material handed in
}


def _expected_quarantined(manifest: Manifest, dataset: str) -> int:
    bad = manifest.datasets[SOURCE_OF[dataset]].bad_rows
    return sum(2 if b.kind == "duplicate_key" else 1 for b in bad)


@pytest.fixture(scope="module")
def first(world: World) -> Any:
    state, summary = world.run()
    assert state.is_completed(), state.message
    return summary


def test_first_run_pulls_every_row_and_quarantines_exactly_the_bad_ones(world: World, first: Any) -> None:
    by_dataset = {c.dataset: c for c in first.connectors}
    assert set(by_dataset) == set(SOURCE_OF)
    for dataset, c in by_dataset.items():
        assert c.status == "ok"
        assert c.pulled == world.manifest.datasets[SOURCE_OF[dataset]].rows
        assert c.pulled == c.accepted + c.quarantined
        assert c.quarantined == _expected_quarantined(world.manifest, dataset), dataset
    assert by_dataset["household"].certificates == by_dataset["household"].accepted
    assert by_dataset["business_licence"].certificates == by_dataset["business_licence"].accepted
    assert by_dataset["marriage"].certificates == 2 * by_dataset["marriage"].accepted  # one per spouse
    assert by_dataset["birth"].certificates == 3 * by_dataset["birth"].accepted  # child, mother, father
    for dataset in ("property_right", "social_insurance", "submitted_material"):  # one per holder
        assert by_dataset[dataset].certificates == by_dataset[dataset].accepted
    assert by_dataset["approval"].certificates == 0 < by_dataset["approval"].accepted
    with world.catalog().connect() as conn:
        kinds = Counter(leaf.kind for leaf in leaves(conn))
    assert kinds["certificate"] == sum(c.certificates for c in first.connectors)
    assert kinds["status-list"] == len(SOURCE_OF) - 1  # one signed status list per issuer (not 审批)
    assert first.tree_size == sum(kinds.values())
    assert first.extracts
    # Where the time went: each connector's stages, and the run's (what `onceonly run` prints).
    assert set(first.stage_seconds) == {"recover", "connectors", "status", "extracts", "witnesses"}
    for c in first.connectors:
        assert set(c.stage_seconds) == {"pull", "validate", "land", "wait"}, c.connector
        # pull and validate run on a second thread, alongside land; landing waited the rest
        assert c.stage_seconds["land"] + c.stage_seconds["wait"] <= c.seconds
        assert c.stage_seconds["pull"] + c.stage_seconds["validate"] <= c.seconds
    assert first.time_line().startswith("Time: connectors ")


def test_bad_rows_are_quarantined_with_their_rule_and_masked_values(world: World, first: Any) -> None:
    with world.catalog().connect() as conn:
        rows = conn.execute(sa.text("SELECT dataset, record_key, rule, value_masked FROM quarantine")).all()
    bad_check = world.manifest.datasets["household"].bad_keys("bad_check_char")
    hits = [r for r in rows if r.dataset == "household" and r.record_key in bad_check]
    assert hits and all(r.rule == "person_id.gb11643_citizen_id" for r in hits)
    assert all("********" in r.value_masked for r in hits)


def test_exported_bundle_verifies_offline_and_any_tampering_fails(
    world: World, first: Any, tmp_path: Path
) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["certificates", "list", "--limit", "5", "--json"])
    assert listed.exit_code == 0, listed.output
    cert_id = json.loads(listed.output)[2]["id"]
    bundle = tmp_path / "bundle.json"
    exported = runner.invoke(app, ["certificates", "export", cert_id, "-o", str(bundle)])
    assert exported.exit_code == 0, exported.output
    ok = runner.invoke(app, ["verify", str(bundle)])
    assert ok.exit_code == 0 and "VALID" in ok.output
    data = json.loads(bundle.read_text(encoding="utf-8"))
    for tamper in (
        lambda d: d["certificate"]["holder"].update(name=d["certificate"]["holder"]["name"] + "X"),
        lambda d: d["inclusion_proof"].__setitem__(
            0, ("0" if d["inclusion_proof"][0][0] != "0" else "1") + d["inclusion_proof"][0][1:]
        ),
        lambda d: d.update(checkpoint=d["checkpoint"].replace("\n", "\n1", 1)),
    ):
        changed = json.loads(json.dumps(data))
        tamper(changed)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(changed, ensure_ascii=False), encoding="utf-8")
        result = runner.invoke(app, ["verify", str(bad)])
        assert result.exit_code == 1, result.output
        assert "INVALID" in result.output


def test_second_run_adds_nothing(world: World, first: Any) -> None:
    state, summary = world.run()
    assert state.is_completed()
    assert summary.pulled == 0 and summary.certificates == 0
    assert summary.tree_size == first.tree_size
    assert summary.extracts == 0


def test_skip_check_for_a_married_citizen_and_for_a_quarantined_one(world: World, first: Any) -> None:
    with world.catalog().connect() as conn:
        married = conn.execute(
            sa.text(
                "SELECT m.holder_id FROM certificates m JOIN certificates h ON h.holder_id = m.holder_id "
                "WHERE m.dataset = 'marriage' AND h.dataset = 'household' LIMIT 1"
            )
        ).scalar_one()
    runner = CliRunner()
    out = runner.invoke(
        app, ["skip-check", "--subject", married, "--matter", "hukou-move-after-marriage", "--json"]
    )
    assert out.exit_code == 0, out.output
    answer = {m["material"]: m for m in json.loads(out.output)["materials"]}
    assert answer["结婚证"]["skippable"] and answer["结婚证"]["certificate_id"].startswith("1.2.156.3005.2.")
    assert answer["居民户口簿"]["skippable"]
    assert not answer["居民身份证"]["skippable"]
    assert married not in out.output  # the subject is shown masked

    unknown_township = next(iter(world.manifest.datasets["household"].bad_keys("unknown_township")))
    out = runner.invoke(
        app, ["skip-check", "--subject", unknown_township, "--matter", "pension-enrolment", "--json"]
    )
    answer = {m["material"]: m for m in json.loads(out.output)["materials"]}
    assert not answer["居民户口簿"]["skippable"]
    assert "township_code.region_code" in answer["居民户口簿"]["reason"]


def test_township_extracts_hold_only_their_own_township(world: World, first: Any) -> None:
    with world.catalog().connect() as conn:
        townships = dict(conn.execute(sa.text("SELECT cert_id, township FROM certificates")).all())
    paths = sorted((world.home / "extracts").glob("township=*/extract=*/certificates.parquet"))
    assert len(paths) == first.extracts  # the first run: each township's extract number 1, full
    for path in paths:
        township = Path(path).parent.parent.name.removeprefix("township=")
        assert path.parent.name == "extract=000001"
        extract = pq.read_table(path)
        ids = extract.column("cert_id").to_pylist()
        assert ids and all(townships[i] == township for i in ids)
        assert set(extract.column("change").to_pylist()) == {"全量"}
        # no citizen ID in clear: a person's ID is masked (a licence's USCC is public, in clear)
        for row in extract.select(["type_code", "holder_id"]).to_pylist():
            assert ("*" in row["holder_id"]) == (row["type_code"] != "11100000MB0143028R001"), row[
                "type_code"
            ]


def test_next_days_changes_land_once_and_a_failing_department_does_not_stop_the_others(
    world: World, first: Any
) -> None:
    before = Manifest.load(world.home / "departments")
    after = add_updates(world.home / "departments", rows=50, seed=SEED + 1)
    assert len(after.batches) == len(before.batches) + 1

    world.monkeypatch.setenv("ONCEONLY_SECRET_SCJG_LICENCES_TOKEN", "wrong-token")
    with world.catalog().connect() as conn:
        licence_cursor = conn.execute(
            sa.text("SELECT cursor FROM connector_state WHERE connector = 'scjg-licences'")
        ).scalar_one()
    state, summary = world.run()
    assert state.is_failed()
    by_name = {c.connector: c for c in summary.connectors}
    assert by_name["scjg-licences"].status == "failed"
    assert "scjg-licences" in by_name["scjg-licences"].error and "401" in by_name["scjg-licences"].error
    assert "wrong-token" not in by_name["scjg-licences"].error
    assert by_name["gongan-household"].status == "ok" and by_name["gongan-household"].pulled > 0
    assert by_name["minzheng-marriages"].status == "ok" and by_name["minzheng-marriages"].pulled > 0
    with world.catalog().connect() as conn:
        state_row = conn.execute(
            sa.text("SELECT cursor, last_status FROM connector_state WHERE connector = 'scjg-licences'")
        ).one()
    assert state_row.last_status == "failed"
    assert state_row.cursor == licence_cursor  # the failed department's cursor did not move

    world.monkeypatch.setenv("ONCEONLY_SECRET_SCJG_LICENCES_TOKEN", demo_token(SEED))
    state, summary = world.run()
    assert state.is_completed(), state.message
    by_name = {c.connector: c for c in summary.connectors}
    assert by_name["scjg-licences"].pulled > 0
    assert by_name["gongan-household"].pulled == 0 and by_name["minzheng-marriages"].pulled == 0
    with world.catalog().connect() as conn:
        stored = list(leaves(conn))
        cert_leaves = sum(leaf.kind == "certificate" for leaf in stored)
        certs = conn.execute(sa.text("SELECT COUNT(*) FROM certificates")).scalar_one()
        renewed = conn.execute(sa.text("SELECT COUNT(*) FROM certificates WHERE version > 1")).scalar_one()
    assert cert_leaves == certs and len(stored) == summary.tree_size
    assert renewed > 0  # records changed at the source became new certificate versions


def test_lifecycle_commands_reach_the_bundle_list_and_skip_check(
    world: World, first: Any, tmp_path: Path
) -> None:
    """Runs last: suspend/restore add log leaves, and renewals of the day before exist."""
    runner = CliRunner()
    with world.catalog().connect() as conn:
        married = conn.execute(
            sa.text(
                "SELECT cert_id, holder_id FROM certificates WHERE dataset = 'marriage' AND status = '有效' "
                "LIMIT 1"
            )
        ).one()
        superseded = conn.execute(
            sa.text(
                "SELECT c.cert_id FROM certificates c "
                "JOIN certificates n ON n.previous_id = c.cert_id LIMIT 1"
            )
        ).scalar_one()
    assert list((world.home / "status").glob("*.json"))  # published for townships

    parsed = runner.invoke(app, ["certificates", "parse", married.cert_id])
    assert parsed.exit_code == 0 and "issuer USCC" in parsed.output, parsed.output
    broken = married.cert_id[:-1] + ("0" if married.cert_id[-1] != "0" else "1")
    parsed = runner.invoke(app, ["certificates", "parse", broken])
    assert parsed.exit_code == 1 and "check character" in parsed.output

    bundle = tmp_path / "bundle.json"

    def verify() -> Any:
        exported = runner.invoke(app, ["certificates", "export", married.cert_id, "-o", str(bundle)])
        assert exported.exit_code == 0, exported.output
        return runner.invoke(app, ["verify", str(bundle)])

    assert verify().exit_code == 0
    old_checkpoint = tmp_path / "seen.checkpoint"
    old_checkpoint.write_text(json.loads(bundle.read_text(encoding="utf-8"))["checkpoint"], encoding="utf-8")

    out = runner.invoke(app, ["certificates", "suspend", married.cert_id, "--reason", "under review"])
    assert out.exit_code == 0, out.output
    result = verify()
    assert result.exit_code == 1 and "suspended (暂扣)" in result.output, result.output
    listed = runner.invoke(app, ["certificates", "list", "--subject", married.holder_id, "--json"])
    assert {c["id"]: c["status"] for c in json.loads(listed.output)}[married.cert_id] == "暂扣"
    check = runner.invoke(
        app, ["skip-check", "--subject", married.holder_id, "--matter", "hukou-move-after-marriage", "--json"]
    )
    answer = {m["material"]: m for m in json.loads(check.output)["materials"]}
    assert not answer["结婚证"]["skippable"] and "暂扣" in answer["结婚证"]["reason"]

    out = runner.invoke(app, ["certificates", "restore", married.cert_id, "--reason", "review closed"])
    assert out.exit_code == 0, out.output
    assert verify().exit_code == 0
    # the log grew (lifecycle leaves, status lists) and is consistent with what was seen before
    exported = runner.invoke(
        app,
        [
            "certificates",
            "export",
            married.cert_id,
            "-o",
            str(bundle),
            "--consistency-from",
            str(old_checkpoint),
        ],
    )
    assert exported.exit_code == 0, exported.output
    ok = runner.invoke(app, ["verify", str(bundle), "--consistency-from", str(old_checkpoint)])
    assert ok.exit_code == 0 and "extends the checkpoint" in ok.output, ok.output
    history = runner.invoke(app, ["certificates", "history", married.cert_id])
    assert "suspend" in history.output and "restore" in history.output
    restore_again = runner.invoke(app, ["certificates", "restore", married.cert_id, "--reason", "again"])
    assert restore_again.exit_code != 0

    exported = runner.invoke(app, ["certificates", "export", superseded, "-o", str(bundle)])
    assert exported.exit_code == 0, exported.output
    result = runner.invoke(app, ["verify", str(bundle)])
    assert result.exit_code == 1 and "superseded by a newer version" in result.output, result.output
