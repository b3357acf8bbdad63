"""One run id, and what tells a dead run from a live one.

Revision ID: 0002
Revises: 0001

- ``runs.run_id`` is now the Prefect flow-run id (``runs.flow_run_id`` is gone): earlier runs
  that recorded a flow-run id get it as their id, in ``runs`` and everywhere a run is named
  (``batches``, ``breaches``, ``connector_state``), so an operator goes from any catalog row to
  the run's page in the Prefect UI.
- ``runs.host``, ``pid``, ``process_start``, ``heartbeat_at`` and ``heartbeat_seconds``
  (``lake.runs``): the next run marks a dead run crashed and takes its connectors over. A run
  an earlier version left ``running`` gets its start as its last heartbeat, so it is reaped as
  soon as that is stale.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

# The run that takes its flow-run id: the newest of those that recorded it (Prefect re-runs a
# flow run under the same id, e.g. a retry from the UI; the older attempts keep their own id).
_RENAMED = (
    "SELECT r.run_id FROM runs r WHERE r.flow_run_id IS NOT NULL AND r.flow_run_id <> '' "
    "AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.flow_run_id = r.flow_run_id "
    "AND (o.started_at > r.started_at OR (o.started_at = r.started_at AND o.run_id > r.run_id)))"
)


def _rename_references(table: str, column: str) -> None:
    op.execute(
        f"UPDATE {table} SET {column} = "
        f"(SELECT r.flow_run_id FROM runs r WHERE r.run_id = {table}.{column}) "
        f"WHERE {column} IN (SELECT x.run_id FROM ({_RENAMED}) x)"
    )


def upgrade() -> None:
    for table, column in (
        ("batches", "run_id"),
        ("breaches", "run_id"),
        ("connector_state", "last_run_id"),
        ("connector_state", "lease_run_id"),
    ):
        _rename_references(table, column)
    op.execute(f"UPDATE runs SET run_id = flow_run_id WHERE run_id IN (SELECT x.run_id FROM ({_RENAMED}) x)")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("flow_run_id")
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("process_start", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("heartbeat_seconds", sa.Float(), nullable=True))
    op.execute("UPDATE runs SET heartbeat_at = started_at WHERE status = 'running'")


def downgrade() -> None:  # pragma: no cover - upgrades only (README: back the catalog up first)
    raise NotImplementedError("catalog migrations go forward only")
