"""Blocks of one source whose columns grow (a JSON-lines key first seen in a later block) are
joined into one batch with the columns united, not refused by Arrow."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from connector_sources import column, connector, drain, registration

from connectors.base import rebatch


def test_blocks_with_a_new_column_are_joined_with_nulls() -> None:
    first = pa.RecordBatch.from_pydict({"a": pa.array(["1", "2"], pa.string())})
    later = pa.RecordBatch.from_pydict({"a": pa.array(["3"], pa.string()), "b": pa.array(["x"], pa.string())})
    (joined,) = list(rebatch([first, later], size=10))
    assert joined.to_pylist() == [{"a": "1", "b": None}, {"a": "2", "b": None}, {"a": "3", "b": "x"}]
    # blocks of one schema are still joined as they are
    (same,) = list(rebatch([first, first], size=10))
    assert same.schema == first.schema and same.num_rows == 4


def test_a_json_lines_key_first_seen_after_the_first_block_lands(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    lines = [json.dumps({"id": str(i)}) for i in range(70_000)] + [json.dumps({"id": "x", "late": "y"})]
    (drop / "export.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    reg = registration("files", path=str(drop), pattern="*.jsonl", settle_seconds=0)
    pulled = drain(connector(reg), batch_size=100_000)
    assert sum(p.batch.num_rows for p in pulled) == 70_001
    assert column(pulled, "late")[-2:] == [None, "y"]
