"""Lifecycle changes by log position: a township's increment looks at the certificates changed
since its last extract (sharing.extracts), lifecycle changes among them.

Revision ID: 0012
Revises: 0011

- ``ix_certificate_events_leaf``: ``certificate_events`` by ``leaf_index``.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_certificate_events_leaf", "certificate_events", ["leaf_index"])


def downgrade() -> None:
    op.drop_index("ix_certificate_events_leaf", table_name="certificate_events")
