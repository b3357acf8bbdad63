"""A source without a column the contract promises: the error names what it sends, but never
data taken for a header (a file without its header row sends its first row as column names)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from contracts.compiler import compile_contract
from contracts.conform import conform
from contracts.model import contract_by_id
from onceonly.errors import SourceSchemaChanged

DATASETS = Path(__file__).parents[3] / "contracts" / "datasets"


def test_a_headerless_file_names_no_value_of_its_first_row() -> None:
    compiled = compile_contract(contract_by_id(DATASETS, "household"))
    first_row = ["120114199003070808", "李娜", "女", "汉族", "1990-03-07", "extra_col"]
    batch = pa.RecordBatch.from_arrays([pa.array(["x"]) for _ in first_row], names=first_row)
    with pytest.raises(SourceSchemaChanged) as refused:
        conform(batch, compiled, connector="gongan-household")
    message = str(refused.value)
    assert "extra_col" in message and "and 5 column(s) whose names are not shown" in message
    assert all(value not in message for value in first_row[:5])
