"""The catalog database: cursors, runs, batches, quarantine, certificates and the log.

Example::

    catalog = Catalog.connect(settings.catalog_url)     # SQLite file by default, any SQLAlchemy URL
    with catalog.begin() as conn:                        # one transaction
        cursor = catalog.cursor_of(conn, "gongan-household")

Everything a batch changes is written in ONE transaction (``lake.landing``): the batch row, its
quarantine rows, its certificates, their log leaves, the signed checkpoint and the connector's
new cursor. A run that dies leaves the catalog exactly as the last landed batch left it.

On SQLite a transaction from :meth:`Catalog.begin` takes the database's write lock when it
starts (``BEGIN IMMEDIATE``), so what it reads (the log head, the next serial) cannot be
changed by another writer before it writes; :meth:`Catalog.read` starts a plain transaction
for queries that write nothing. On PostgreSQL those rows are locked ``FOR UPDATE``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from onceonly.errors import CatalogError
from onceonly.privacy import scrub_text

metadata = MetaData()

# A 64-bit key that is SQLite's rowid (only "INTEGER PRIMARY KEY" is), BIGINT elsewhere.
_ROWID_BIGINT = BigInteger().with_variant(Integer(), "sqlite")

connector_state = Table(
    "connector_state",
    metadata,
    Column("connector", String(100), primary_key=True),
    Column("dataset", String(100), nullable=False),
    Column("cursor", JSON, nullable=True),
    Column("last_run_id", String(36)),
    Column("last_status", String(20)),
    Column("last_error", Text),
    Column("last_pull_at", DateTime(timezone=True)),
    Column("rows_pulled", BigInteger, nullable=False, default=0),
    # One run pulls a connector at a time: the run holding the lease until lease_until.
    Column("lease_run_id", String(36)),
    Column("lease_until", DateTime(timezone=True)),
)

township_extracts = Table(
    "township_extracts",
    metadata,
    Column("township", String(12), primary_key=True),
    # Bumped in the landing transaction whenever a certificate of the township is issued or
    # superseded; the extract writer clears only the generation it wrote, so a township that
    # changes while its extract is being written stays marked.
    Column("generation", BigInteger, nullable=False, default=0),
    Column("written_generation", BigInteger, nullable=False, default=0),
    Column("written_at", DateTime(timezone=True)),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("flow_run_id", String(36)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(20), nullable=False),
    Column("summary", JSON),
)

batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("connector", String(100), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("contract_id", String(200), nullable=False),
    Column("contract_version", String(40), nullable=False),
    Column("pulled", Integer, nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("warnings", Integer, nullable=False),
    Column("certificates", Integer, nullable=False),
    Column("cursor_before", JSON),
    Column("cursor_after", JSON),
    Column("content_sha256", String(64), nullable=False),
    Column("tree_size", BigInteger),
    Column("landed_at", DateTime(timezone=True), nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(64), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("contract_id", String(200), nullable=False),
    Column("contract_version", String(40), nullable=False),
    Column("record_key", String(200)),
    Column("subject_id", String(64)),
    Column("rule", String(200), nullable=False),
    Column("column", String(100)),
    Column("severity", String(10), nullable=False),
    Column("value_masked", Text),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by_batch", String(64)),
    Index("ix_quarantine_subject", "subject_id"),
    Index("ix_quarantine_key", "dataset", "record_key"),
)

# A batch refused because its error rate passed the contract's maxErrorRate: nothing from it
# was landed or issued and the connector's cursor stayed put, but its failing rows are in
# ``quarantine`` under this batch id (once, however often the same batch is pulled again).
breaches = Table(
    "breaches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("connector", String(100), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("contract_id", String(200), nullable=False),
    Column("contract_version", String(40), nullable=False),
    Column("pulled", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("error_rate", Float, nullable=False),
    Column("max_error_rate", Float, nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
)

# Keyed by leaf index (SQLite's rowid): certificates are appended in log order, so the table
# itself grows at its end and no separate leaf-index B-tree is written; the id is unique.
# Indexes, each for a query that needs it: cert_id (bundles, lifecycle, supersession),
# (dataset, record_key, holder_id, version) (earlier versions at landing; nothing doubled),
# holder_id (skip-check), township (extracts, in leaf order), previous_id (superseded?).
certificates = Table(
    "certificates",
    metadata,
    Column("cert_id", String(120), nullable=False, unique=True),
    Column("dataset", String(100), nullable=False),
    Column("record_key", String(200), nullable=False),
    Column("holder_id", String(64), nullable=False),
    Column("holder_name", Text),  # as long as the contract allows (a company name: 200)
    Column("type_code", String(40), nullable=False),
    Column("type_name", String(100), nullable=False),
    Column("issuer_code", String(18), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("valid_from", Date),
    Column("valid_to", Date),
    Column("township", String(12)),
    Column("content_sha256", String(64), nullable=False),
    # The certificate's RFC 8785 bytes are its log leaf's entry (log_bundles; evidence.log.leaf_at).
    Column("leaf_index", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("batch_id", String(64), nullable=False),
    Column("previous_id", String(120)),
    # The certificate's status-list entry (its credential_status: issuer_code, list_no,
    # status_index), kept here rather than in a table of its own: one row and no cert_id key
    # written twice per certificate. Allocation (evidence.status_list.allocate_positions,
    # under the list's row lock) hands each position out once. ix_certificates_not_valid
    # (below) serves publishing a list: only certificates not 有效 set a bit.
    Column("list_no", Integer),
    Column("status_index", BigInteger),
    UniqueConstraint("dataset", "record_key", "holder_id", "version", name="uq_certificate_version"),
    Index("ix_certificates_holder", "holder_id"),
    Index("ix_certificates_township", "township"),
)

# The certificates whose status-list bits are set (evidence.status_list.build_document): those
# not 有效. Partial where the database has them, so that issuing a 有效 certificate writes no
# entry here (a full (issuer, list) index cost ~1 us per certificate issued).
Index(
    "ix_certificates_not_valid",
    certificates.c.issuer_code,
    certificates.c.list_no,
    sqlite_where=certificates.c.status != "有效",
    postgresql_where=certificates.c.status != "有效",
)

serials = Table(
    "serials",
    metadata,
    Column("type_code", String(40), primary_key=True),
    Column("issuer_code", String(18), primary_key=True),
    Column("next_serial", BigInteger, nullable=False),
)

log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("frontier", JSON, nullable=False),
    # The log's hash function (sha256, or sm3 as a deployment option), fixed by its first
    # append: a log never mixes two.
    Column("hash_alg", String(10), nullable=False, server_default="sha256"),
)

log_leaves = Table(
    "log_leaves",
    metadata,
    # INTEGER on SQLite, so that the key is the rowid: no second B-tree to write per leaf.
    Column("leaf_index", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("ref", String(120), nullable=False),
    Column("appended_at", DateTime(timezone=True), nullable=False),
    # The entry itself (batch receipts, uses of shared data, lifecycle changes, status lists).
    Column("entry", LargeBinary),
)

# Certificate leaves, the bulk of the log, packed: one row per run of up to BUNDLE_LEAVES
# consecutive certificate leaves of one append (after C2SP tlog-tiles' entry bundles). A row
# holds the leaves' hashes (32 bytes each, raw, read by proofs without touching the entries)
# and their entries: an Arrow IPC stream, LZ4-compressed, of ``ref`` (the certificate id) and
# ``entry`` (its RFC 8785 bytes). A row per leaf cost more than everything else issuance writes.
BUNDLE_LEAVES = 256
log_bundles = Table(
    "log_bundles",
    metadata,
    Column("first_leaf", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("leaf_count", Integer, nullable=False),
    Column("leaf_hashes", LargeBinary(2**32 - 1), nullable=False),
    Column("entries", LargeBinary(2**32 - 1), nullable=False),
    Column("appended_at", DateTime(timezone=True), nullable=False),
)

# The complete interior nodes of the log's tree from level 4 up, written with the leaves that
# complete them: node (level, index) is MTH(D[index * 2**level : (index + 1) * 2**level]),
# stored under node_id = level * 2**48 + index (evidence.log.node_id), one integer key (the
# rowid on SQLite). Nodes of levels 1-3 (7 of every 8) are not stored: a proof rebuilds one
# from at most 8 leaf hashes. Any RFC 9162 proof reads O(log n) rows.
log_nodes = Table(
    "log_nodes",
    metadata,
    Column("node_id", _ROWID_BIGINT, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Connectors registered by departments (`onceonly connectors register FILE`): the registration
# file's text as written (secret NAMES only), so the daily flow runs what was registered.
connector_registrations = Table(
    "connector_registrations",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("type", String(50), nullable=False),
    Column("dataset", String(100), nullable=False),
    Column("department", String(200), nullable=False),
    Column("yaml_text", Text, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("removed_at", DateTime(timezone=True)),  # NULL: active
)

# A newer version names the one it supersedes: "is this certificate superseded?" is a lookup.
# Partial where the database has them: first versions (most certificates) write no entry.
Index(
    "ix_certificates_previous",
    certificates.c.previous_id,
    sqlite_where=certificates.c.previous_id.is_not(None),
    postgresql_where=certificates.c.previous_id.is_not(None),
)

# W3C Bitstring Status List, per issuer: each list has a fixed number of entries handed out
# in the random order of ``permutation`` (uint32 little-endian), so an index says nothing
# about when a certificate was issued. The newest signed, logged publication is kept here.
status_lists = Table(
    "status_lists",
    metadata,
    Column("issuer_code", String(18), primary_key=True),
    Column("list_no", Integer, primary_key=True, autoincrement=False),
    Column("next_slot", BigInteger, nullable=False),
    Column("permutation", LargeBinary(4 * 131_072), nullable=False),  # MariaDB: a MEDIUMBLOB
    Column("document", Text),  # RFC 8785 JSON of the newest published list
    Column("signature", Text),  # signed note over its SHA-256
    Column("leaf_index", BigInteger),  # its transparency-log leaf
    Column("published_at", DateTime(timezone=True)),
)

# Lifecycle changes (暂扣, 暂扣发还, 撤销, 吊销, 注销, 失效): the log has the signed history,
# this table the readable one; ``certificates.status`` holds the current state.
certificate_events = Table(
    "certificate_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cert_id", String(120), nullable=False),
    Column("action", String(20), nullable=False),
    Column("status_before", String(10), nullable=False),
    Column("status_after", String(10), nullable=False),
    Column("reason", Text, nullable=False),
    Column("leaf_index", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Index("ix_certificate_events_cert", "cert_id"),
)


def _check_columns(engine: Engine) -> None:
    """Refuse, by name, a catalog whose tables another version of OnceOnly made.

    ``create_all`` adds missing tables but never changes existing ones; without this check an
    older catalog would fail at its first insert with a bare database error.
    """
    inspector = inspect(engine)
    existing = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue  # created next
        stored = {column["name"] for column in inspector.get_columns(table.name)}
        expected = {column.name for column in table.columns}
        if stored != expected:
            differences = [f"+{name}" for name in sorted(stored - expected)]
            differences += [f"-{name}" for name in sorted(expected - stored)]
            raise CatalogError(
                f"the catalog's table {table.name} was made by another version of OnceOnly "
                f"(columns {' '.join(differences)} against this version): there are no schema "
                "migrations yet; keep the old catalog and start a new one (the demo: make demo RESET=1)"
            )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Catalog:
    """A thin handle on the catalog engine; queries live next to the stage that needs them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def connect(cls, url: str, *, create: bool = True) -> Catalog:
        """Open the catalog at ``url``; with ``create`` make it (and a SQLite file's folder) if missing.

        Read-only commands pass ``create=False``: a missing SQLite catalog then means a wrong
        ``ONCEONLY_HOME`` or no run yet, and says so instead of answering from an empty catalog.
        """
        try:
            engine = create_engine(url, future=True)
            if engine.dialect.name == "sqlite":
                database = engine.url.database
                if database and database != ":memory:" and not database.startswith("file:"):
                    if not create and not Path(database).exists():
                        raise CatalogError(
                            f"no catalog at {database}: nothing has run under this ONCEONLY_HOME yet "
                            "(run `make demo` or `onceonly run`, or set ONCEONLY_HOME)"
                        )
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                event.listen(engine, "connect", _sqlite_connect)
                event.listen(engine, "begin", _sqlite_begin)
            _check_columns(engine)  # before create_all: another version's catalog stays untouched
            metadata.create_all(engine)
        except SQLAlchemyError as exc:
            raise CatalogError(f"cannot open the catalog database: {_plain(exc)}") from exc
        return cls(engine)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One read-write transaction; rolled back on any exception."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise CatalogError(f"catalog database error: {_plain(exc)}") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One transaction for queries only: on SQLite it does not wait for a writer."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{_READ_ONLY: True})
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise CatalogError(f"catalog database error: {_plain(exc)}") from exc

    def cursor_of(self, conn: Connection, connector: str) -> dict[str, Any] | None:
        row = conn.execute(
            select(connector_state.c.cursor).where(connector_state.c.connector == connector)
        ).first()
        return None if row is None else row.cursor

    def dispose(self) -> None:
        self.engine.dispose()


