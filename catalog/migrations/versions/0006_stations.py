"""Township and village service stations and their credentials.

Revision ID: 0006
Revises: 0005

- ``stations`` (``sharing.stations``): one row per station — its township, the matters it may
  ask for (NULL: all), the SHA-256 of its credential (the token itself is never stored), and
  when it was revoked.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stations",
        sa.Column("station_id", sa.String(40), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("township", sa.String(12), nullable=False),
        sa.Column("matters", sa.Text(), nullable=True),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("station_id"),
        sa.UniqueConstraint("token_sha256"),
    )


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
