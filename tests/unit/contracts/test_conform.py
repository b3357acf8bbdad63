from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from contracts.compiler import compile_contract
from contracts.conform import conform, convert
from contracts.model import load_contract
from onceonly.errors import SourceSchemaChanged
from onceonly.settings import Settings

LICENCES = compile_contract(load_contract(Path(Settings().contracts_dir) / "business_licence.yaml"))
TZ = "Asia/Shanghai"


def test_text_dates_convert_and_bad_ones_are_flagged_not_fatal() -> None:
    result, ok = convert(pa.array(["2024-02-29", "2023-02-29", None, " ", "2024/03/01"]), pa.date32(), TZ)
    assert result.to_pylist() == [dt.date(2024, 2, 29), None, None, None, dt.date(2024, 3, 1)]
    assert ok.to_pylist() == [True, False, True, True, True]


def test_timestamps_with_offset_and_naive_local_time_are_the_same_instant() -> None:
    target = pa.timestamp("us", tz=TZ)
    result, ok = convert(
        pa.array(["2026-11-20T08:00:00+08:00", "2026-11-20 08:00:00", "yesterday"]), target, TZ
    )
    values = result.to_pylist()
    assert values[0] == values[1]
    assert values[0].astimezone(dt.UTC) == dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)
    assert ok.to_pylist() == [True, True, False]


def test_naive_database_timestamps_are_read_as_department_local_time() -> None:
    target = pa.timestamp("us", tz=TZ)
    result, _ = convert(pa.array([dt.datetime(2026, 11, 20, 8, 0)]), target, TZ)
    assert result.to_pylist()[0].astimezone(dt.UTC).hour == 0


def test_decimals_respect_scale() -> None:
    result, ok = convert(pa.array(["500.00", "12.5", "1.234", "abc"]), pa.decimal128(18, 2), TZ)
    assert result.to_pylist() == [Decimal("500.00"), Decimal("12.50"), None, None]
    assert ok.to_pylist() == [True, True, False, False]


def test_missing_promised_column_is_a_schema_change_naming_connector_and_column() -> None:
    raw = pa.table({"uscc": ["91350100M000100Y43"], "name": ["x"]})
    with pytest.raises(SourceSchemaChanged, match=r"connector 'scjg'.*entity_type"):
        conform(raw, LICENCES, connector="scjg")


def test_incompatible_source_type_is_a_schema_change() -> None:
    columns = {f.name: pa.array(["x"]) for f in LICENCES.arrow_schema}
    columns["established_on"] = pa.array([[1, 2]])
    with pytest.raises(SourceSchemaChanged, match="established_on"):
        conform(pa.table(columns), LICENCES, connector="scjg")
