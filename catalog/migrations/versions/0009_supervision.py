"""审批与监管联动: approvals pushed to the supervising department (sharing.supervision).

Revision ID: 0009
Revises: 0008

- ``supervision_pushes``: one row per landed approval tried — attempts, last error, the
  supervisor's case once it accepted the push (and the log leaf of the push), read receipt,
  feedback (监管结果), and when an overdue event was raised for it.
- ``supervision_receipts``: each receipt pulled back from the supervisor, once by its id (held,
  ``leaf_index`` NULL, until its approval's push is recorded); the 监管结果 scrubbed and cut, its
  SHA-256 (what the log carries).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "supervision_pushes",
        sa.Column("approval_id", sa.String(40), nullable=False),
        sa.Column("supervisor", sa.String(200), nullable=False),
        sa.Column("licence_no", sa.String(40), nullable=True),
        sa.Column("applicant_uscc", sa.String(18), nullable=True),
        sa.Column("applicant_name", sa.Text(), nullable=True),
        sa.Column("township", sa.String(12), nullable=True),
        sa.Column("decided_on", sa.Date(), nullable=True),
        sa.Column("body_sha256", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("first_tried_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("case_id", sa.String(64), nullable=True),
        sa.Column("leaf_index", sa.BigInteger(), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("feedback_result", sa.Text(), nullable=True),
        sa.Column("unread_alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("feedback_alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("approval_id"),
    )
    op.create_index("ix_supervision_pushes_pushed_at", "supervision_pushes", ["pushed_at"])
    op.create_table(
        "supervision_receipts",
        sa.Column("receipt_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("approval_id", sa.String(40), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("result_sha256", sa.String(64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("receipt_id"),
    )
    op.create_index("ix_supervision_receipts_approval", "supervision_receipts", ["approval_id"])


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
