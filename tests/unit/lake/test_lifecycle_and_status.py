"""Lifecycle changes and status lists on a real catalog, after real landings.

Each change is a new ``lifecycle`` log leaf; the catalog's status, its history and the
signed status list all say the same thing within the same transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from landing_harness import ORIGIN, TODAY, Harness, household_row

from catalog import certificate_events, certificates, log_leaves, township_extracts
from evidence.bundle import export_bundle, verify_bundle
from evidence.canonical import canonical_json
from evidence.keys import SigningKey
from evidence.lifecycle import Lifecycle, LifecycleError, history
from evidence.log import KIND_LIFECYCLE, TransparencyLog, log_entry
from evidence.merkle import leaf_hash
from evidence.note import parse_vkey
from evidence.status_list import (
    LIST_SIZE,
    STATE_SUPERSEDED,
    open_status_list,
    publish_status_lists,
    stored_list,
    write_status_files,
)
from onceonly.errors import EvidenceError

ROWS = [household_row(i) for i in range(1, 5)]
C1, C2 = {"page": 1}, {"page": 2}


def _certs(harness: Harness) -> dict[str, Any]:
    rows = harness.all(sa.select(certificates).where(certificates.c.version == 1))
    return {r.holder_id: r for r in rows}


def _state(harness: Harness, cert_id: str) -> str:
    with harness.catalog.begin() as conn:
        entry = conn.execute(sa.select(certificates).where(certificates.c.cert_id == cert_id)).one()
        published = stored_list(conn, entry.issuer_code, entry.list_no)
    assert published is not None
    status = open_status_list(json.loads(json.dumps(published.to_json())), parse_vkey(harness.key.vkey))
    return status.state(int(entry.status_index))


def _change(harness: Harness, cert_id: str, action: str, reason: str = "counter decision") -> None:
    with harness.catalog.begin() as conn:
        Lifecycle(harness.log).change(conn, cert_id, action, reason=reason)
        publish_status_lists(conn, harness.log)


def test_each_certificate_gets_a_random_status_entry_written_into_its_leaf(harness: Harness) -> None:
    harness.land(ROWS, before=None, after=C1)
    rows = harness.all(sa.select(certificates))
    entries = {r.cert_id: r for r in rows}
    assert len(entries) == len(rows) == 4
    indices = [int(e.status_index) for e in entries.values()]
    assert len(set(indices)) == 4 and all(0 <= i < LIST_SIZE for i in indices)
    assert indices != sorted(indices) or max(indices) > 4  # not handed out in order
    for r in rows:
        body = json.loads(harness.body(r.leaf_index))
        assert body["credential_status"] == {
            "issuer": entries[r.cert_id].issuer_code,
            "list": entries[r.cert_id].list_no,
            "index": int(entries[r.cert_id].status_index),
        }


def test_suspend_restore_revoke_each_log_a_new_leaf_and_show_in_the_status_list(harness: Harness) -> None:
    harness.land(ROWS, before=None, after=C1)
    cert = _certs(harness)[ROWS[0]["person_id"]]
    with harness.catalog.begin() as conn:
        first = publish_status_lists(conn, harness.log)
    assert len(first) == 1 and _state(harness, cert.cert_id) == "有效"
    leaves_before = len(harness.leaves())

    _change(harness, cert.cert_id, "suspend", f"under investigation, applicant {ROWS[0]['person_id']}")
    assert _state(harness, cert.cert_id) == "暂扣"
    _change(harness, cert.cert_id, "restore")
    assert _state(harness, cert.cert_id) == "有效"
    _change(harness, cert.cert_id, "revoke")
    assert _state(harness, cert.cert_id) == "撤销"

    # three lifecycle leaves and three republished lists; the certificate's own leaf untouched
    stored = harness.leaves()
    assert [leaf.kind for leaf in stored[leaves_before:]] == [
        "checkpoint",
        "lifecycle",
        "checkpoint",
        "status-list",
    ] * 3
    assert stored[cert.leaf_index].ref == cert.cert_id
    certificate_leaf = stored[cert.leaf_index]
    assert certificate_leaf.entry is not None and certificate_leaf.leaf_hash == leaf_hash(
        certificate_leaf.entry
    )
    assert json.loads(harness.body(cert.leaf_index))["status"] == "有效"  # as issued: never edited
    with harness.catalog.begin() as conn:
        changes = history(conn, cert.cert_id)
    assert [(c.action, c.status_before, c.status_after) for c in changes] == [
        ("suspend", "有效", "暂扣"),
        ("restore", "暂扣", "有效"),
        ("revoke", "有效", "撤销"),
    ]
    assert ROWS[0]["person_id"] not in changes[0].reason  # the log is published: IDs masked
    # the lifecycle leaf is the RFC 8785 JSON of the change, as stored for verification
    leaf = harness.all(sa.select(log_leaves).where(log_leaves.c.leaf_index == changes[0].leaf_index))[0]
    assert leaf.kind == "lifecycle" and leaf.ref == cert.cert_id
    entry = json.loads(bytes(leaf.entry)) if getattr(leaf, "entry", None) is not None else None
    if entry is not None:
        assert leaf_hash(canonical_json(entry)) == bytes(leaf.leaf_hash)
        assert (entry["action"], entry["status"], entry["status_before"]) == ("suspend", "暂扣", "有效")
        # written through the log's entry API, like batch receipts and uses
        assert (entry["schema"], entry["kind"]) == ("onceonly-log-entry/1", "lifecycle")
        assert (
            canonical_json(entry)
            == log_entry(
                "lifecycle", cert.cert_id, {k: v for k, v in entry.items() if k not in ("schema", "kind")}
            )[0]
        )

    # a revoked certificate cannot be restored or suspended
    other = _certs(harness)[ROWS[1]["person_id"]].cert_id
    with pytest.raises(LifecycleError, match="is 撤销; restore"), harness.catalog.begin() as conn:
        Lifecycle(harness.log).change(conn, cert.cert_id, "restore", reason="mistake")
    with pytest.raises(LifecycleError, match="a reason is required"), harness.catalog.begin() as conn:
        Lifecycle(harness.log).change(conn, other, "suspend", reason=" ")
    with pytest.raises(LifecycleError, match="no certificate"), harness.catalog.begin() as conn:
        Lifecycle(harness.log).change(conn, "1.2.156.3005.2.nope", "suspend", reason="x")
    # the others are untouched
    assert _state(harness, other) == "有效"


def test_a_change_marks_the_township_extract_stale(harness: Harness) -> None:
    harness.land(ROWS, before=None, after=C1)
    cert = _certs(harness)[ROWS[0]["person_id"]]
    generation = {r.township: r.generation for r in harness.all(sa.select(township_extracts))}
    _change(harness, cert.cert_id, "suspend")
    after = {r.township: r.generation for r in harness.all(sa.select(township_extracts))}
    assert after[cert.township] == generation[cert.township] + 1


def test_publishing_an_unchanged_list_logs_nothing(harness: Harness) -> None:
    harness.land(ROWS, before=None, after=C1)
    with harness.catalog.begin() as conn:
        assert len(publish_status_lists(conn, harness.log)) == 1
    size = harness.count(log_leaves)
    with harness.catalog.begin() as conn:
        assert publish_status_lists(conn, harness.log) == []
    assert harness.count(log_leaves) == size


def test_expire_pass_and_cancel_for_deleted(harness: Harness) -> None:
    harness.land(ROWS, before=None, after=C1)
    certs = _certs(harness)
    expiring = certs[ROWS[0]["person_id"]]
    with harness.catalog.begin() as conn:
        conn.execute(
            sa.update(certificates)
            .where(certificates.c.cert_id == expiring.cert_id)
            .values(valid_to=TODAY - dt.timedelta(days=1))
        )
    lifecycle = Lifecycle(harness.log)
    with harness.catalog.begin() as conn:
        assert lifecycle.expire_due(conn, TODAY) == 1
        assert lifecycle.expire_due(conn, TODAY) == 0  # once
        cancelled = lifecycle.cancel_for_deleted(conn, "household", [ROWS[1]["person_id"], "no-such-key"])
        assert lifecycle.cancel_for_deleted(conn, "household", [ROWS[1]["person_id"]]) == []
        publish_status_lists(conn, harness.log)
    expired = harness.all(sa.select(certificate_events).where(certificate_events.c.status_after == "失效"))
    assert [e.cert_id for e in expired] == [expiring.cert_id]
    assert [c.cert_id for c in cancelled] == [certs[ROWS[1]["person_id"]].cert_id]
    assert _state(harness, expiring.cert_id) == "失效"
    assert _state(harness, certs[ROWS[1]["person_id"]].cert_id) == "注销"
    assert harness.count(certificate_events) == 2


@pytest.mark.parametrize("slice_size", [2, 3])  # slices that end with the rows, or one short
def test_the_expire_pass_goes_a_slice_at_a_time_and_misses_none(harness: Harness, slice_size: int) -> None:
    harness.land(ROWS, before=None, after=C1)
    due = sorted(c.cert_id for c in _certs(harness).values())
    _change(harness, due[1], "suspend")  # 暂扣 is in force too: it expires
    with harness.catalog.begin() as conn:
        conn.execute(sa.update(certificates).values(valid_to=TODAY - dt.timedelta(days=1)))
    with harness.catalog.begin() as conn, pytest.raises(ValueError, match="slice_size"):
        Lifecycle(harness.log).expire_due(conn, TODAY, slice_size=0)  # would expire nothing
    with harness.catalog.begin() as conn:
        assert Lifecycle(harness.log).expire_due(conn, TODAY, slice_size=slice_size) == len(due)
    logged = harness.all(sa.select(log_leaves.c.ref).where(log_leaves.c.kind == KIND_LIFECYCLE))
    assert sorted(r.ref for r in logged) == sorted([due[1], *due])  # the suspension, then a leaf each
    with harness.catalog.begin() as conn:
        publish_status_lists(conn, harness.log)
    assert all(_state(harness, cert_id) == "失效" for cert_id in due)
    expired = harness.all(sa.select(certificate_events).where(certificate_events.c.status_after == "失效"))
    assert sorted(e.cert_id for e in expired) == due  # each once


def test_a_superseded_version_reads_superseded_and_cancel_hits_only_the_newest(harness: Harness) -> None:
    harness.land(ROWS, before=None, after=C1)
    old = _certs(harness)[ROWS[2]["person_id"]]
    changed = [dict(r) for r in ROWS]
    changed[2]["address"] = "天津市武清区杨村街道新华路1号"
    harness.land(changed, before=C1, after=C2)
    with harness.catalog.begin() as conn:
        publish_status_lists(conn, harness.log)
    assert _state(harness, old.cert_id) == STATE_SUPERSEDED
    new = harness.all(sa.select(certificates).where(certificates.c.previous_id == old.cert_id))[0]
    assert _state(harness, new.cert_id) == "有效"
    with harness.catalog.begin() as conn:
        cancelled = Lifecycle(harness.log).cancel_for_deleted(conn, "household", [ROWS[2]["person_id"]])
    assert [c.cert_id for c in cancelled] == [new.cert_id]


def test_status_files_are_written_for_townships(harness: Harness, tmp_path: Any) -> None:
    harness.land(ROWS, before=None, after=C1)
    with harness.catalog.begin() as conn:
        publish_status_lists(conn, harness.log)
    written = write_status_files(harness.catalog, tmp_path / "status")
    assert len(written) == 1
    published = json.loads(written[0].read_text(encoding="utf-8"))
    status = open_status_list(published, parse_vkey(harness.key.vkey))
    assert status.issuer in written[0].name and status.leaf_index == published["leaf_index"]


def test_a_renewal_does_not_lift_a_suspension(harness: Harness) -> None:
    harness.land(ROWS, before=None, after=C1)
    old = _certs(harness)[ROWS[3]["person_id"]]
    _change(harness, old.cert_id, "suspend", "under investigation")
    changed = [dict(r) for r in ROWS]
    changed[3]["address"] = "天津市武清区杨村街道新华路9号"
    landed = harness.land(changed, before=C1, after=C2)
    new = harness.all(sa.select(certificates).where(certificates.c.previous_id == old.cert_id))[0]
    assert (new.version, new.status) == (2, "暂扣")
    assert landed.tree_size == len(harness.leaves())
    with harness.catalog.begin() as conn:
        publish_status_lists(conn, harness.log)
        (carried,) = history(conn, new.cert_id)
    assert (carried.action, carried.status_before, carried.status_after) == ("suspend", "有效", "暂扣")
    assert _state(harness, new.cert_id) == "暂扣" and _state(harness, old.cert_id) == "暂扣"
    _change(harness, new.cert_id, "restore", "investigation closed")
    assert _state(harness, new.cert_id) == "有效"


def test_after_a_key_rotation_lists_are_signed_again_and_bundles_name_the_signer(harness: Harness) -> None:
    harness.land(ROWS, before=None, after=C1)
    cert_id = _certs(harness)[ROWS[0]["person_id"]].cert_id
    with harness.catalog.begin() as conn:
        publish_status_lists(conn, harness.log)
    old_key, new_key = harness.key, SigningKey.generate(ORIGIN)
    rotated = TransparencyLog(new_key, ORIGIN)
    keyring = [new_key.vkey, old_key.vkey]
    with harness.catalog.begin() as conn:
        # nothing appended since the rotation: the newest checkpoint is the old key's
        bundle, _ = export_bundle(conn, cert_id, keyring)
        assert bundle["public_key"] == old_key.vkey
        # something appended by the new key, the list not yet re-signed: its key ships too
        rotated.append(conn, [(b"{}", "use", "x")])
        bundle, _ = export_bundle(conn, cert_id, keyring)
        assert (bundle["public_key"], bundle["status_list_key"]) == (new_key.vkey, old_key.vkey)
        assert verify_bundle(json.loads(json.dumps(bundle)), trusted_vkey=new_key.vkey).status == "有效"
        # a key the caller does not know signed the list: say so
        with pytest.raises(EvidenceError, match=r"status list .* signed by none of the known keys"):
            export_bundle(conn, cert_id, [new_key.vkey])
        # the list's bits did not change, but it is signed again by the new key
        assert len(publish_status_lists(conn, rotated)) == 1
        assert publish_status_lists(conn, rotated) == []
        bundle, _ = export_bundle(conn, cert_id, keyring)
    assert bundle["public_key"] == new_key.vkey
    assert verify_bundle(json.loads(json.dumps(bundle)), trusted_vkey=new_key.vkey).status == "有效"
