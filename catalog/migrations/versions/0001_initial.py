"""The catalog as the last release before schema versions made it.

Revision ID: 0001
Revises: (none)

Written out table by table, not from ``catalog._schema``: what revision 0001 means must not
change when the tables in ``_schema`` do. A catalog made before schema versions existed (no
``catalog_version`` table) whose columns match these is at this revision; ``onceonly catalog
upgrade`` records it and goes on from here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

# A 64-bit key that is SQLite's rowid (only "INTEGER PRIMARY KEY" is), BIGINT elsewhere.
_ROWID_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "connector_state",
        sa.Column("connector", sa.String(100), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=True),
        sa.Column("last_run_id", sa.String(36), nullable=True),
        sa.Column("last_status", sa.String(20), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_pull_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows_pulled", sa.BigInteger(), nullable=False),
        sa.Column("lease_run_id", sa.String(36), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("connector"),
    )
    op.create_table(
        "township_extracts",
        sa.Column("township", sa.String(12), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("written_generation", sa.BigInteger(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("township"),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("flow_run_id", sa.String(36), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("connector", sa.String(100), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("contract_id", sa.String(200), nullable=False),
        sa.Column("contract_version", sa.String(40), nullable=False),
        sa.Column("pulled", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("warnings", sa.Integer(), nullable=False),
        sa.Column("certificates", sa.Integer(), nullable=False),
        sa.Column("cursor_before", sa.JSON(), nullable=True),
        sa.Column("cursor_after", sa.JSON(), nullable=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=True),
        sa.Column("landed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("contract_id", sa.String(200), nullable=False),
        sa.Column("contract_version", sa.String(40), nullable=False),
        sa.Column("record_key", sa.String(200), nullable=True),
        sa.Column("subject_id", sa.String(64), nullable=True),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("column", sa.String(100), nullable=True),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("value_masked", sa.Text(), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_batch", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_subject", "quarantine", ["subject_id"])
    op.create_index("ix_quarantine_key", "quarantine", ["dataset", "record_key"])
    op.create_table(
        "breaches",
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("connector", sa.String(100), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("contract_id", sa.String(200), nullable=False),
        sa.Column("contract_version", sa.String(40), nullable=False),
        sa.Column("pulled", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("error_rate", sa.Float(), nullable=False),
        sa.Column("max_error_rate", sa.Float(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_table(
        "certificates",
        sa.Column("cert_id", sa.String(120), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("record_key", sa.String(200), nullable=False),
        sa.Column("holder_id", sa.String(64), nullable=False),
        sa.Column("holder_name", sa.Text(), nullable=True),
        sa.Column("type_code", sa.String(40), nullable=False),
        sa.Column("type_name", sa.String(100), nullable=False),
        sa.Column("issuer_code", sa.String(18), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("township", sa.String(12), nullable=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("leaf_index", _ROWID_BIGINT, autoincrement=False, nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("previous_id", sa.String(120), nullable=True),
        sa.Column("list_no", sa.Integer(), nullable=True),
        sa.Column("status_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("leaf_index"),
        sa.UniqueConstraint("cert_id"),
        sa.UniqueConstraint("dataset", "record_key", "holder_id", "version", name="uq_certificate_version"),
    )
    op.create_index("ix_certificates_holder", "certificates", ["holder_id"])
    op.create_index("ix_certificates_township", "certificates", ["township"])
    op.create_index(
        "ix_certificates_not_valid",
        "certificates",
        ["issuer_code", "list_no"],
        sqlite_where=sa.text("status != '有效'"),
        postgresql_where=sa.text("status != '有效'"),
    )
    op.create_table(
        "serials",
        sa.Column("type_code", sa.String(40), nullable=False),
        sa.Column("issuer_code", sa.String(18), nullable=False),
        sa.Column("next_serial", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("type_code", "issuer_code"),
    )
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.JSON(), nullable=False),
        sa.Column("hash_alg", sa.String(10), server_default="sha256", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "log_leaves",
        sa.Column("leaf_index", _ROWID_BIGINT, autoincrement=False, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("ref", sa.String(120), nullable=False),
        sa.Column("appended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("leaf_index"),
    )
    op.create_table(
        "log_bundles",
        sa.Column("first_leaf", _ROWID_BIGINT, autoincrement=False, nullable=False),
        sa.Column("leaf_count", sa.Integer(), nullable=False),
        sa.Column("leaf_hashes", sa.LargeBinary(2**32 - 1), nullable=False),
        sa.Column("entries", sa.LargeBinary(2**32 - 1), nullable=False),
        sa.Column("appended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("first_leaf"),
    )
    op.create_table(
        "log_nodes",
        sa.Column("node_id", _ROWID_BIGINT, autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tree_size"),
    )
    op.create_table(
        "connector_registrations",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("department", sa.String(200), nullable=False),
        sa.Column("yaml_text", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index(
        "ix_certificates_previous",
        "certificates",
        ["previous_id"],
        sqlite_where=sa.text("previous_id IS NOT NULL"),
        postgresql_where=sa.text("previous_id IS NOT NULL"),
    )
    op.create_table(
        "status_lists",
        sa.Column("issuer_code", sa.String(18), nullable=False),
        sa.Column("list_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_slot", sa.BigInteger(), nullable=False),
        sa.Column("permutation", sa.LargeBinary(4 * 131_072), nullable=False),
        sa.Column("document", sa.Text(), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("leaf_index", sa.BigInteger(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("issuer_code", "list_no"),
    )
    op.create_table(
        "certificate_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cert_id", sa.String(120), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("status_before", sa.String(10), nullable=False),
        sa.Column("status_after", sa.String(10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_certificate_events_cert", "certificate_events", ["cert_id"])
