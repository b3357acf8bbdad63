"""办事堵点: work orders per department from quarantine and skip-check answers (sharing.bottlenecks).

Revision ID: 0011
Revises: 0010

- ``blocked_materials``: a material a counter answer could not skip because a department's record
  failed its contract (数据待部门更正) — the quarantine entry, matter, material, township, and the
  citizen only as a commitment under ``bottleneck_salt``.
- ``bottleneck_salt``: that salt (one row).
- ``work_orders``: one per source record that stopped citizens — department, dataset, the key
  keyed-hashed and masked, the rules failed, citizens stopped, open until the corrected record lands.
- ``bottleneck_runs``: per run and department the open, new, closed work orders and citizens.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blocked_materials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("township", sa.String(12), nullable=False),
        sa.Column("station", sa.String(40), nullable=True),
        sa.Column("matter", sa.String(64), nullable=False),
        sa.Column("material", sa.String(200), nullable=False),
        sa.Column("certificate_types", sa.String(200), nullable=False),
        sa.Column("holder", sa.String(20), nullable=False),
        sa.Column("quarantine_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("subject_commitment", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_blocked_materials_quarantine", "blocked_materials", ["quarantine_id"])
    op.create_table(
        "bottleneck_salt",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("salt", sa.LargeBinary(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "work_orders",
        sa.Column("order_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_key", sa.String(64), nullable=False),
        sa.Column("department", sa.String(200), nullable=False),
        sa.Column("connector", sa.String(100), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("key_shown", sa.String(200), nullable=True),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.Column("batch_refused", sa.Integer(), nullable=False),
        sa.Column("citizens", sa.Integer(), nullable=False),
        sa.Column("stops", sa.Integer(), nullable=False),
        sa.Column("materials", sa.JSON(), nullable=False),
        sa.Column("first_detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_run", sa.String(36), nullable=False),
        sa.Column("updated_run", sa.String(36), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_run", sa.String(36), nullable=True),
        sa.Column("closed_by_batch", sa.String(64), nullable=True),
        sa.Column("closed_by_cert", sa.String(120), nullable=True),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_work_orders_group", "work_orders", ["group_key", "status"])
    op.create_index("ix_work_orders_department", "work_orders", ["department", "status"])
    op.create_table(
        "bottleneck_runs",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("departments", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
