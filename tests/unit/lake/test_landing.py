"""Landing: Parquet files, then one catalog transaction — exactly once, whatever happens."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from landing_harness import (
    HOUSEHOLD,
    MARRIAGE,
    ORIGIN,
    TODAY,
    TOWNSHIPS,
    Harness,
    citizen_id,
    household_row,
    marriage_row,
    validate,
)

from catalog import (
    batches,
    certificates,
    checkpoints,
    connector_state,
    log_bundles,
    log_head,
    log_leaves,
    quarantine,
    serials,
)
from connectors.state import cursor_of
from evidence.bundle import certificate_leaf_bytes, export_bundle, verify_bundle
from evidence.certificate import STATUS_SUPERSEDED, STATUS_VALID
from evidence.identifier import CertificateId
from evidence.log import Appended, TransparencyLog, latest_checkpoint, tree_size, verify_log
from evidence.merkle import leaf_hash, root
from evidence.note import Checkpoint, open_note, parse_vkey
from evidence.status_list import publish_status_lists
from lake.landing import Lander, batch_id_for, content_digest
from lake.parquet import ParquetLake
from onceonly.errors import EvidenceError, VerificationFailed

GOOD = [household_row(i) for i in range(1, 7)]
BAD_CHECK = household_row(7, person_id=citizen_id(7)[:17] + ("0" if citizen_id(7)[17] != "0" else "1"))
BAD_TOWNSHIP = household_row(8, township_code="120114999000")
C0, C1, C2, C3 = ({"updated_at": f"2026-11-2{i}T00:00:00"} for i in range(4))
CATALOG_TABLES = (
    batches,
    certificates,
    log_leaves,
    log_bundles,
    checkpoints,
    quarantine,
    connector_state,
    serials,
)


def _counts(h: Harness) -> dict[str, int]:
    return {t.name: h.count(t) for t in CATALOG_TABLES}


def _certs(h: Harness) -> dict[str, Any]:
    return {r.holder_id: r for r in h.all(sa.select(certificates).order_by(certificates.c.leaf_index))}


def _leaf_hashes(h: Harness) -> list[bytes]:
    stored = h.leaves()
    assert [leaf.index for leaf in stored] == list(range(len(stored))), (
        "leaf indices must be contiguous from 0"
    )
    return [leaf.leaf_hash for leaf in stored]


def _accepted_files(lake_dir: Path, dataset: str = "household") -> list[str]:
    base = lake_dir / "accepted" / f"dataset={dataset}"
    return sorted(str(p.relative_to(base)) for p in base.rglob("*.parquet"))


def assert_log_is_sound(h: Harness) -> None:
    """Every certificate is the leaf at its index; every checkpoint is signed and right."""
    hashes = _leaf_hashes(h)
    certs = h.all(sa.select(certificates.c.leaf_index, certificates.c.cert_id))
    stored = {leaf.index: leaf for leaf in h.leaves()}
    kinds = {index: leaf.kind for index, leaf in stored.items()}
    assert sorted(c.leaf_index for c in certs) == sorted(i for i, k in kinds.items() if k == "certificate")
    # besides certificates, one receipt per landed batch, and a leaf logging the checkpoint
    # before each landing after the first; nothing else
    assert sum(k == "batch-receipt" for k in kinds.values()) == h.count(batches)
    assert sum(k == "checkpoint" for k in kinds.values()) == h.count(batches) - 1
    assert set(kinds.values()) <= {"certificate", "batch-receipt", "checkpoint"}
    with h.catalog.read() as conn:
        verify_log(conn, parse_vkey(h.key.vkey))
    for c in certs:
        leaf = stored[c.leaf_index]
        assert leaf.ref == c.cert_id and leaf.entry is not None
        assert hashes[c.leaf_index] == leaf_hash(leaf.entry)
    verifier = parse_vkey(h.key.vkey)
    for cp in h.all(sa.select(checkpoints)):
        checkpoint = Checkpoint.parse(open_note(cp.note, verifier))
        assert checkpoint.origin == ORIGIN
        assert checkpoint.size == cp.tree_size
        assert checkpoint.root_hash == bytes(cp.root_hash) == root(hashes[: cp.tree_size])


def test_a_validated_batch_lands_with_certificates_log_and_cursor(harness: Harness) -> None:
    landed = harness.land([*GOOD, BAD_CHECK, BAD_TOWNSHIP], before=None, after=C1)

    assert (landed.pulled, landed.accepted, landed.quarantined, landed.certificates) == (8, 6, 2, 6)
    assert landed.tree_size == 7 and not landed.already_landed  # 6 certificates and the receipt
    assert landed.townships == frozenset(TOWNSHIPS)
    digest = content_digest(pa.Table.from_pylist([*GOOD, BAD_CHECK, BAD_TOWNSHIP]))
    assert landed.batch_id == batch_id_for("gongan-household", None, digest)

    # the batch row
    (batch,) = harness.all(sa.select(batches))
    assert (batch.batch_id, batch.accepted, batch.quarantined, batch.certificates) == (
        landed.batch_id,
        6,
        2,
        6,
    )
    assert batch.cursor_before is None and batch.cursor_after == C1 and batch.tree_size == 7

    # quarantine: the subject in clear (to answer skip-checks), personal values masked
    rows = {(q.rule, q.subject_id, q.record_key, q.value_masked) for q in harness.all(sa.select(quarantine))}
    bad_id = BAD_CHECK["person_id"]
    assert (
        "person_id.gb11643_citizen_id",
        bad_id,
        bad_id,
        bad_id[:6] + "********" + bad_id[-4:],
    ) in rows
    assert (
        "township_code.region_code",
        BAD_TOWNSHIP["person_id"],
        BAD_TOWNSHIP["person_id"],
        "120114999000",
    ) in rows
    assert all(q.severity == "error" and q.resolved_at is None for q in harness.all(sa.select(quarantine)))

    # one certificate per accepted row, in force, in the log
    certs = _certs(harness)
    assert set(certs) == {r["person_id"] for r in GOOD}
    for row in GOOD:
        c = certs[row["person_id"]]
        assert (c.status, c.version, c.previous_id, c.township) == (
            STATUS_VALID,
            1,
            None,
            row["township_code"],
        )
        assert c.issue_date == TODAY and c.valid_from.isoformat() == "2000-01-01" and c.valid_to is None
        body = json.loads(harness.body(c.leaf_index))
        assert body["id"] == c.cert_id and body["holder"]["id"] == row["person_id"]
        assert body["source"] == {"dataset": "household", "contract": HOUSEHOLD.ref, "batch": landed.batch_id}
        assert CertificateId.parse(c.cert_id).version == 1
    assert len({c.serial for c in certs.values()}) == 6

    # the log: one leaf per certificate, the batch's receipt, and a signed checkpoint over them
    assert len(harness.leaves()) == 7 and harness.count(certificates) == 6
    with harness.catalog.begin() as conn:
        head = latest_checkpoint(conn)
        assert tree_size(conn) == 7
    assert head is not None and head[0] == 7
    checkpoint = Checkpoint.parse(open_note(head[1], parse_vkey(harness.key.vkey)))
    assert checkpoint.size == 7 and checkpoint.root_hash == root(_leaf_hashes(harness))
    assert_log_is_sound(harness)

    # the connector's cursor moved
    with harness.catalog.begin() as conn:
        assert cursor_of(conn, "gongan-household") == C1
    (state,) = harness.all(sa.select(connector_state))
    assert (state.dataset, state.rows_pulled, state.last_status) == ("household", 8, "ok")

    # Parquet: accepted rows partitioned by township, quarantined rows beside them
    assert _accepted_files(harness.lake_dir) == [
        f"township_code={t}/{landed.batch_id}-0.parquet" for t in sorted(TOWNSHIPS)
    ]
    for t in TOWNSHIPS:
        part = pq.read_table(
            harness.lake_dir
            / "accepted"
            / "dataset=household"
            / f"township_code={t}"
            / f"{landed.batch_id}-0.parquet"
        )
        assert sorted(part.column("person_id").to_pylist()) == sorted(
            r["person_id"] for r in GOOD if r["township_code"] == t
        )
    lake_rows = harness.lake.read_accepted("household")
    assert lake_rows.num_rows == 6
    assert set(lake_rows.column("township_code").to_pylist()) == set(TOWNSHIPS)
    quarantined = pq.read_table(
        harness.lake_dir / "quarantine" / "dataset=household" / f"{landed.batch_id}.parquet"
    )
    assert sorted(quarantined.column("person_id").to_pylist()) == sorted([bad_id, BAD_TOWNSHIP["person_id"]])


def test_landing_the_same_batch_again_adds_nothing(harness: Harness) -> None:
    first = harness.land([*GOOD, BAD_CHECK], before=None, after=C1)
    counts = _counts(harness)
    files = _accepted_files(harness.lake_dir)

    again = harness.land([*GOOD, BAD_CHECK], before=None, after=C1)

    assert again.already_landed and again.batch_id == first.batch_id
    assert again.certificates == 0 and again.tree_size is None
    assert _counts(harness) == counts
    assert _accepted_files(harness.lake_dir) == files


def test_the_same_records_in_a_new_batch_issue_no_certificates(harness: Harness) -> None:
    harness.land(GOOD, before=None, after=C1)
    before = _counts(harness)

    landed = harness.land(GOOD, before=C1, after=C2)

    # no certificate, but the batch's receipt is logged under its own checkpoint (after the leaf
    # logging the checkpoint before it)
    assert not landed.already_landed and landed.certificates == 0 and landed.tree_size == 9
    assert landed.townships == frozenset()
    after = _counts(harness)
    grown = ("batches", "log_leaves", "checkpoints")
    assert [after[t] - before[t] for t in grown] == [1, 2, 1]
    assert {k: v for k, v in after.items() if k not in grown} == {
        k: v for k, v in before.items() if k not in grown
    }
    assert_log_is_sound(harness)
    with harness.catalog.begin() as conn:
        assert cursor_of(conn, "gongan-household") == C2


def test_a_changed_record_is_renewed_once_as_version_2(harness: Harness) -> None:
    harness.land(GOOD, before=None, after=C1)
    old = _certs(harness)[GOOD[2]["person_id"]]
    changed = [dict(r) for r in GOOD]
    changed[2]["address"] = "天津市武清区杨村街道新华路1号"

    landed = harness.land(changed, before=C1, after=C2)

    assert landed.certificates == 1 and landed.tree_size == 10  # 6 + receipt, checkpoint, 1 + receipt
    assert landed.townships == frozenset({GOOD[2]["township_code"]})
    rows = harness.all(
        sa.select(certificates)
        .where(certificates.c.holder_id == GOOD[2]["person_id"])
        .order_by(certificates.c.version)
    )
    assert [(r.cert_id, r.version, r.status) for r in rows] == [
        (old.cert_id, 1, STATUS_SUPERSEDED),
        (rows[1].cert_id, 2, STATUS_VALID),
    ]
    new = rows[1]
    assert new.previous_id == old.cert_id and new.leaf_index == 8  # after 6, a receipt, a checkpoint
    body = json.loads(harness.body(new.leaf_index))
    assert body["previous"] == old.cert_id and body["version"] == 2
    assert body["fields"]["address"] == "天津市武清区杨村街道新华路1号"
    # GB/T 36904: a new version of the same certificate keeps its serial
    old_id, new_id = CertificateId.parse(old.cert_id), CertificateId.parse(new.cert_id)
    assert new_id == old_id.with_version(2)
    # the other five are untouched and still in force
    assert sum(1 for r in harness.all(sa.select(certificates.c.status)) if r.status == STATUS_VALID) == 6
    assert_log_is_sound(harness)

    # the changed record seen again: nothing; changed back: version 3
    assert harness.land(changed, before=C2, after=C3).certificates == 0
    assert harness.land(GOOD, before=C3, after=C0).certificates == 1
    versions = harness.all(
        sa.select(certificates.c.version, certificates.c.status, certificates.c.previous_id)
        .where(certificates.c.holder_id == GOOD[2]["person_id"])
        .order_by(certificates.c.version)
    )
    assert [(v.version, v.status) for v in versions] == [(1, "失效"), (2, "失效"), (3, "有效")]
    assert versions[2].previous_id == new.cert_id
    assert_log_is_sound(harness)


def test_an_over_long_bad_value_is_quarantined_not_fatal(harness: Harness) -> None:
    garbage = "1" * 80  # whatever the source sends must not stop the batch (VARCHAR limits)
    landed = harness.land([GOOD[0], household_row(50, person_id=garbage)], before=None, after=C1)

    assert (landed.accepted, landed.quarantined, landed.certificates) == (1, 1, 1)
    subjects = {q.subject_id for q in harness.all(sa.select(quarantine))}
    assert subjects == {garbage[:64]}


def test_a_marriage_issues_one_certificate_to_each_spouse(harness: Harness) -> None:
    rows = [marriage_row(1), marriage_row(2), marriage_row(3, wife_id=citizen_id(103))]  # 3: one ID twice
    landed = harness.land(rows, before=None, after=C1, compiled=MARRIAGE, connector="minzheng-marriage")

    assert (landed.accepted, landed.quarantined, landed.certificates) == (3, 0, 5)
    issued = {(c.record_key, c.holder_id, c.township) for c in harness.all(sa.select(certificates))}
    assert issued == {
        ("J120114-2025-000001", citizen_id(101), TOWNSHIPS[0]),
        ("J120114-2025-000001", citizen_id(201, birth="19920101"), TOWNSHIPS[1]),
        ("J120114-2025-000002", citizen_id(102), TOWNSHIPS[0]),
        ("J120114-2025-000002", citizen_id(202, birth="19920101"), TOWNSHIPS[1]),
        ("J120114-2025-000003", citizen_id(103), TOWNSHIPS[0]),
    }
    assert_log_is_sound(harness)
    assert _accepted_files(harness.lake_dir, "marriage") == [
        f"husband_township={TOWNSHIPS[0]}/{landed.batch_id}-0.parquet"
    ]


class ExplodingLog(TransparencyLog):
    """A log whose append fails after the certificates were computed, as a full disk would."""

    def append(self, conn: Any, entries: Sequence[tuple[bytes, str, str]]) -> Appended:
        raise RuntimeError("disk full")

    def append_certificates(
        self,
        conn: Any,
        refs: pa.Array,
        entries: pa.Array,
        then: Sequence[tuple[bytes, str, str]] = (),
        *,
        openings: Any = None,
    ) -> Appended:
        raise RuntimeError("disk full")


def _staged_files(h: Harness, batch_id: str) -> list[str]:
    staged = h.lake.staging_dir("gongan-household", batch_id) / "accepted" / "dataset=household"
    return sorted(str(p.relative_to(staged)) for p in staged.rglob("*.parquet"))


def test_a_failed_landing_changes_nothing_and_the_retry_lands_once(harness: Harness) -> None:
    harness.land(GOOD[:3], before=None, after=C1)
    counts, head = _counts(harness), harness.all(sa.select(log_head.c.tree_size, log_head.c.frontier))
    files = _accepted_files(harness.lake_dir)
    rows = [*GOOD[3:], household_row(20), BAD_CHECK]
    broken = ExplodingLog(harness.key, ORIGIN)

    with pytest.raises(RuntimeError, match="disk full"):
        harness.land(rows, before=C1, after=C2, log=broken)

    # the catalog is exactly as the first batch left it; the cursor has not moved
    assert _counts(harness) == counts
    assert harness.all(sa.select(log_head.c.tree_size, log_head.c.frontier)) == head
    with harness.catalog.begin() as conn:
        assert cursor_of(conn, "gongan-household") == C1
    # and the lake too: the batch's files wait in staging
    assert _accepted_files(harness.lake_dir) == files
    (staged,) = harness.lake.staged("gongan-household")
    staged_files = _staged_files(harness, staged)
    assert len(staged_files) == 3

    landed = harness.land(rows, before=C1, after=C2)

    assert landed.batch_id == staged and not landed.already_landed
    assert landed.certificates == 4 and landed.tree_size == 10  # 3 + receipt, checkpoint, 4 + receipt
    assert _accepted_files(harness.lake_dir) == sorted(files + staged_files), "same names, no duplicates"
    assert harness.lake.staged("gongan-household") == []
    assert harness.lake.read_accepted("household").num_rows == 7
    quarantine_files = sorted((harness.lake_dir / "quarantine" / "dataset=household").iterdir())
    assert [p.name for p in quarantine_files] == [f"{landed.batch_id}.parquet"]
    assert harness.count(certificates) == 7 and len(harness.leaves()) == 10
    assert harness.count(batches) == 2 and harness.count(quarantine) == 1
    with harness.catalog.begin() as conn:
        assert cursor_of(conn, "gongan-household") == C2
    assert_log_is_sound(harness)
    assert harness.land(rows, before=C1, after=C2).already_landed


def test_after_a_failure_other_rows_pulled_leave_no_trace_of_the_first_attempt(harness: Harness) -> None:
    with pytest.raises(RuntimeError, match="disk full"):
        harness.land(GOOD[:3], before=None, after=C1, log=ExplodingLog(harness.key, ORIGIN))
    # the source changed meanwhile: the retry pulls other rows, so it is another batch
    landed = harness.land(GOOD[1:4], before=None, after=C1)

    assert harness.lake.staged("gongan-household") == []
    lake_rows = harness.lake.read_accepted("household")
    assert sorted(lake_rows.column("person_id").to_pylist()) == sorted(r["person_id"] for r in GOOD[1:4])
    assert {name.split("/")[1] for name in _accepted_files(harness.lake_dir)} == {
        f"{landed.batch_id}-0.parquet"
    }


class DyingLake(ParquetLake):
    """A lake whose process dies after the catalog commit, before the files are published."""

    def publish(self, connector: str, batch_id: str) -> None:
        raise KeyboardInterrupt


def test_a_batch_committed_but_not_published_is_published_by_the_next_landing(harness: Harness) -> None:
    dying = Lander(harness.catalog, DyingLake(harness.lake_dir), harness.log, run_id="run-1")
    validation = validate(HOUSEHOLD, GOOD[:3])
    with pytest.raises(KeyboardInterrupt):
        dying.land(
            connector="gongan-household",
            compiled=HOUSEHOLD,
            validation=validation,
            cursor_before=None,
            cursor_after=C1,
            content_sha256="first",
        )
    assert harness.count(batches) == 1 and harness.lake.read_accepted("household").num_rows == 0

    harness.land(GOOD[3:], before=C1, after=C2)

    assert harness.lake.staged("gongan-household") == []
    assert harness.lake.read_accepted("household").num_rows == 6
    assert harness.count(certificates) == 6


def test_a_corrected_record_resolves_its_quarantine_entry(harness: Harness) -> None:
    fixed_later = household_row(30, township_code="120114999000")
    still_bad = household_row(31, township_code="120114999000")
    first = harness.land([*GOOD[:2], fixed_later, still_bad], before=None, after=C1)
    assert first.quarantined == 2 and first.certificates == 2

    # corrected, and now carrying a warning (a registration date in the future)
    corrected = household_row(30, registered_on="2099-01-01")
    second = harness.land([corrected, household_row(32, name=None)], before=C1, after=C2)

    assert second.certificates == 1 and second.warnings == 1
    entries = {(q.record_key, q.rule, q.batch_id): q for q in harness.all(sa.select(quarantine))}
    old = entries[(fixed_later["person_id"], "township_code.region_code", first.batch_id)]
    assert old.resolved_at is not None and old.resolved_by_batch == second.batch_id
    untouched = entries[(still_bad["person_id"], "township_code.region_code", first.batch_id)]
    assert untouched.resolved_at is None and untouched.resolved_by_batch is None
    warning = entries[(fixed_later["person_id"], "registered_on.not_in_future", second.batch_id)]
    assert warning.severity == "warning" and warning.resolved_at is None, "a warning found now stays open"
    new_error = entries[(household_row(32)["person_id"], "name.required", second.batch_id)]
    assert new_error.resolved_at is None
    assert fixed_later["person_id"] in _certs(harness)


def test_a_certificate_row_pointed_at_another_persons_leaf_is_caught(harness: Harness) -> None:
    """Swap two certificate rows' leaves and the ids packed beside the entries: every hash,
    node and checkpoint still holds, but neither export nor `log verify` hands out the wrong
    person's certificate."""
    harness.land(GOOD, before=None, after=C1)
    with harness.catalog.begin() as conn:
        publish_status_lists(conn, harness.log)
        a, b = conn.execute(
            sa.select(certificates.c.cert_id, certificates.c.leaf_index).order_by(certificates.c.leaf_index)
        ).all()[:2]
        (first, blob) = conn.execute(sa.select(log_bundles.c.first_leaf, log_bundles.c.entries)).one()
        table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
        refs = table.column("ref").to_pylist()
        at_a, at_b = a.leaf_index - first, b.leaf_index - first
        refs[at_a], refs[at_b] = refs[at_b], refs[at_a]
        swapped = pa.record_batch(
            [pa.array(refs, pa.string()), table.column("entry").combine_chunks()], schema=table.schema
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_batch(swapped)
        conn.execute(sa.update(log_bundles).values(entries=bytes(sink.getvalue())))
        for cert_id, index in ((a.cert_id, -1), (b.cert_id, a.leaf_index), (a.cert_id, b.leaf_index)):
            conn.execute(
                sa.update(certificates).where(certificates.c.cert_id == cert_id).values(leaf_index=index)
            )
    with harness.catalog.read() as conn:
        with pytest.raises(EvidenceError, match=f"does not hold certificate {b.cert_id}"):
            export_bundle(conn, b.cert_id, harness.key.vkey)
        with pytest.raises(VerificationFailed, match=f"its entry is not certificate {b.cert_id}"):
            verify_log(conn, parse_vkey(harness.key.vkey))


def test_exported_bundles_verify_offline(harness: Harness) -> None:
    harness.land(GOOD[:4], before=None, after=C1)
    harness.land([*GOOD[4:], household_row(40), household_row(41)], before=C1, after=C2)

    with harness.catalog.begin() as conn:
        publish_status_lists(conn, harness.log)
        head = latest_checkpoint(conn)
        assert head is not None
        size = head[0]
        rows = conn.execute(sa.select(certificates.c.cert_id, certificates.c.leaf_index)).all()
        bundles = [export_bundle(conn, r.cert_id, harness.key.vkey)[0] for r in rows]
    assert len(bundles) == 8
    for r, bundle in zip(rows, bundles, strict=True):
        body = harness.body(r.leaf_index)
        assert body == certificate_leaf_bytes(json.loads(body))
        shipped = json.loads(json.dumps(bundle, ensure_ascii=False, indent=2))
        verified = verify_bundle(shipped, trusted_vkey=harness.key.vkey)
        assert verified.certificate_id == bundle["certificate"]["id"] and verified.status == STATUS_VALID
        assert (verified.leaf_index, verified.tree_size, verified.origin) == (r.leaf_index, size, ORIGIN)

    forged = json.loads(json.dumps(bundles[0]))
    forged["certificate"]["holder"]["name"] = "李四"
    with pytest.raises(VerificationFailed, match="not in the checkpoint's log"):
        verify_bundle(forged, trusted_vkey=harness.key.vkey)
    other = type(harness.key).generate("someone.else/log")
    with pytest.raises(VerificationFailed, match="not by the trusted key"):
        verify_bundle(bundles[0], trusted_vkey=other.vkey)
