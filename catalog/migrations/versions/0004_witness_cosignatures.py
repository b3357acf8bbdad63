"""Cosignatures of checkpoints by the district's witnesses.

Revision ID: 0004
Revises: 0003

- ``checkpoint_cosignatures`` (``evidence.witness``): per checkpoint size and witness key, the
  c2sp.org/tlog-cosignature line the witness returned, checked with its key before it is kept;
  ``certificates export`` adds them to the bundle's checkpoint.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoint_cosignatures",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness_name", sa.String(255), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", "witness_name", "key_id"),
    )


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
