"""An index on the log's leaves by kind and ref.

Revision ID: 0005
Revises: 0004

- ``ix_log_leaves_kind_ref``: the newest leaf of a kind for a ref, read by a skip-check to find
  the newest status list of a list the log records (``evidence.bundle.check_held``): an older
  signed list put back in the catalog is refused. Certificate leaves are packed in
  ``log_bundles``, so the index covers only the other entries.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_log_leaves_kind_ref", "log_leaves", ["kind", "ref"])


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
