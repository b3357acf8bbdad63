"""The contract's maxErrorRate stops a connector only on batches large enough to judge."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from catalog import Catalog, breaches, quarantine
from contracts.checks import CheckContext, load_region_codes
from contracts.compiler import compile_contract
from contracts.model import contract_by_id
from contracts.validate import Validator
from evidence.keys import SigningKey
from evidence.log import TransparencyLog
from flows.daily_sharing import _refuse_breach
from flows.summary import ConnectorResult
from lake.landing import Lander, content_digest
from lake.parquet import ParquetLake
from onceonly.errors import ContractBreached
from onceonly.settings import Settings

HOUSEHOLD = compile_contract(contract_by_id(Settings().contracts_dir, "household"))
VALIDATOR = Validator(HOUSEHOLD, CheckContext(dt.date(2026, 11, 21), frozenset(load_region_codes("120114"))))


def _all_bad(n: int) -> pa.Table:
    names = [f.name for f in HOUSEHOLD.arrow_schema]
    return pa.table({name: pa.array([f"bad{i}" for i in range(n)]) for name in names})


def _lander(tmp_path: Path) -> Lander:
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
    log = TransparencyLog(SigningKey.generate("test.example/log"), "test.example/log")
    return Lander(catalog, ParquetLake(tmp_path / "lake"), log, run_id="run-1")


def _count(lander: Lander, table: sa.Table) -> int:
    with lander.catalog.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_one_bad_row_in_a_tiny_batch_does_not_stop_the_connector(tmp_path: Path) -> None:
    batch = _all_bad(1)
    v = VALIDATOR.validate(batch, connector="c")
    assert v.error_rate == 1.0
    lander = _lander(tmp_path)
    assert not v.breaches(HOUSEHOLD)  # the rule is the contract's
    result = ConnectorResult("c", "household")
    _refuse_breach(lander, "c", HOUSEHOLD, v, None, content_digest(batch.to_batches()[0]), result)
    assert not any(tmp_path.rglob("*.parquet")) and _count(lander, breaches) == 0
    assert not result.breached and result.pulled == 0


def test_a_large_batch_above_the_threshold_stops_it_and_keeps_the_rows_once(tmp_path: Path) -> None:
    batch = _all_bad(HOUSEHOLD.min_rows_for_error_rate)
    v = VALIDATOR.validate(batch, connector="c")
    lander = _lander(tmp_path)
    assert v.breaches(HOUSEHOLD)
    result = ConnectorResult("c", "household")
    with pytest.raises(
        ContractBreached, match=r"maxErrorRate 20% — rules broken: .*nothing from this batch"
    ) as e:
        _refuse_breach(lander, "c", HOUSEHOLD, v, None, content_digest(batch.to_batches()[0]), result)
    # What happened, for the run's summary: the refused batch's rows and the rules it broke.
    assert result.breached and (result.pulled, result.quarantined, result.accepted) == (100, 100, 0)
    assert result.breach_rules == v.failed_rules() and result.breach_rules
    assert all(rule in str(e.value) for rule in result.breach_rules)
    (kept,) = tmp_path.rglob("breach-*.parquet")
    failures = _count(lander, quarantine)
    assert failures == len(v.failures) and _count(lander, breaches) == 1
    with pytest.raises(ContractBreached):  # the same batch again: the same file and rows, not new ones
        again = ConnectorResult("c", "household")
        _refuse_breach(
            _lander(tmp_path), "c", HOUSEHOLD, v, None, content_digest(batch.to_batches()[0]), again
        )
    assert list(tmp_path.rglob("breach-*.parquet")) == [kept]
    assert _count(lander, quarantine) == failures and _count(lander, breaches) == 1
    with lander.catalog.read() as conn:
        row = conn.execute(sa.select(breaches)).one()
        versions = set(conn.execute(sa.select(quarantine.c.contract_version)).scalars())
    assert (row.pulled, row.quarantined, row.error_rate, row.max_error_rate) == (100, 100, 1.0, 0.2)
    assert versions == {HOUSEHOLD.contract.version}
