"""Skip-check answers from what the log commits to, and the audit covers what a batch resolved —
on each catalog database (the demo home's edits, one by one, are in tests/e2e/test_audit_edits.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from landing_harness import HOUSEHOLD, TODAY, Harness, household_row

from catalog import certificate_events, certificates, quarantine, status_lists
from evidence.lifecycle import Lifecycle
from evidence.status_list import publish_status_lists
from lake.audit import audit
from onceonly.errors import ConfigurationError
from onceonly.settings import Settings
from sharing.matters import load_matters
from sharing.skipcheck import skip_check

PENSION = load_matters(Settings().matters_file).get("pension-enrolment")  # 居民户口簿, 居民身份证
ISSUED_BY = {"11100000000019342N001": "household"}
ROWS = [household_row(i) for i in range(1, 4)]


def _issued(harness: Harness) -> tuple[str, str]:
    harness.land(ROWS, before=None, after={"page": 1})
    with harness.catalog.begin() as conn:
        publish_status_lists(conn, harness.log)
    row = harness.all(
        sa.select(certificates.c.cert_id, certificates.c.holder_id).order_by(certificates.c.leaf_index)
    )[0]
    return str(row.cert_id), str(row.holder_id)


def _household(harness: Harness, subject: str, *, verified: bool = True) -> tuple[bool, str]:
    with harness.catalog.read() as conn:
        answer = skip_check(
            conn,
            PENSION,
            subject,
            ISSUED_BY,
            today=TODAY,
            verifiers=[harness.key.verifier] if verified else None,
        )
    material = next(m for m in answer.materials if m.material == "居民户口簿")
    return material.skippable, material.reason


def _set(harness: Harness, table: sa.Table, where: sa.ColumnElement[bool], **values: object) -> None:
    with harness.catalog.begin() as conn:
        conn.execute(sa.update(table).where(where).values(**values))


def test_a_certificate_the_log_confirms_may_be_skipped(harness: Harness) -> None:
    _, holder = _issued(harness)
    assert _household(harness, holder) == (True, "证照有效")


def test_a_revocation_undone_in_the_catalog_grants_no_skip(harness: Harness) -> None:
    cert_id, holder = _issued(harness)
    with harness.catalog.begin() as conn:
        Lifecycle(harness.log).change(conn, cert_id, "revoke", reason="forged")
        publish_status_lists(conn, harness.log)
    _set(harness, certificates, certificates.c.cert_id == cert_id, status="有效")
    with harness.catalog.begin() as conn:
        conn.execute(sa.delete(certificate_events).where(certificate_events.c.cert_id == cert_id))
    assert _household(harness, holder, verified=False)[0]  # the catalog alone would grant it
    assert _household(harness, holder) == (False, "签名状态列表中证照状态为撤销")


def test_an_older_signed_status_list_put_back_grants_no_skip(harness: Harness) -> None:
    cert_id, holder = _issued(harness)
    (before,) = harness.all(
        sa.select(status_lists.c.document, status_lists.c.signature, status_lists.c.leaf_index)
    )
    with harness.catalog.begin() as conn:
        Lifecycle(harness.log).change(conn, cert_id, "revoke", reason="forged")
        publish_status_lists(conn, harness.log)
    _set(harness, status_lists, sa.true(), **before._mapping)
    _set(harness, certificates, certificates.c.cert_id == cert_id, status="有效")
    skippable, reason = _household(harness, holder)
    assert not skippable and "is not the newest one the log records" in reason
    report = audit(
        harness.catalog, harness.lake, extracts_dir=harness.lake_dir / "x", verifiers=[harness.key.verifier]
    )
    assert any(f.area == "status" and "the log's newest is leaf" in f.problem for f in report.findings)


def test_a_holder_reassigned_or_a_validity_edited_grants_no_skip(harness: Harness) -> None:
    cert_id, holder = _issued(harness)
    other = household_row(99)["person_id"]
    _set(harness, certificates, certificates.c.cert_id == cert_id, holder_id=other)
    assert _household(harness, other) == (
        False,
        "目录数据与透明日志不一致（持有人不符），请运行 onceonly audit",
    )
    _set(harness, certificates, certificates.c.cert_id == cert_id, holder_id=holder, valid_from=TODAY)
    assert _household(harness, holder)[0]  # the log's dates are the ones read: still in force
    receipt = len(ROWS)  # the leaf after the certificates: the batch's receipt
    _set(harness, certificates, certificates.c.cert_id == cert_id, leaf_index=receipt)
    skippable, reason = _household(harness, holder)
    assert not skippable and "目录数据与透明日志不一致" in reason


def test_what_a_batch_resolved_is_in_its_receipt_and_audited(harness: Harness, tmp_path: Path) -> None:
    bad = household_row(4, township_code="120114999000")
    first = harness.land([*ROWS, bad], before=None, after={"page": 1})
    fixed = harness.land([household_row(4)], before={"page": 1}, after={"page": 2})
    assert first.quarantined == 1 and fixed.accepted == 1
    verifiers = [harness.key.verifier]
    report = audit(harness.catalog, harness.lake, extracts_dir=tmp_path, verifiers=verifiers)
    assert report.ok and not report.uncovered, report.findings
    (row,) = harness.all(sa.select(quarantine.c.id, quarantine.c.resolved_by_batch))
    assert row.resolved_by_batch == fixed.batch_id

    _set(harness, quarantine, quarantine.c.id == row.id, resolved_at=None, resolved_by_batch=None)
    (finding,) = audit(harness.catalog, harness.lake, extracts_dir=tmp_path, verifiers=verifiers).findings
    assert finding.batch_id == fixed.batch_id and finding.dataset == HOUSEHOLD.contract.id
    assert "0 quarantine row(s) are resolved by it, its receipt recorded 1" in finding.problem


def test_as_of_a_past_checkpoint_the_answer_is_the_one_the_log_gave_then(harness: Harness) -> None:
    from evidence.log import tree_size

    cert_id, holder = _issued(harness)
    with harness.catalog.read() as conn:
        before = tree_size(conn)  # the signed checkpoint right after the list was published
    with harness.catalog.begin() as conn:
        Lifecycle(harness.log).change(conn, cert_id, "revoke", reason="forged")
        publish_status_lists(conn, harness.log)

    def answer(size: int | None) -> tuple[bool, str, str]:
        with harness.catalog.read() as conn:
            got = skip_check(
                conn, PENSION, holder, ISSUED_BY, today=TODAY, verifiers=[harness.key.verifier], as_of=size
            )
        m = next(m for m in got.materials if m.material == "居民户口簿")
        return m.skippable, m.verdict, m.reason

    assert answer(None)[:2] == (False, "证照已吊销")
    assert answer(before) == (True, "可免交", "证照有效")  # what the counter said before the revocation
    # The catalog's current status does not leak into the past answer, nor a later list.
    _set(harness, certificates, certificates.c.cert_id == cert_id, status="撤销")
    assert answer(before)[0]
    # A size the log never signed a checkpoint at: refused, not guessed.
    with pytest.raises(ConfigurationError, match=r"no checkpoint of size 1$"):
        answer(1)


def test_as_of_finds_the_status_list_by_its_entry_not_by_the_editable_columns(harness: Harness) -> None:
    from catalog import log_leaves
    from evidence.log import tree_size

    cert_id, holder = _issued(harness)
    with harness.catalog.begin() as conn:
        Lifecycle(harness.log).change(conn, cert_id, "revoke", reason="forged")
        publish_status_lists(conn, harness.log)
    with harness.catalog.read() as conn:
        after = tree_size(conn)
        newest = conn.execute(
            sa.select(sa.func.max(log_leaves.c.leaf_index)).where(log_leaves.c.kind == "status-list")
        ).scalar_one()
    # The revoking list's leaf relabelled (kind and ref are beside the hashed entry): an older
    # list, from before the revocation, must not be taken for it.
    _set(harness, log_leaves, log_leaves.c.leaf_index == newest, kind="use", ref="x")
    with harness.catalog.read() as conn:
        got = skip_check(
            conn, PENSION, holder, ISSUED_BY, today=TODAY, verifiers=[harness.key.verifier], as_of=after
        )
    household = next(m for m in got.materials if m.material == "居民户口簿")
    assert (household.skippable, household.verdict) == (False, "证照已吊销")
