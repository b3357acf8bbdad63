"""The contract's maxErrorRate stops a connector only on batches large enough to judge."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from connectors.base import Pulled
from contracts.checks import CheckContext, load_region_codes
from contracts.compiler import compile_contract
from contracts.model import contract_by_id
from contracts.validate import Validator
from flows.daily_sharing import _refuse_breach
from lake.parquet import ParquetLake
from onceonly.errors import ContractBreached
from onceonly.settings import Settings

HOUSEHOLD = compile_contract(contract_by_id(Settings().contracts_dir, "household"))
VALIDATOR = Validator(HOUSEHOLD, CheckContext(dt.date(2026, 11, 21), frozenset(load_region_codes("120114"))))


def _all_bad(n: int) -> pa.Table:
    names = [f.name for f in HOUSEHOLD.arrow_schema]
    return pa.table({name: pa.array(["bad"] * n) for name in names})


def test_one_bad_row_in_a_tiny_batch_does_not_stop_the_connector(tmp_path: Path) -> None:
    batch = _all_bad(1)
    v = VALIDATOR.validate(batch, connector="c")
    assert v.error_rate == 1.0
    pipeline = SimpleNamespace(lake=ParquetLake(tmp_path))
    _refuse_breach(pipeline, "c", HOUSEHOLD, v, None, Pulled(batch.to_batches()[0], {}))  # type: ignore[arg-type]
    assert not any(tmp_path.rglob("*.parquet"))


def test_a_large_batch_above_the_threshold_stops_it_and_keeps_the_rows(tmp_path: Path) -> None:
    batch = _all_bad(HOUSEHOLD.min_rows_for_error_rate)
    v = VALIDATOR.validate(batch, connector="c")
    pipeline = SimpleNamespace(lake=ParquetLake(tmp_path))
    with pytest.raises(ContractBreached, match="maxErrorRate 20%; nothing from this batch was issued"):
        _refuse_breach(pipeline, "c", HOUSEHOLD, v, None, Pulled(batch.to_batches()[0], {}))  # type: ignore[arg-type]
    (kept,) = tmp_path.rglob("breach-*.parquet")
    again = tmp_path / "again"
    with pytest.raises(ContractBreached):  # the same batch again: the same file, not a new one
        _refuse_breach(
            SimpleNamespace(lake=ParquetLake(tmp_path)),
            "c",
            HOUSEHOLD,
            v,
            None,  # type: ignore[arg-type]
            Pulled(batch.to_batches()[0], {}),
        )
    assert list(tmp_path.rglob("breach-*.parquet")) == [kept] and not again.exists()
