"""The catalog: the ground floor every stage stands on.

Example::

    from catalog import Catalog, certificates
    catalog = Catalog.connect(settings.catalog_url)
    with catalog.read() as conn:
        conn.execute(select(certificates.c.cert_id).limit(5))

Its tables (``_schema``), the statements whose SQL differs by database (``_sql``: SQLite,
PostgreSQL, MariaDB), the engine with its transactions (``_database``), database errors mapped
to transient or terminal ones by driver code (``_errors``), and the schema revision with its
Alembic migrations (``_migrations``, ``migrations/``). No stage's logic lives here; each stage
keeps its queries next to its code.
"""

from catalog._database import Catalog
from catalog._errors import catalog_error, is_transient
from catalog._migrations import SchemaRevision
from catalog._schema import (
    BUNDLE_LEAVES,
    SCHEMA_REVISION,
    batches,
    benefit_decisions,
    blocked_materials,
    bottleneck_runs,
    bottleneck_salt,
    breaches,
    certificate_events,
    certificate_openings,
    certificates,
    checkpoint_cosignatures,
    checkpoints,
    citizens,
    connector_registrations,
    connector_state,
    consents,
    expiry_notices,
    expiry_reminders,
    extract_manifests,
    extract_rows,
    log_bundles,
    log_head,
    log_leaves,
    log_nodes,
    metadata,
    quarantine,
    runs,
    serials,
    stations,
    status_lists,
    supervision_pushes,
    supervision_receipts,
    township_extracts,
    use_subjects,
    work_orders,
)
from catalog._sql import (
    IN_CHUNK,
    Prepared,
    aware,
    bind_value,
    chunks,
    database_now,
    insert_missing,
    insert_rows,
    utcnow,
)

__all__ = [
    "BUNDLE_LEAVES",
    "IN_CHUNK",
    "SCHEMA_REVISION",
    "Catalog",
    "Prepared",
    "SchemaRevision",
    "aware",
    "batches",
    "benefit_decisions",
    "bind_value",
    "blocked_materials",
    "bottleneck_runs",
    "bottleneck_salt",
    "breaches",
    "catalog_error",
    "certificate_events",
    "certificate_openings",
    "certificates",
    "checkpoint_cosignatures",
    "checkpoints",
    "chunks",
    "citizens",
    "connector_registrations",
    "connector_state",
    "consents",
    "database_now",
    "expiry_notices",
    "expiry_reminders",
    "extract_manifests",
    "extract_rows",
    "insert_missing",
    "insert_rows",
    "is_transient",
    "log_bundles",
    "log_head",
    "log_leaves",
    "log_nodes",
    "metadata",
    "quarantine",
    "runs",
    "serials",
    "stations",
    "status_lists",
    "supervision_pushes",
    "supervision_receipts",
    "township_extracts",
    "use_subjects",
    "utcnow",
    "work_orders",
]
