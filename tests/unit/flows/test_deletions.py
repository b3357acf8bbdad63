"""Snapshot keys reported deleted map to certificate record keys; pending deletions are durable."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from connectors.snapshot import canonical_text
from flows.deletions import PendingDeletions, deletion_reason, record_keys
from onceonly.errors import ConfigurationError


def test_snapshot_keys_become_record_keys_in_contract_order() -> None:
    table = pa.table(
        {
            "zone": ["A", "B\\x", "C\x1fD", None],
            "cert_no": ["J1", "J|2", "J3", "J4"],
        }
    )
    snapshot = canonical_text(table, ["zone", "cert_no"])  # sorted by name: cert_no, zone
    keys = record_keys(snapshot, ["zone", "cert_no"], ["zone", "cert_no"], connector="c")
    assert keys == ["A|J1", "B\\x|J|2", "C\x1fD|J3", "|J4"]
    single = canonical_text(table, ["cert_no"])
    assert record_keys(pa.chunked_array([single]), ["cert_no"], ["cert_no"], connector="c") == [
        "J1",
        "J|2",
        "J3",
        "J4",
    ]


def test_a_snapshot_key_other_than_the_primary_key_is_refused_naming_the_connector() -> None:
    with pytest.raises(ConfigurationError, match=r"minzheng-marriages.*primary key"):
        record_keys(pa.array(["x"]), ["name"], ["cert_no"], connector="minzheng-marriages")


def test_pending_deletions_survive_until_done(tmp_path: Path) -> None:
    pending = PendingDeletions(tmp_path / "deletions", "conn")
    assert pending.batches() == []
    pending.stage("b1", ["k1", "k2"])
    pending.stage("b2", [])
    again = PendingDeletions(tmp_path / "deletions", "conn")  # another process, later
    assert sorted(again.batches()) == ["b1", "b2"]
    assert again.keys("b1") == ["k1", "k2"] and again.keys("b2") == []
    again.done("b1")
    again.done("b1")
    assert pending.batches() == ["b2"]
    assert not list((tmp_path / "deletions" / "conn").glob("*.tmp"))


def test_the_reason_names_connector_and_batch() -> None:
    reason = deletion_reason("minzheng-marriages", "0123456789abcdef0123")
    assert "minzheng-marriages" in reason and "0123456789abcdef" in reason and "deleted" in reason
