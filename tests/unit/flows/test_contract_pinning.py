"""A connector runs only against the contract major version its registration pins."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.registration import ContractPin, Registration, load_registration
from contracts.identifiers import citizen_id_check_char
from contracts.model import load_contract, parse_contract
from contracts.pinning import require_pinned_major
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings

DATASETS = Path(Settings().contracts_dir)
HOUSEHOLD_V1 = load_contract(DATASETS / "household.yaml")
HOUSEHOLD_V2 = parse_contract(
    (DATASETS / "household.yaml").read_text(encoding="utf-8").replace("version: 1.0.0", "version: 2.0.0", 1),
    source="household.yaml",
)


def registration(pin: dict[str, int] | None) -> Registration:
    return Registration.model_validate(
        {"name": "gongan", "department": "公安", "dataset": "household", "type": "sql", "contract": pin}
    )


def test_the_pinned_major_runs() -> None:
    require_pinned_major(registration({"major": 1}), HOUSEHOLD_V1)


def test_another_major_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigurationError) as info:
        require_pinned_major(registration({"major": 1}), HOUSEHOLD_V2)
    message = str(info.value)
    assert "connector 'gongan' was tested against contract 'household' major version 1" in message
    assert "household.yaml is household@2.0.0" in message
    assert "`contract: {major: 2}`" in message and "`contract: {major: 1, accept_major: 2}`" in message


def test_an_explicit_accept_major_lets_it_run(caplog: pytest.LogCaptureFixture) -> None:
    require_pinned_major(registration({"major": 1, "accept_major": 2}), HOUSEHOLD_V2)
    assert "accepts major 2" in caplog.text
    v3 = parse_contract(
        (DATASETS / "household.yaml")
        .read_text(encoding="utf-8")
        .replace("version: 1.0.0", "version: 3.0.0", 1)
    )
    with pytest.raises(ConfigurationError, match=r"is household@3\.0\.0"):
        require_pinned_major(registration({"major": 1, "accept_major": 2}), v3)


def test_an_unpinned_registration_runs_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    require_pinned_major(registration(None), HOUSEHOLD_V2)
    assert "names no contract major version" in caplog.text


def test_shipped_registrations_are_pinned_to_the_shipped_majors() -> None:
    from contracts.model import contract_by_id

    for path in sorted(Path(Settings().registrations_dir).glob("*.yaml")):
        reg = load_registration(path)
        assert reg.contract == ContractPin(major=contract_by_id(DATASETS, reg.dataset).major), path


def test_a_bad_pin_is_a_registration_error(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: gongan\ndepartment: 公安\ndataset: household\ntype: sql\ncontract: {major: one}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match=r"r\.yaml: line 5, contract\.major"):
        load_registration(path)


# --------------------------------------------------------------------------------------------
# Through the daily flow: the connector stops before pulling, with the message


def _household_source(path: Path) -> None:
    body = "12011419900307001"
    row: dict[str, Any] = {
        "person_id": body + citizen_id_check_char(body),
        "name": "张三",
        "gender": "男",
        "ethnicity": "汉族",
        "birth_date": "1990-03-07",
        "household_no": "H000001",
        "relation": "户主",
        "address": "天津市武清区杨村街道泉州路1号",
        "township_code": "120114001000",
        "registered_on": "2000-01-01",
        "updated_at": "2026-11-20 08:00:00",
    }
    con = sqlite3.connect(path)
    con.execute(
        f"CREATE TABLE household_member (id INTEGER PRIMARY KEY, {', '.join(f'{c} TEXT' for c in row)})"
    )
    con.execute(f"INSERT INTO household_member VALUES (1, {', '.join('?' * len(row))})", list(row.values()))
    con.commit()
    con.close()


@pytest.mark.parametrize("accept", [False, True], ids=["refused", "accepted"])
def test_the_flow_refuses_a_new_major_unless_accepted(
    accept: bool, home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, tmp_path: Path
) -> None:
    from flows.daily_sharing import daily_sharing, summary_of

    contracts = tmp_path / "contracts"
    contracts.mkdir()
    for path in DATASETS.glob("*.yaml"):
        shutil.copy(path, contracts / path.name)
    household = contracts / "household.yaml"
    household.write_text(household.read_text(encoding="utf-8").replace("version: 1.0.0", "version: 2.0.0", 1))
    db = tmp_path / "gongan.db"
    _household_source(db)
    regs = tmp_path / "registrations"
    regs.mkdir()
    # A connector name of its own: Prefect artifacts are keyed by connector in the shared harness.
    reg = {
        "name": "pinned-gongan",
        "department": "测试公安局",
        "dataset": "household",
        "contract": {"major": 1, "accept_major": 2} if accept else {"major": 1},
        "type": "sql",
        "options": {
            "url": f"sqlite:///{db}",
            "table": "household_member",
            "cursor": {"column": "updated_at", "tiebreak": "id"},
        },
    }
    (regs / "pinned-gongan.yaml").write_text(yaml.safe_dump(reg, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("ONCEONLY_REGISTRATIONS_DIR", str(regs))
    monkeypatch.setenv("ONCEONLY_CONTRACTS_DIR", str(contracts))

    state = daily_sharing(return_state=True)
    summary: Any = summary_of(state)
    (c,) = summary.connectors
    if accept:
        assert (c.status, c.pulled, c.accepted) == ("ok", 1, 1)
    else:
        assert c.status == "failed" and c.pulled == 0
        assert "tested against contract 'household' major version 1" in (c.error or "")
        assert "household@2.0.0" in (c.error or "")
