"""Service stations and their credentials; citizens' credentials and consents.

Revision ID: 0006
Revises: 0005

- ``stations`` (``sharing.stations``): one row per station — its township, the matters it may
  ask for (NULL: all), the SHA-256 of its credential (the token itself is never stored), and
  when it was revoked.
- ``citizens``: a credential per enrolled citizen (SHA-256 only), to see the uses of their data
  and grant consents.
- ``consents``: a citizen's consent for 跨域通办 — township, matter, purpose, expiry, used once.
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
    op.create_table(
        "citizens",
        sa.Column("citizen_id", sa.String(40), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("citizen_id"),
        sa.UniqueConstraint("subject_id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_table(
        "consents",
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("township", sa.String(12), nullable=False),
        sa.Column("matter", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.String(40), nullable=True),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code_sha256"),
    )


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
