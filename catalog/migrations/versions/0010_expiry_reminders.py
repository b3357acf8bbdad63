"""证照到期提醒: reminders sent, each once (sharing.reminders).

Revision ID: 0010
Revises: 0009

- ``expiry_reminders``: one row per reminder sent — the certificate, its lineage (dataset,
  record, holder), the valid_to and window it was sent for, the log leaf, and its state
  (待换证 / 已换证 / 已到期 / 已失效) with the certificate that closed it.
- ``expiry_notices``: the outbox of notices to subjects, one per subject per run, for a
  messaging gateway (``delivered_at`` set when it reports the notice delivered).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "expiry_reminders",
        sa.Column("reminder_id", sa.String(64), nullable=False),
        sa.Column("cert_id", sa.String(120), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("record_key", sa.String(200), nullable=False),
        sa.Column("holder_id", sa.String(64), nullable=False),
        sa.Column("type_code", sa.String(40), nullable=False),
        sa.Column("township", sa.String(12), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("sent_on", sa.Date(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.Column("notice_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("closed_by", sa.String(120), nullable=True),
        sa.Column("closed_leaf", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("reminder_id"),
    )
    op.create_index("ix_expiry_reminders_lineage", "expiry_reminders", ["dataset", "record_key", "holder_id"])
    op.create_index("ix_expiry_reminders_status", "expiry_reminders", ["status"])
    op.create_table(
        "expiry_notices",
        sa.Column("notice_id", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("township", sa.String(12), nullable=True),
        sa.Column("run_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("notice_id"),
    )
    op.create_index("ix_expiry_notices_run_on", "expiry_notices", ["run_on"])


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
