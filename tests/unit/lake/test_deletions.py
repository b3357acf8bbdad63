"""Snapshot keys reported deleted map to certificate record keys; pending deletions are durable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from connectors.snapshot import canonical_text
from contracts.compiler import CompiledContract, compile_contract
from contracts.model import contract_by_id
from lake.deletions import PendingDeletions, deleted_record_keys, deletion_reason
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings


def _compiled(*key: str) -> CompiledContract:
    marriage = compile_contract(contract_by_id(Settings().contracts_dir, "marriage"))
    return dataclasses.replace(marriage, record_key=key)


def test_snapshot_keys_become_record_keys_in_contract_order() -> None:
    table = pa.table(
        {
            "zone": ["A", "B\\x", "C\x1fD", None],
            "cert_no": ["J1", "J|2", "J3", "J4"],
        }
    )
    snapshot = canonical_text(table, ["zone", "cert_no"])  # sorted by name: cert_no, zone
    two = _compiled("zone", "cert_no")
    keys = deleted_record_keys(snapshot, ["cert_no", "zone"], two, connector="c")
    assert keys == ["A|J1", "B\\x|J|2", "C\x1fD|J3", "|J4"]
    # The same keys the contract gives the rows themselves (certificates.record_key).
    assert keys == pc.fill_null(two.record_keys({c: table.column(c) for c in two.record_key}), "").to_pylist()
    single = canonical_text(table, ["cert_no"])
    one = _compiled("cert_no")
    assert deleted_record_keys(pa.chunked_array([single]), ["cert_no"], one, connector="c") == [
        "J1",
        "J|2",
        "J3",
        "J4",
    ]


def test_a_snapshot_key_other_than_the_primary_key_is_refused_naming_the_connector() -> None:
    with pytest.raises(ConfigurationError, match=r"minzheng-marriages.*primary key"):
        deleted_record_keys(pa.array(["x"]), ["name"], _compiled("cert_no"), connector="minzheng-marriages")


def test_pending_deletions_survive_until_done(tmp_path: Path) -> None:
    pending = PendingDeletions(tmp_path, "conn")
    assert pending.batches() == []
    pending.stage("b1", ["k1", "k2"])
    pending.stage("b2", [])
    again = PendingDeletions(tmp_path, "conn")  # another process, later
    assert sorted(again.batches()) == ["b1", "b2"]
    assert again.keys("b1") == ["k1", "k2"] and again.keys("b2") == []
    again.done("b1")
    again.done("b1")
    assert pending.batches() == ["b2"]
    assert not list((tmp_path / "deletions" / "conn").glob("*.tmp"))


def test_the_reason_names_connector_and_batch() -> None:
    reason = deletion_reason("minzheng-marriages", "0123456789abcdef0123")
    assert "minzheng-marriages" in reason and "0123456789abcdef" in reason and "deleted" in reason
