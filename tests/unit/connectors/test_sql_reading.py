"""The ADBC reading helpers: batches cut to size without loss, read one ahead in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from connectors.base import rebatch
from connectors.sql import _Columns, _read_ahead


def _batches(sizes: list[int]) -> list[pa.RecordBatch]:
    out, start = [], 0
    for n in sizes:
        out.append(pa.record_batch({"id": pa.array(range(start, start + n), pa.int64())}))
        start += n
    return out


@pytest.mark.parametrize("sizes", [[10], [3, 3, 3, 1], [25], [0, 7, 0, 13], [4, 6], [1] * 10, []], ids=str)
def test_rebatch_yields_every_row_once_in_order_in_batches_of_exactly_the_size(sizes: list[int]) -> None:
    out = list(rebatch(iter(_batches(sizes)), 4))
    ids = [i for b in out for i in b.column(0).to_pylist()]
    assert ids == list(range(sum(sizes)))
    assert all(b.num_rows == 4 for b in out[:-1])
    assert not out or 0 < out[-1].num_rows <= 4


@pytest.mark.parametrize("skip", [0, 1, 3, 4, 9, 24, 25, 30])
def test_rebatch_skips_the_first_rows_across_blocks(skip: int) -> None:
    out = list(rebatch(iter(_batches([3, 0, 7, 15])), 4, skip))
    ids = [i for b in out for i in b.column(0).to_pylist()]
    assert ids == list(range(skip, 25))
    assert all(b.num_rows == 4 for b in out[:-1])


def test_rebatch_cuts_a_large_batch_without_copying_it() -> None:
    (big,) = _batches([12])
    out = list(rebatch(iter([big]), 5))
    assert [b.num_rows for b in out] == [5, 5, 2]
    # Slices share the source's buffer: no copy was made.
    assert all(b.column(0).buffers()[1].address == big.column(0).buffers()[1].address for b in out)


def _columns() -> _Columns:
    return _Columns(names=["id"], read_types=[pa.int64()], wi=0, ti=0, timezone="UTC")


def test_read_ahead_gives_the_readers_batches_cast_and_stops_its_thread_when_closed_early() -> None:
    source = pa.RecordBatchReader.from_batches(
        pa.schema([("id", pa.int32())]),
        [pa.record_batch({"id": pa.array(range(i * 3, i * 3 + 3), pa.int32())}) for i in range(5)],
    )
    reading = _read_ahead(source, _columns())
    first = next(reading)
    assert first.schema.field("id").type == pa.int64() and first.column(0).to_pylist() == [0, 1, 2]
    reading.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("oo-sql-read")]


def test_read_ahead_passes_on_the_readers_error() -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"id": pa.array([1], pa.int64())})
        raise pa.ArrowInvalid("connection lost in the middle of COPY")

    source = pa.RecordBatchReader.from_batches(pa.schema([("id", pa.int64())]), failing())
    reading = _read_ahead(source, _columns())
    assert next(reading).num_rows == 1
    with pytest.raises(pa.ArrowInvalid, match="connection lost"):
        next(reading)
