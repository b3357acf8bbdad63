"""免申即享: decisions of the benefit rules (sharing.benefits).

Revision ID: 0008
Revises: 0007

- ``benefit_decisions`` (``sharing.benefit_decisions``): one row per decision logged — a grant,
  or the reversal of one — with the rule and its version, the facts used (certificate ids), the
  reason, the day and the decision's log leaf. No subject: the leaf's ``use_subjects`` row keeps
  it, as for a use of shared data.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "benefit_decisions",
        sa.Column("decision_id", sa.String(100), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("rule_version", sa.String(40), nullable=False),
        sa.Column("result", sa.String(10), nullable=False),
        sa.Column("reverses", sa.String(100), nullable=True),
        sa.Column("reversed_by", sa.String(100), nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("decision_id"),
        sa.UniqueConstraint("leaf_index"),
    )
    op.create_index("ix_benefit_decisions_rule", "benefit_decisions", ["rule_id", "result"])


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