def insert_missing(conn: Connection, table: Table, values: dict[str, Any]) -> None:
    """Insert ``values`` unless a row with the same key exists, without failing on a race.

    Two transactions that both find a row missing and both insert it would otherwise make one
    of them fail on the key (the first append to an empty log, the first serial of a type).
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(postgresql.insert(table).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(table).values(values).on_conflict_do_nothing())
    elif dialect in ("mysql", "mariadb"):
        # Not INSERT IGNORE: on an existing row InnoDB takes a shared lock, and two writers
        # that both hold it and then lock the row FOR UPDATE deadlock. A no-op update takes
        # the exclusive lock at once, as the FOR UPDATE that follows would.
        first = next(iter(table.primary_key.columns))
        conn.execute(mysql.insert(table).values(values).on_duplicate_key_update({first.name: first}))
    else:
        key = [c == values[c.name] for c in table.primary_key.columns]
        if conn.execute(select(*table.primary_key.columns).where(*key)).first() is None:
            conn.execute(insert(table).values(values))


def insert_rows(
    conn: Connection,
    table: Table,
    names: Sequence[str],
    rows: list[tuple[Any, ...]],
    constants: Mapping[str, Any] | None = None,
) -> None:
    """INSERT many rows given as tuples; on SQLite straight to the driver's executemany.

    SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself; the
    values must need none there (integers, bytes, text, and dates or timestamps already bound
    with :func:`bind_value`). ``constants`` are the same in every row: SQLite gets those it can
    take as literals (integers, NULL, text without NUL) in the statement, as binding them again
    for every row cost ~1 us per certificate. Elsewhere SQLAlchemy binds everything (batched
    "insertmanyvalues").
    """
    fixed = dict(constants or {})
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), [dict(zip(names, row, strict=True)) | fixed for row in rows])
        return
    literals = {name: _sqlite_literal(value) for name, value in fixed.items()}
    bound = [name for name, literal in literals.items() if literal is None]
    if bound:  # not expressible as a literal: bound with every row after all
        names = [*names, *bound]
        rows = [(*row, *(fixed[name] for name in bound)) for row in rows]
    inline = {name: literal for name, literal in literals.items() if literal is not None}
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(n) for n in [*names, *inline])
    values = ", ".join(["?"] * len(names) + list(inline.values()))
    conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({values})", rows)


def _sqlite_literal(value: Any) -> str | None:
    """``value`` as a SQLite literal, or None if it has none here."""
    if value is None:
        return "NULL"
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return str(value)  # beyond 64 bits SQLite would read the literal as a REAL
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def bind_value(conn: Connection, column: Any, value: Any) -> Any:
    """``value`` as SQLAlchemy would bind it to ``column`` on SQLite (done once, not per row)."""
    if conn.dialect.name != "sqlite":
        return value
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(value) if processor else value


_READ_ONLY = "onceonly_read_only"


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling starts a transaction only at the first INSERT or
    # UPDATE, so a SELECT before it reads outside any transaction; we emit BEGIN ourselves
    # (SQLAlchemy, pysqlite dialect: "Serializable isolation / Savepoints / Transactional DDL").
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # 16 KiB pages for a NEW catalog (an existing one keeps its size): a certificate row is
    # ~1 KiB, so 4 KiB pages split and write B-tree pages far more often (issuance CPU -10%).
    cur.execute("PRAGMA page_size=16384")
    # WAL lets the CLI read while a flow writes; busy_timeout waits instead of failing at once.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # FULL, not NORMAL: under WAL, NORMAL may lose the last commits on power loss, and a log that
    # loses a signed checkpoint it already handed out would sign different leaves at that size
    # again (a split view). One fsync per landed batch is cheap next to the batch itself.
    cur.execute("PRAGMA synchronous=FULL")
    # 64 MiB of page cache (the default is 2 MiB): the certificate indexes of a large catalog
    # stay in memory while a batch is inserted, instead of being re-read page by page.
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE: take the write lock now, so a read-then-write (log head, serials) is never
    # overtaken by another writer. A deferred transaction that read first would instead fail
    # with SQLITE_BUSY when it tries to write after someone else has.
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _plain(exc: SQLAlchemyError) -> str:
    # SQLAlchemy messages embed the SQL and bound parameters (which may hold personal data);
    # the driver's first line may still quote a value (MariaDB: "Duplicate entry '<id>'").
    orig = getattr(exc, "orig", None)
    return scrub_text(f"{type(orig or exc).__name__}: {str(orig or exc).splitlines()[0]}")


__all__ = [
    "BUNDLE_LEAVES",
    "Catalog",
    "batches",
    "bind_value",
    "breaches",
    "certificate_events",
    "certificates",
    "checkpoints",
    "connector_registrations",
    "connector_state",
    "insert_missing",
    "insert_rows",
    "log_bundles",
    "log_head",
    "log_leaves",
    "log_nodes",
    "metadata",
    "quarantine",
    "runs",
    "serials",
    "status_lists",
    "township_extracts",
    "utcnow",
]
