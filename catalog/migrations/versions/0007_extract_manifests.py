"""Township extracts (数据回流): what each township was sent (sharing.extracts).

Revision ID: 0007
Revises: 0006

- ``extract_manifests``: one row per extract written — township, number, full or incremental,
  the one it follows, the checkpoint it reflects, its signed manifest and its log leaf.
- ``extract_rows``: per township and certificate, the SHA-256 of the row last sent, from which
  the next incremental extract is computed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "extract_manifests",
        sa.Column("township", sa.String(12), nullable=False),
        sa.Column("extract_no", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("previous_no", sa.BigInteger(), nullable=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("township", "extract_no"),
    )
    op.create_table(
        "extract_rows",
        sa.Column("township", sa.String(12), nullable=False),
        sa.Column("cert_id", sa.String(120), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("township", "cert_id"),
    )


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
