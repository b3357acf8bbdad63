"""A record deleted at a snapshot source cancels (注销) its certificates through the daily flow,
exactly once and even when a run dies between landing and cancelling; and the flow signs with
the configured signature suite."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from cli.main import app
from departments import generate_all
from evidence.note import parse_vkey
from onceonly.settings import Settings

pytestmark = pytest.mark.e2e

PASSPHRASE = "e2e-deletions-passphrase-0123456789-abcdef"
SHIPPED = Path(Settings().registrations_dir) / "minzheng-marriages.yaml"


@dataclass
class Home:
    root: Path
    var: Path
    drop: Path
    regs: Path
    rows: list[bytes]  # the export's lines (GBK), header first

    def register(self, **options: Any) -> None:
        data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
        data["options"].update({"path": str(self.drop), "settle_seconds": 0, **options})
        (self.regs / "minzheng-marriages.yaml").write_text(
            yaml.safe_dump(data, allow_unicode=True), encoding="utf-8"
        )

    def export(self, lines: list[bytes]) -> None:
        path = self.drop / "full.csv"
        path.write_bytes(self.rows[0] + b"".join(lines))
        os.utime(path, (time.time() - 10, time.time() - 10))

    def run(self) -> tuple[Any, Any]:
        from flows.daily_sharing import daily_sharing, summary_of

        state = daily_sharing(return_state=True)
        return state, summary_of(state)

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(f"sqlite:///{self.var / 'catalog.db'}")
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params).all())
        finally:
            engine.dispose()

    def certificates_of(self, record_key: str) -> list[Any]:
        return self.query(
            "SELECT cert_id, holder_id, status FROM certificates WHERE dataset = 'marriage' "
            "AND record_key = :k ORDER BY cert_id",
            k=record_key,
        )


@pytest.fixture
def home(tmp_path: Path, prefect_harness: None) -> Iterator[Home]:
    var = tmp_path / "var"
    generate_all(var / "departments", rows=40, seed=23)
    (export,) = (var / "departments" / "minzheng" / "drop").glob("*.csv")
    rows = export.read_bytes().splitlines(keepends=True)
    drop, regs = tmp_path / "drop", tmp_path / "regs"
    for d in (drop, regs):
        d.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("ONCEONLY_HOME", str(var))
    mp.setenv("ONCEONLY_KEY_PASSPHRASE", PASSPHRASE)
    mp.setenv("ONCEONLY_REGISTRATIONS_DIR", str(regs))
    mp.setenv("ONCEONLY_SOURCE_ROOTS", str(tmp_path))  # the drop beside the home
    mp.setenv("ONCEONLY_RETRY_WAIT_SECONDS", "0")
    mp.setenv("ONCEONLY_CONNECTOR_ATTEMPTS", "1")
    mp.delenv("ONCEONLY_SIGNATURE_SUITE", raising=False)
    try:
        yield Home(tmp_path, var, drop, regs, rows)
    finally:
        mp.undo()
        shutil.rmtree(tmp_path, ignore_errors=True)


def _issued_keys(home: Home) -> list[str]:
    """Record keys (cert_no) with certificates in force, in export order."""
    in_force = {r.record_key for r in home.query("SELECT record_key FROM certificates WHERE status = '有效'")}
    keys = [line.split(b",", 1)[0].decode("gbk") for line in home.rows[1:]]
    return [k for k in keys if k in in_force]


def _without(home: Home, *keys: str) -> list[bytes]:
    return [line for line in home.rows[1:] if line.split(b",", 1)[0].decode("gbk") not in keys]


def test_a_record_deleted_at_the_source_cancels_its_certificates_once(home: Home, tmp_path: Path) -> None:
    home.register(change_detection="snapshot", key=["cert_no"])
    home.export(home.rows[1:])
    state, _ = home.run()
    assert state.is_completed(), state.message
    gone, later = _issued_keys(home)[:2]
    issued = home.certificates_of(gone)
    assert issued and all(c.status == "有效" for c in issued)

    home.export(_without(home, gone))
    state, summary = home.run()
    assert state.is_completed(), state.message
    (result,) = summary.connectors
    assert result.changes["deleted"] == 1 and result.cancelled == len(issued)
    assert summary.rows()[0]["cancelled"] == len(issued)
    assert {c.status for c in home.certificates_of(gone)} == {"注销"}
    events = home.query(
        "SELECT action, reason, leaf_index FROM certificate_events WHERE cert_id = :c",
        c=issued[0].cert_id,
    )
    assert [(e.action, "deleted" in e.reason) for e in events] == [("cancel", True)]
    assert not list((home.var / "deletions" / "minzheng-marriages").glob("*.parquet"))

    # The bundle verifies as cancelled: the republished status list says so.
    runner = CliRunner()
    bundle = tmp_path / "bundle.json"
    out = runner.invoke(app, ["certificates", "export", issued[0].cert_id, "-o", str(bundle)])
    assert out.exit_code == 0, out.output
    verified = runner.invoke(app, ["verify", str(bundle)])
    assert verified.exit_code == 1 and "cancelled (注销)" in verified.output, verified.output
    status_files = list((home.var / "status").glob("*.json"))
    assert status_files
    # Skip-check says why the certificate cannot stand in for the proof.
    check = runner.invoke(
        app,
        ["skip-check", "--subject", issued[0].holder_id, "--matter", "hukou-move-after-marriage", "--json"],
    )
    assert check.exit_code == 0, check.output
    answer = {m["material"]: m for m in json.loads(check.output)["materials"]}
    assert not answer["结婚证"]["skippable"]
    assert "注销" in answer["结婚证"]["reason"] and "deleted" in answer["结婚证"]["reason"]

    # A re-run changes nothing: no second cancellation, no new leaf.
    state, again = home.run()
    assert state.is_completed(), state.message
    assert again.connectors[0].cancelled == 0 and again.tree_size == summary.tree_size
    assert len(home.query("SELECT id FROM certificate_events WHERE action = 'cancel'")) == len(issued)

    # A run that dies between landing and cancelling: the next run cancels, once.
    import flows.daily_sharing as daily

    def die(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed between landing and cancelling")

    later_issued = home.certificates_of(later)
    home.export(_without(home, gone, later))
    mp = pytest.MonkeyPatch()
    mp.setattr(daily, "cancel_deleted", die)
    try:
        state, _ = home.run()
    finally:
        mp.undo()
    assert state.is_failed()
    assert {c.status for c in home.certificates_of(later)} == {"有效"}  # landed, not yet cancelled
    assert len(list((home.var / "deletions" / "minzheng-marriages").glob("*.parquet"))) == 1

    state, recovered = home.run()
    assert state.is_completed(), state.message
    assert recovered.connectors[0].pulled == 0  # the batch had landed: nothing pulled again
    # Finished first thing, by the run's recovery (before any connector is pulled).
    assert recovered.recovered["cancelled"] == len(later_issued)
    assert {c.status for c in home.certificates_of(later)} == {"注销"}
    assert not list((home.var / "deletions" / "minzheng-marriages").glob("*.parquet"))
    state, last = home.run()
    assert last.connectors[0].cancelled == 0
    cancels = home.query("SELECT cert_id FROM certificate_events WHERE action = 'cancel'")
    assert len(cancels) == len(issued) + len(later_issued) == len({c.cert_id for c in cancels})


def test_the_flow_signs_with_the_configured_suite_and_its_bundles_verify(home: Home, tmp_path: Path) -> None:
    os.environ["ONCEONLY_SIGNATURE_SUITE"] = "ecdsa-p256-sha256"  # undone by the fixture's delenv
    home.register()
    home.export(home.rows[1:])
    state, summary = home.run()
    assert state.is_completed(), state.message
    assert summary.certificates > 0

    runner = CliRunner()
    listed = runner.invoke(app, ["keys", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [k["suite"] for k in json.loads(listed.output)] == ["ecdsa-p256-sha256"]
    assert summary.vkey == json.loads(listed.output)[0]["vkey"]

    assert parse_vkey(summary.vkey).suite == "ecdsa-p256-sha256"
    (cert_id,) = home.query("SELECT cert_id FROM certificates WHERE status = '有效' LIMIT 1")[0]
    bundle = tmp_path / "bundle.json"
    out = runner.invoke(app, ["certificates", "export", cert_id, "-o", str(bundle)])
    assert out.exit_code == 0, out.output
    doc = json.loads(bundle.read_text(encoding="utf-8"))
    assert parse_vkey(doc["public_key"]).suite == "ecdsa-p256-sha256"
    verified = runner.invoke(app, ["verify", str(bundle), "--trusted-key", summary.vkey])
    assert verified.exit_code == 0 and "VALID" in verified.output, verified.output
    assert runner.invoke(app, ["log", "verify"]).exit_code == 0


def test_a_bundle_exported_after_key_rotation_verifies(home: Home, tmp_path: Path) -> None:
    home.register()
    home.export(home.rows[1:])
    state, summary = home.run()
    assert state.is_completed(), state.message
    (cert_id,) = home.query("SELECT cert_id FROM certificates WHERE status = '有效' LIMIT 1")[0]
    runner = CliRunner()
    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output

    bundle = tmp_path / "bundle.json"
    out = runner.invoke(app, ["certificates", "export", cert_id, "-o", str(bundle)])
    assert out.exit_code == 0, out.output
    # the checkpoint and the status list were signed by the key retired just now: it ships
    assert json.loads(bundle.read_text(encoding="utf-8"))["public_key"] == summary.vkey
    verified = runner.invoke(app, ["verify", str(bundle), "--trusted-key", summary.vkey])
    assert verified.exit_code == 0 and "VALID" in verified.output, verified.output

    # A use recorded after the rotation: the new key signs the checkpoint, the list is the old key's.
    (holder,) = home.query("SELECT holder_id FROM certificates WHERE cert_id = :c", c=cert_id)[0]
    used = runner.invoke(
        app,
        [
            "skip-check",
            "--subject",
            holder,
            "--matter",
            "hukou-move-after-marriage",
            "--record-use",
            "120114001000",
        ],
    )
    assert used.exit_code == 0, used.output
    out = runner.invoke(app, ["certificates", "export", cert_id, "-o", str(bundle)])
    assert out.exit_code == 0, out.output
    doc = json.loads(bundle.read_text(encoding="utf-8"))
    assert doc["public_key"] != summary.vkey and doc["status_list_key"] == summary.vkey
    keyring = tmp_path / "district-keyring.json"
    assert runner.invoke(app, ["keys", "export-public", "--keyring", "-o", str(keyring)]).exit_code == 0
    verified = runner.invoke(app, ["verify", str(bundle), "--keyring", str(keyring)])
    assert verified.exit_code == 0 and "VALID" in verified.output, verified.output
    logged = runner.invoke(app, ["log", "verify", "--keyring", str(keyring)])
    assert logged.exit_code == 0, logged.output

    # The retired key turns out stolen since before it signed the list: the bundle and the log say so.
    old_id = parse_vkey(summary.vkey).key_id.hex()
    assert runner.invoke(app, ["keys", "compromise", old_id, "--since", "2020-01-01"]).exit_code == 0
    assert runner.invoke(app, ["keys", "export-public", "--keyring", "-o", str(keyring)]).exit_code == 0
    verified = runner.invoke(app, ["verify", str(bundle), "--keyring", str(keyring)])
    assert verified.exit_code == 1 and "compromised since" in verified.output, verified.output
    logged = runner.invoke(app, ["log", "verify", "--keyring", str(keyring)])
    assert logged.exit_code == 1 and f"+{old_id} is compromised" in logged.output, logged.output
    # `certificates publish-status` re-signs the lists with the new key: a fresh bundle is clean
    assert runner.invoke(app, ["certificates", "publish-status"]).exit_code == 0
    assert runner.invoke(app, ["certificates", "export", cert_id, "-o", str(bundle)]).exit_code == 0
    assert "status_list_key" not in json.loads(bundle.read_text(encoding="utf-8"))
    verified = runner.invoke(app, ["verify", str(bundle), "--keyring", str(keyring)])
    assert verified.exit_code == 0 and "VALID" in verified.output, verified.output
