"""Commitments in the log, openings in the catalog.

Revision ID: 0003
Revises: 0002

A certificate's log entry is now a commitment to it (``evidence.commitment``); the certificate
and the salt that open it are kept here, packed like ``log_bundles`` (``certificate_openings``).
Use entries commit to their subject; the subject and its salt are kept in ``use_subjects``.
Certificate leaves an earlier version wrote hold the whole certificate and stay as they are (a
log is never rewritten); they have no opening row, and bundles of them keep format 2.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

_ROWID_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "certificate_openings",
        sa.Column("first_leaf", _ROWID_BIGINT, autoincrement=False, nullable=False),
        sa.Column("leaf_count", sa.Integer(), nullable=False),
        sa.Column("openings", sa.LargeBinary(2**32 - 1), nullable=False),
        sa.PrimaryKeyConstraint("first_leaf"),
    )
    op.create_table(
        "use_subjects",
        sa.Column("leaf_index", _ROWID_BIGINT, autoincrement=False, nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("salt", sa.LargeBinary(16), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index"),
    )
    op.create_index("ix_use_subjects_subject", "use_subjects", ["subject_id"])


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
