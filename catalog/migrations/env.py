"""Alembic's environment for the catalog; ``catalog._migrations`` runs it (there is no alembic.ini).

The caller hands over the connection to migrate in ``config.attributes["connection"]``, inside
the transaction and lock it holds; everything then runs in that one transaction.
"""

from __future__ import annotations

from alembic import context

from catalog._migrations import VERSION_TABLE, compare_type
from catalog._schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,  # what `alembic revision --autogenerate` compares the catalog with
    version_table=VERSION_TABLE,
    # SQLite alters little in place: autogenerate writes "batch" operations there, which copy
    # the table (https://alembic.sqlalchemy.org/en/latest/batch.html).
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=compare_type,  # what autogenerate takes for a change of type
)
with context.begin_transaction():
    context.run_migrations()
