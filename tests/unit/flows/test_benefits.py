"""The benefits flow over a real home: residents landed through the contract into the home's signed
log; the flow grants the one aged 80 or more, logs it, says so in its artifacts with the subject
masked, records nothing on a second run, and no clear ID reaches the catalog rows it writes or
its artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

LAKE_TESTS = Path(__file__).parents[1] / "lake"
OLD_BIRTH = "19400105"


def _land(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.syspath_prepend(str(LAKE_TESTS))
    import pyarrow as pa
    from landing_harness import HOUSEHOLD, TODAY, citizen_id, household_row, validate

    from catalog import Catalog
    from cli.main import app as cli
    from evidence.keys import open_key_store
    from evidence.log import TransparencyLog
    from lake.landing import Lander, content_digest
    from lake.parquet import ParquetLake
    from onceonly.settings import Settings

    assert CliRunner().invoke(cli, ["keys", "init"]).exit_code == 0
    settings = Settings()
    catalog = Catalog.connect(settings.catalog_url)
    log = TransparencyLog(open_key_store(settings).load(settings.log_origin), settings.log_origin)
    ids = {"old": citizen_id(21, birth=OLD_BIRTH), "young": citizen_id(22)}
    rows = [
        household_row(21, person_id=ids["old"], birth_date="1940-01-05"),
        household_row(22, person_id=ids["young"]),
    ]
    Lander(catalog, ParquetLake(settings.lake_dir), log, run_id="run-1").land(
        connector="gongan-household",
        compiled=HOUSEHOLD,
        validation=validate(HOUSEHOLD, rows),
        cursor_before=None,
        cursor_after={"page": 1},
        content_sha256=content_digest(pa.Table.from_pylist(rows)),
        issue_date=TODAY,
    )
    catalog.dispose()
    return ids


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a.data for a in found}


def test_the_flow_grants_once_and_names_nobody(
    home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    ids = _land(home, monkeypatch)
    from catalog import Catalog, log_leaves
    from catalog._schema import benefit_decisions
    from evidence.log import KIND_DECISION
    from flows.benefits import benefits
    from onceonly.settings import Settings

    state = benefits(day="2026-11-21", return_state=True)
    assert state.is_completed(), state.message
    assert state.message == "3 rule(s): 1 grant(s), 0 reversal(s) recorded"
    catalog = Catalog.connect(Settings().catalog_url, create=False)
    try:
        with catalog.read() as conn:
            rows = conn.execute(sa.select(benefit_decisions)).all()
            logged = conn.execute(
                sa.select(log_leaves.c.entry).where(log_leaves.c.kind == KIND_DECISION)
            ).all()
    finally:
        catalog.dispose()
    assert [(r.rule_id, r.result) for r in rows] == [("gaoling-jintie", "grant")]
    assert len(logged) == 1 and json.loads(logged[0][0])["decision"] == rows[0].decision_id
    artifacts = _artifacts(state.state_details.flow_run_id)
    table, report = artifacts["benefit-decisions"], artifacts["benefit-decisions-report"]
    masked = ids["old"][:6] + "********" + ids["old"][-4:]
    assert masked in table and rows[0].decision_id in table
    assert "高龄津贴" in report and "| 1 | 0 | 1 | 0 |" in report
    written = json.dumps([list(map(str, r)) for r in rows], ensure_ascii=False) + table + report
    for person in ids.values():
        assert person not in written and person[6:14] not in written + str(logged[0][0])

    again = benefits(day="2026-11-21", return_state=True)
    assert again.is_completed() and again.message == "3 rule(s): nothing new"
    assert "本次运行无新决定" in _artifacts(again.state_details.flow_run_id)["benefit-decisions-report"]


def test_a_bad_rule_file_fails_the_run_naming_the_file_and_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, tmp_path: Path
) -> None:
    _land(home, monkeypatch)
    rules = tmp_path / "rules"
    rules.mkdir()
    shipped = Path(__file__).parents[3] / "sharing" / "benefits" / "gaoling-jintie.yaml"
    (rules / "bad.yaml").write_text(
        shipped.read_text(encoding="utf-8").replace("holder_age", "holder_years"), encoding="utf-8"
    )
    monkeypatch.setenv("ONCEONLY_BENEFIT_RULES_DIR", str(rules))
    from flows.benefits import benefits

    state = benefits(return_state=True)
    assert state.is_failed()
    assert f"{rules / 'bad.yaml'}:16" in (state.message or "") and "holder_years" in (state.message or "")
