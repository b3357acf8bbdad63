"""Snapshot change detection: new, changed and deleted rows by content hash, with the hashes
in Parquet under the snapshot directory and only the generation in the cursor."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from connector_sources import column, connector, drain, registration
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import Cursor, Pulled
from connectors.snapshot import (
    DigestSet,
    SnapshotStore,
    _PreviousKeys,
    canonical_text,
    row_hashes,
    snapshot_pull,
)
from onceonly.errors import ConfigurationError, SourceSchemaChanged

Rows = list[dict[str, Any]]


def people(n: int) -> Rows:
    return [{"id": i, "name": f"名{i}", "township": "120114001000"} for i in range(n)]


def source(rows: Rows, chunk: int = 4) -> Callable[[], Iterator[pa.RecordBatch]]:
    def read() -> Iterator[pa.RecordBatch]:
        for start in range(0, len(rows), chunk):
            yield pa.RecordBatch.from_pylist(rows[start : start + chunk])

    return read


def pull(store: SnapshotStore, rows: Rows, cursor: Cursor | None, batch_size: int = 3) -> list[Pulled]:
    out = []
    for p in snapshot_pull(
        source(rows), cursor, key=["id"], store=store, batch_size=batch_size, connector="t"
    ):
        assert json.loads(json.dumps(p.cursor)) == p.cursor
        out.append(p)
    return out


def counts(pulled: list[Pulled]) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in pulled:
        for k, v in p.changes.items():
            total[k] = total.get(k, 0) + v
    return total


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snapshots", "t")


def test_first_pull_is_all_new_then_only_changes_and_deletions(store: SnapshotStore) -> None:
    rows = people(10)
    first = pull(store, rows, None)
    assert column(first, "id") == list(range(10)) and counts(first) == {"new": 10, "changed": 0, "deleted": 0}
    final = first[-1].cursor
    assert set(final) == {"snapshot"} and all(p.deleted is None for p in first[:-1])
    assert pull(store, rows, final) == []  # nothing changed: nothing yielded, cursor stays

    changed = [dict(r) for r in rows if r["id"] != 3]  # 3 deleted
    changed[0]["name"] = "改名"  # 0 changed
    changed.append({"id": 10, "name": "新", "township": None})  # 10 new
    second = pull(store, changed, final)
    assert column(second, "id") == [0, 10]
    assert counts(second) == {"new": 1, "changed": 1, "deleted": 1}
    assert second[-1].deleted is not None and second[-1].deleted.to_pylist() == ["3"]
    assert pull(store, changed, second[-1].cursor) == []


def test_hashes_live_in_parquet_and_only_the_current_generation_is_kept(store: SnapshotStore) -> None:
    first = pull(store, people(5), None)
    generation = first[-1].cursor["snapshot"]
    state = pq.read_table(store.state(generation))
    assert state.column_names == ["key", "hash"] and state.num_rows == 5
    assert state.schema.field("hash").type == pa.binary(16)
    second = pull(store, people(6), first[-1].cursor)
    assert column(second, "id") == [5]
    names = {p.name.split(".")[0] for p in store.dir.iterdir()}
    assert names == {generation, second[-1].cursor["snapshot"]}  # the old one until the new is landed
    pull(store, people(6), second[-1].cursor)
    assert {p.name.split(".")[0] for p in store.dir.iterdir()} == {second[-1].cursor["snapshot"]}


def test_a_run_that_dies_leaves_the_old_snapshot_current_and_resumes_the_staged_rows(
    store: SnapshotStore,
) -> None:
    base = pull(store, people(4), None)[-1].cursor
    changed = [*people(4), *({"id": i, "name": f"新{i}", "township": None} for i in range(4, 11))]
    gen = snapshot_pull(source(changed), base, key=["id"], store=store, batch_size=3, connector="t")
    landed = next(gen)  # the first batch lands, then the run dies
    gen.close()
    assert landed.cursor["snapshot"] == base["snapshot"] and landed.cursor["rows"] == 3

    # The source moved on meanwhile; the resumed pull yields exactly the staged rest, once.
    moved_on = [*changed, {"id": 99, "name": "后来", "township": None}]
    rest = pull(store, moved_on, landed.cursor)
    assert column([landed], "id") + column(rest, "id") == list(range(4, 11))
    assert pull(store, moved_on, rest[-1].cursor)[0].batch.column("id").to_pylist() == [99]


def test_a_run_that_dies_before_landing_anything_starts_over_from_the_old_snapshot(
    store: SnapshotStore,
) -> None:
    base = pull(store, people(4), None)[-1].cursor
    gen = snapshot_pull(source(people(9)), base, key=["id"], store=store, batch_size=3, connector="t")
    next(gen)  # yielded, never landed
    gen.close()
    later = [*people(9), {"id": 99, "name": "后来", "township": None}]
    again = pull(store, later, base)
    assert column(again, "id") == [*range(4, 9), 99]
    assert pull(store, later, again[-1].cursor) == []
    current = again[-1].cursor["snapshot"]
    assert {p.name.split(".")[0] for p in store.dir.iterdir()} == {current}  # the dead run's staging went


def test_deletions_alone_come_as_one_empty_batch(store: SnapshotStore) -> None:
    final = pull(store, people(5), None)[-1].cursor
    (only,) = pull(store, people(3), final)
    assert only.batch.num_rows == 0 and only.batch.schema.names == ["id", "name", "township"]
    assert only.deleted is not None and sorted(only.deleted.to_pylist()) == ["3", "4"]
    assert only.changes == {"new": 0, "changed": 0, "deleted": 2}
    assert pull(store, people(3), only.cursor) == []


def test_the_canonical_bytes_are_unambiguous_and_column_order_free() -> None:
    t = pa.table(
        {
            "a": ["x\x1fy", "x", None, "\\N", "", "1"],
            "b": ["z", "y\x1fz", "", "", None, "1"],
        }
    )
    hashes = row_hashes(canonical_text(t, ["a", "b"])).to_pylist()
    assert len(set(hashes)) == 6
    swapped = t.select(["b", "a"])
    assert row_hashes(canonical_text(swapped, ["b", "a"])).to_pylist() == hashes
    typed = pa.table({"n": pa.array([1, None], pa.int64()), "d": pa.array([b"\x00\xff", None])})
    assert canonical_text(typed, ["n", "d"]).to_pylist() == ["00ff\x1f1", "\\N\x1f\\N"]


def test_a_missing_key_column_or_snapshot_file_is_a_clear_error(store: SnapshotStore) -> None:
    with pytest.raises(SourceSchemaChanged, match="snapshot key column"):
        list(snapshot_pull(source(people(3)), None, key=["no"], store=store, batch_size=3, connector="t"))
    with pytest.raises(ConfigurationError, match="snapshot 123 named by the cursor is missing"):
        pull(store, people(3), {"snapshot": "123"})


def test_the_files_connector_in_snapshot_mode(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()

    def export(rows: list[tuple[str, str]]) -> None:
        path = drop / "full-export.csv"
        path.write_bytes(("证号,姓名\n" + "".join(f"{k},{v}\n" for k, v in rows)).encode("gbk"))
        os.utime(path, (time.time() - 10, time.time() - 10))

    reg = registration(
        "files",
        path=str(drop),
        settle_seconds=0,
        change_detection="snapshot",
        key=["证号"],
        snapshot_dir=str(tmp_path / "snap"),
    )
    export([("A1", "张三"), ("A2", "李四"), ("A3", "王五")])
    assert connector(reg).sample(2).column("证号").to_pylist() == ["A1", "A2"]
    assert not (tmp_path / "snap").exists()  # a sample stages no snapshot
    first = drain(connector(reg), None, batch_size=2)
    assert column(first, "证号") == ["A1", "A2", "A3"]
    export([("A1", "张三"), ("A2", "李四改"), ("A4", "赵六")])  # the same file, overwritten
    second = drain(connector(reg), first[-1].cursor)
    assert column(second, "证号") == ["A2", "A4"] and second[-1].deleted is not None
    assert second[-1].deleted.to_pylist() == ["A3"] and counts(second) == {
        "new": 1,
        "changed": 1,
        "deleted": 1,
    }
    assert drain(connector(reg), second[-1].cursor) == []
    with pytest.raises(ConfigurationError, match="change_detection: snapshot needs key"):
        connector(registration("files", path=str(drop), change_detection="snapshot"))
    with pytest.raises(ConfigurationError, match="archive cannot be used with change_detection"):
        connector(registration("files", path=str(drop), change_detection="snapshot", key=["a"], archive="x"))


def test_a_key_held_twice_is_not_changed_on_every_run(store: SnapshotStore) -> None:
    rows = [*people(3), {"id": 1, "name": "重复", "township": None}]  # id 1 twice, different rows
    first = pull(store, rows, None)
    assert column(first, "id") == [0, 1, 2, 1]
    assert pull(store, rows, first[-1].cursor) == []
    edited = [*rows[:3], {"id": 1, "name": "重复改", "township": None}]
    assert column(pull(store, edited, first[-1].cursor), "name") == ["重复改"]


def test_the_digest_set_answers_membership_exactly_even_when_first_halves_collide() -> None:
    def digest(hi: int, lo: int) -> bytes:
        return hi.to_bytes(8, "little") + lo.to_bytes(8, "little")

    # Three digests share their first half; one is held twice (a row the source holds twice).
    known = [digest(7, 1), digest(7, 3), digest(7, 5), digest(9, 2), digest(9, 2), digest(1, 0)]
    digests = DigestSet(pa.array(known, pa.binary(16)))
    asked = [digest(7, 3), digest(7, 4), digest(9, 2), digest(1, 0), digest(2, 0), digest(0, 0), digest(7, 5)]
    sliced = pa.array([digest(5, 5), *asked], pa.binary(16)).slice(1)  # an offset into the buffer
    assert digests.contains(sliced).tolist() == [True, False, True, True, False, False, True]
    assert DigestSet(pa.array([], pa.binary(16))).contains(sliced).tolist() == [False] * 7
    assert len(digests) == 6


def test_previous_keys_are_seen_exactly_even_when_first_halves_collide(tmp_path: Path) -> None:
    def digest(hi: int, lo: int) -> bytes:
        return hi.to_bytes(8, "little") + lo.to_bytes(8, "little")

    # The state file's keys and (forced) digests, in file order; "d" is held twice.
    keys = ["a", "b", "c", "d", "d"]
    digests = [digest(7, 1), digest(7, 3), digest(9, 2), digest(1, 0), digest(1, 0)]
    pq.write_table(pa.table({"key": keys}), tmp_path / "state.parquet")
    previous = _PreviousKeys(pa.array(digests, pa.binary(16)))
    asked = pa.array([digest(5, 5), digest(7, 3), digest(1, 0), digest(7, 4)], pa.binary(16)).slice(1)
    assert previous.contains(asked).tolist() == [True, True, False]
    previous.mark_seen(asked)
    assert previous.unseen(pq.ParquetFile(tmp_path / "state.parquet")).to_pylist() == ["a", "c"]


def test_new_changed_and_deleted_are_exact_over_a_previous_snapshot_of_many_slices(
    store: SnapshotStore,
) -> None:
    n = 70_000  # the previous state file is read back 65,536 keys at a time

    def table(ids: list[int], names: list[str]) -> Callable[[], Iterator[pa.RecordBatch]]:
        whole = pa.table({"id": pa.array(ids, pa.int64()), "name": pa.array(names)})
        return lambda: iter(whole.to_batches(max_chunksize=30_000))

    def pulled(read: Callable[[], Iterator[pa.RecordBatch]], cursor: Cursor | None) -> list[Pulled]:
        return list(snapshot_pull(read, cursor, key=["id"], store=store, batch_size=50_000, connector="t"))

    ids = list(range(n))
    first = pulled(table(ids, [f"名{i}" for i in ids]), None)
    assert counts(first) == {"new": n, "changed": 0, "deleted": 0}
    gone = {5, 65_540, n - 1}
    kept = [i for i in ids if i not in gone] + [n]  # and one new
    names = [("改" if i == 7 else "") + f"名{i}" for i in kept]
    second = pulled(table(kept, names), first[-1].cursor)
    assert column(second, "id") == [7, n]
    assert counts(second) == {"new": 1, "changed": 1, "deleted": 3}
    assert second[-1].deleted is not None and second[-1].deleted.to_pylist() == ["5", "65540", str(n - 1)]


def test_a_zoned_timestamp_is_hashed_as_its_utc_instant() -> None:
    instant = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
    shanghai = pa.table({"t": pa.array([instant, None], pa.timestamp("us", tz="Asia/Shanghai"))})
    utc = pa.table({"t": pa.array([instant, None], pa.timestamp("us", tz="UTC"))})
    assert canonical_text(shanghai, ["t"]).to_pylist() == ["2026-01-01 08:00:00.000000Z", "\\N"]
    assert row_hashes(canonical_text(shanghai, ["t"])) == row_hashes(canonical_text(utc, ["t"]))


@given(
    known=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), max_size=40),
    asked=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 4)), max_size=40),
)
@settings(max_examples=300, deadline=None)
def test_digest_lookups_agree_with_a_python_set(
    tmp_path_factory: pytest.TempPathFactory, known: list[tuple[int, int]], asked: list[tuple[int, int]]
) -> None:
    """Few first halves and few second halves: many collisions, keys held twice, none at all."""

    def digest(pair: tuple[int, int]) -> bytes:
        return pair[0].to_bytes(8, "little") + pair[1].to_bytes(8, "little")

    known_digests = pa.array([digest(p) for p in known], pa.binary(16))
    asked_digests = pa.array([digest(p) for p in asked], pa.binary(16))
    assert DigestSet(known_digests).contains(asked_digests).tolist() == [p in set(known) for p in asked]
    state = tmp_path_factory.mktemp("state") / "state.parquet"
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(len(known))]}), state)
    previous = _PreviousKeys(known_digests)
    previous.mark_seen(asked_digests)
    unseen = [f"k{i}" for i, p in enumerate(known) if p not in set(asked)]
    assert previous.unseen(pq.ParquetFile(state)).to_pylist() == unseen
