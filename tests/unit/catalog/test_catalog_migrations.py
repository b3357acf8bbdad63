"""The catalog's schema revision on SQLite, PostgreSQL and MariaDB: new catalogs are made by the
migrations, which reach exactly ``_schema``'s tables; a catalog of the previous release is refused
untouched, then upgraded with its rows intact; a next migration is one file."""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
import threading
from pathlib import Path
from typing import Any

import previous_release_schema as previous
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from catalog import SCHEMA_REVISION, Catalog, SchemaRevision, metadata
from catalog import _migrations as migrations
from catalog._database import _engine
from catalog._migrations import MIGRATIONS, VERSION_TABLE, Migrations, alembic_config, compare_type
from connectors.state import cursor_of, save_cursor
from onceonly.errors import CatalogOutdated, CatalogRefused

AT = dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)
HOLDER = "120114199003070011"

# A row in every table of the previous release: text in Chinese, JSON, bytes, dates, NULLs.
ROWS: dict[str, list[dict[str, Any]]] = {
    "connector_state": [
        {
            "connector": "gongan-household",
            "dataset": "household",
            "cursor": {"updated_at": "2026-11-20T08:00:00", "id": 42},
            "last_run_id": "run-1",
            "last_status": "landed",
            "last_error": None,
            "last_pull_at": AT,
            "rows_pulled": 5000,
            "lease_run_id": None,
            "lease_until": None,
        }
    ],
    "township_extracts": [
        {"township": "120114001", "generation": 3, "written_generation": 2, "written_at": AT}
    ],
    "runs": [
        {
            "run_id": "run-1",
            "flow_run_id": None,
            "started_at": AT,
            "finished_at": AT,
            "status": "completed",
            "summary": {"landed": 1, "datasets": ["household"]},
        }
    ],
    "batches": [
        {
            "batch_id": "b" * 64,
            "run_id": "run-1",
            "connector": "gongan-household",
            "dataset": "household",
            "contract_id": "urn:onceonly:household",
            "contract_version": "1.0.0",
            "pulled": 3,
            "accepted": 2,
            "quarantined": 1,
            "warnings": 0,
            "certificates": 2,
            "cursor_before": None,
            "cursor_after": {"id": 42},
            "content_sha256": "c" * 64,
            "tree_size": 4,
            "landed_at": AT,
        }
    ],
    "quarantine": [
        {
            "id": 1,
            "batch_id": "b" * 64,
            "dataset": "household",
            "contract_id": "urn:onceonly:household",
            "contract_version": "1.0.0",
            "record_key": "R1",
            "subject_id": "120114********0011",
            "rule": "valid_citizen_id",
            "column": "holder_id",
            "severity": "error",
            "value_masked": "120114********0012",
            "detected_at": AT,
            "resolved_at": None,
            "resolved_by_batch": None,
        }
    ],
    "breaches": [
        {
            "batch_id": "e" * 64,
            "run_id": "run-1",
            "connector": "minzheng-marriage",
            "dataset": "marriage",
            "contract_id": "urn:onceonly:marriage",
            "contract_version": "2.0.0",
            "pulled": 10,
            "quarantined": 9,
            "error_rate": 0.9,
            "max_error_rate": 0.05,
            "detected_at": AT,
        }
    ],
    "certificates": [
        {
            "cert_id": f"1.2.156.3005.2.11100000MB0000000X.{n:010d}",
            "dataset": "household",
            "record_key": "R2",
            "holder_id": HOLDER,
            "holder_name": "张三",
            "type_code": "11100000MB0000000X",
            "type_name": "户口登记证明",
            "issuer_code": "11120114MB0000000X",
            "serial": n,
            "version": n,
            "status": status,
            "issue_date": dt.date(2026, 11, 20),
            "valid_from": dt.date(2026, 11, 20),
            "valid_to": None,
            "township": "120114001",
            "content_sha256": "d" * 64,
            "leaf_index": n,
            "batch_id": "b" * 64,
            "previous_id": None if n == 1 else "1.2.156.3005.2.11100000MB0000000X.0000000001",
            "list_no": 0,
            "status_index": 17 + n,
        }
        for n, status in ((1, "已失效"), (2, "有效"))
    ],
    "serials": [{"type_code": "11100000MB0000000X", "issuer_code": "11120114MB0000000X", "next_serial": 3}],
    "log_head": [{"id": 1, "tree_size": 4, "frontier": ["ab" * 32, "cd" * 32], "hash_alg": "sha256"}],
    "log_leaves": [
        {
            "leaf_index": 0,
            "leaf_hash": bytes(range(32)),
            "kind": "batch",
            "ref": "b" * 64,
            "appended_at": AT,
            "entry": b'{"batch":"bbb"}',
        }
    ],
    "log_bundles": [
        {
            "first_leaf": 1,
            "leaf_count": 2,
            "leaf_hashes": bytes(range(64)),
            "entries": b"\xff\x00arrow-ipc",
            "appended_at": AT,
        }
    ],
    "log_nodes": [{"node_id": 4 * 2**48, "hash": bytes(32)}],
    "checkpoints": [
        {
            "tree_size": 4,
            "root_hash": bytes(range(1, 33)),
            "note": "onceonly.example\n4\nq6s=\n",
            "created_at": AT,
        }
    ],
    "connector_registrations": [
        {
            "name": "gongan-household",
            "type": "sql",
            "dataset": "household",
            "department": "区公安分局",
            "yaml_text": "name: gongan-household\nsecrets: {password: GONGAN_DB_PASSWORD}\n",
            "registered_at": AT,
            "removed_at": None,
        }
    ],
    "status_lists": [
        {
            "issuer_code": "11120114MB0000000X",
            "list_no": 0,
            "next_slot": 2,
            "permutation": bytes(4 * 1024),
            "document": '{"type":"BitstringStatusListCredential"}',
            "signature": "— onceonly.example sig",
            "leaf_index": 3,
            "published_at": AT,
        }
    ],
    "certificate_events": [
        {
            "id": 1,
            "cert_id": "1.2.156.3005.2.11100000MB0000000X.0000000001",
            "action": "注销",
            "status_before": "有效",
            "status_after": "已注销",
            "reason": "迁出本区",
            "leaf_index": 3,
            "occurred_at": AT,
        }
    ],
}


def _build_previous_release(url: str) -> None:
    """The catalog the previous release made at ``url`` (its tables, its engine), with ROWS."""
    engine = _engine(url, create=True)  # the SQLite settings are the previous release's too
    previous.metadata.create_all(engine)
    with engine.begin() as conn:
        for table in previous.metadata.sorted_tables:
            conn.execute(sa.insert(table), ROWS[table.name])
    engine.dispose()


def _previous_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the previous release's tables, by the columns both it and this version have
    (later revisions add some and drop some: 0002 replaced ``runs.flow_run_id``, see
    test_catalog_migration_0002.py)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = {}
        for table in previous.metadata.sorted_tables:
            kept = [c for c in table.columns if c.name in metadata.tables[table.name].columns]
            order = [c for c in table.primary_key if c.name in metadata.tables[table.name].columns]
            rows[table.name] = [tuple(row) for row in conn.execute(sa.select(*kept).order_by(*order))]
    engine.dispose()
    return rows


def _table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    names = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    return names


def test_every_previous_release_table_has_rows_here() -> None:
    assert set(ROWS) == set(previous.metadata.tables)


def test_a_new_catalog_is_made_by_the_migrations_and_records_the_revision(catalog_url: str) -> None:
    Catalog.connect(catalog_url).dispose()
    assert Catalog.revision(catalog_url) == SchemaRevision(SCHEMA_REVISION, SCHEMA_REVISION)
    again = Catalog.connect(catalog_url)  # at the revision: opens
    with again.read() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [
            SCHEMA_REVISION
        ]
    again.dispose()
    assert Catalog.upgrade(catalog_url).current, "already at the revision: nothing to do"


def test_the_schema_revision_is_the_newest_migration_in_one_line() -> None:
    script = MIGRATIONS.script()
    assert script.get_heads() == [SCHEMA_REVISION], "set SCHEMA_REVISION in _schema.py to the new revision"
    chain = list(script.walk_revisions())  # from the head down to the base
    assert chain[-1].revision == MIGRATIONS.base() == "0001"
    for newer, older in itertools.pairwise(chain):
        assert newer.down_revision == older.revision, "one revision after the other, no branches"
    for revision in chain:
        assert Path(revision.path).name.startswith(f"{revision.revision}_"), revision.path


def test_the_migrations_reach_exactly_the_tables_of_schema(catalog_url: str) -> None:
    catalog = Catalog.connect(catalog_url)  # every migration, on an empty database
    with catalog.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": compare_type,
                "compare_server_default": True,
                "version_table": VERSION_TABLE,
            },
        )
        differences = compare_metadata(context, metadata)
    catalog.dispose()
    assert differences == [], "a change in catalog/_schema.py needs its migration (catalog._migrations)"


def _schema_of(url: str) -> dict[str, Any]:
    """What the database says about each table: columns, keys, indexes (and their WHERE), uniques."""

    def plain(value: Any) -> str:
        return str(getattr(value, "text", value))

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        schema = {}
        for table in sorted(set(inspector.get_table_names()) - {VERSION_TABLE}):
            columns = {
                column["name"]: (
                    column["type"].compile(dialect=conn.dialect),
                    column["nullable"],
                    plain(column.get("default")),
                    column.get("autoincrement"),
                )
                for column in inspector.get_columns(table)
            }
            indexes = sorted(
                (
                    index["name"],
                    tuple(index["column_names"]),
                    bool(index["unique"]),
                    sorted((k, plain(v)) for k, v in index.get("dialect_options", {}).items()),
                )
                for index in inspector.get_indexes(table)
            )
            uniques = sorted(
                (str(unique["name"]), tuple(unique["column_names"]))
                for unique in inspector.get_unique_constraints(table)
            )
            schema[table] = (
                columns,
                inspector.get_pk_constraint(table)["constrained_columns"],
                indexes,
                uniques,
            )
    engine.dispose()
    return schema


def test_the_migrations_and_create_all_make_the_same_tables(catalog_url: str) -> None:
    Catalog.connect(catalog_url).dispose()
    migrated = _schema_of(catalog_url)
    engine = _engine(catalog_url, create=True)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            table.drop(conn)
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
    metadata.create_all(engine)
    engine.dispose()
    created = _schema_of(catalog_url)
    assert set(created) == set(metadata.tables)
    assert migrated == created
    assert any(index[3] for index in created["certificates"][2]) or "mysql" in catalog_url, "partial indexes"


def test_a_catalog_of_the_previous_release_is_refused_untouched_then_upgraded(catalog_url: str) -> None:
    _build_previous_release(catalog_url)
    before = _previous_rows(catalog_url)
    with pytest.raises(CatalogOutdated) as refused:
        Catalog.connect(catalog_url)
    message = str(refused.value)
    assert (
        f"tables are revision {MIGRATIONS.base()}" in message
        and f"needs revision {SCHEMA_REVISION}" in message
    )
    assert "`onceonly catalog upgrade`" in message
    assert VERSION_TABLE not in _table_names(catalog_url), "refused without touching the catalog"
    assert Catalog.revision(catalog_url) == SchemaRevision(MIGRATIONS.base(), SCHEMA_REVISION, recorded=False)

    upgraded = Catalog.upgrade(catalog_url)
    assert (upgraded.found, upgraded.recorded, upgraded.current) == (MIGRATIONS.base(), False, False)
    assert Catalog.revision(catalog_url) == SchemaRevision(SCHEMA_REVISION, SCHEMA_REVISION)
    assert _previous_rows(catalog_url) == before, "every row as it was"
    assert Catalog.upgrade(catalog_url).current, "a second upgrade has nothing to do"

    catalog = Catalog.connect(catalog_url)
    with catalog.begin() as conn:  # the stages read and write it as before
        assert cursor_of(conn, "gongan-household") == {"updated_at": "2026-11-20T08:00:00", "id": 42}
        save_cursor(conn, "gongan-household", "household", {"id": 43}, "run-2", rows=1)
    with catalog.read() as conn:
        assert cursor_of(conn, "gongan-household") == {"id": 43}
    catalog.dispose()


def test_a_catalog_from_before_revisions_with_other_columns_is_refused_by_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _build_previous_release(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as the version that kept certificate bodies in the row did
        conn.exec_driver_sql("ALTER TABLE certificates ADD COLUMN canonical BLOB")
        conn.exec_driver_sql("DROP TABLE log_bundles")
    for attempt in (Catalog.connect, Catalog.upgrade, Catalog.revision):
        with pytest.raises(CatalogRefused) as refused:
            attempt(url)
        assert not isinstance(refused.value, CatalogOutdated), "no upgrade can help"
        message = str(refused.value)
        assert "made by another version of OnceOnly and records no schema revision" in message
        assert (
            "its table certificates has columns +canonical" in message and "no table log_bundles" in message
        )
        assert "start a new one" in message
    names = sa.inspect(engine).get_table_names()
    assert "log_bundles" not in names and VERSION_TABLE not in names, "the old catalog is left as it was"
    engine.dispose()


def test_a_catalog_in_a_database_another_alembic_user_shares_is_kept_apart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # Prefect's server keeps its revision in alembic_version
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('7a73514ca2d6')")
    Catalog.connect(url).dispose()
    assert Catalog.revision(url).current
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "7a73514ca2d6"
    engine.dispose()


def test_upgrading_where_there_is_no_catalog_says_so_and_creates_nothing(
    tmp_path: Path, postgresql_database: str
) -> None:
    missing = tmp_path / "catalog.db"
    with pytest.raises(CatalogRefused, match=r"no catalog at .*nothing has run under this ONCEONLY_HOME"):
        Catalog.upgrade(f"sqlite:///{missing}")
    assert not missing.exists()
    with pytest.raises(CatalogRefused, match="the database holds no catalog: nothing to upgrade"):
        Catalog.upgrade(postgresql_database)
    assert Catalog.revision(postgresql_database) == SchemaRevision(None, SCHEMA_REVISION)
    assert _table_names(postgresql_database) == set()


NEXT = f"{int(SCHEMA_REVISION) + 1:04d}"  # the revision the next schema change will add
NEXT_MIGRATION = '''"""A rehearsal of the next migration.

Revision ID: {next}
Revises: {current}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "{next}"
down_revision = "{current}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("rehearsal_note", sa.Text(), nullable=True))
    op.add_column("connector_state", sa.Column("lease_host", sa.String(200), nullable=True))
'''.replace("{next}", NEXT).replace("{current}", SCHEMA_REVISION)


@pytest.fixture
def copied_migrations(tmp_path: Path) -> Migrations:
    """A copy of this version's migrations, to add to."""
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS.location, location, ignore=shutil.ignore_patterns("__pycache__"))
    return Migrations(location, SCHEMA_REVISION)


@pytest.fixture
def next_migrations(copied_migrations: Migrations) -> Migrations:
    """This version's migrations plus one more file, as the next schema change will add."""
    location = copied_migrations.location
    (location / "versions" / f"{NEXT}_rehearsal.py").write_text(NEXT_MIGRATION, encoding="utf-8")
    return Migrations(location, NEXT)


def test_a_next_migration_is_one_file_and_upgrades_the_catalog_before_it(
    catalog_url: str, next_migrations: Migrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    Catalog.connect(catalog_url).dispose()  # made by this version: at SCHEMA_REVISION, recorded
    with Catalog.connect(catalog_url).begin() as conn:
        save_cursor(conn, "gongan-household", "household", {"id": 7}, "run-1", rows=7)
    monkeypatch.setattr(migrations, "MIGRATIONS", next_migrations)  # the next version of OnceOnly
    with pytest.raises(CatalogOutdated) as refused:
        Catalog.connect(catalog_url)
    assert str(refused.value).startswith(
        f"the catalog is at schema revision {SCHEMA_REVISION}, "
        f"this version of OnceOnly needs revision {NEXT}: run `onceonly catalog upgrade`"
    )
    upgraded = Catalog.upgrade(catalog_url)
    assert (upgraded.found, upgraded.needed, upgraded.recorded) == (SCHEMA_REVISION, NEXT, True)
    engine = sa.create_engine(catalog_url)
    inspector = sa.inspect(engine)
    assert "rehearsal_note" in {column["name"] for column in inspector.get_columns("runs")}
    assert "lease_host" in {column["name"] for column in inspector.get_columns("connector_state")}
    engine.dispose()
    catalog = Catalog.connect(catalog_url)
    with catalog.read() as conn:
        assert cursor_of(conn, "gongan-household") == {"id": 7}
    catalog.dispose()

    monkeypatch.undo()  # this version again, on the catalog the next one upgraded
    with pytest.raises(CatalogRefused) as newer:
        Catalog.connect(catalog_url)
    assert f"at schema revision {NEXT}, which this version of OnceOnly does not know" in str(newer.value)
    assert "a newer OnceOnly made it" in str(newer.value)
    with pytest.raises(CatalogRefused, match="a newer OnceOnly made it"):
        Catalog.upgrade(catalog_url)


def test_a_catalog_of_the_previous_release_goes_through_every_migration(
    tmp_path: Path, next_migrations: Migrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    _build_previous_release(url)
    before = _previous_rows(url)
    monkeypatch.setattr(migrations, "MIGRATIONS", next_migrations)
    with pytest.raises(CatalogOutdated, match=f"needs revision {NEXT}"):
        Catalog.connect(url)
    assert Catalog.upgrade(url) == SchemaRevision("0001", NEXT, recorded=False)
    assert Catalog.revision(url) == SchemaRevision(NEXT, NEXT)
    assert _previous_rows(url) == before
    Catalog.connect(url).dispose()


def test_processes_making_or_upgrading_one_catalog_at_once_take_turns(catalog_url: str) -> None:
    outcomes: list[Any] = []

    def each(work: Any) -> None:
        threads = [threading.Thread(target=lambda: outcomes.append(_attempt(work))) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    each(lambda: Catalog.connect(catalog_url).dispose())  # three first runs on an empty database
    assert outcomes == [None, None, None]
    assert Catalog.revision(catalog_url) == SchemaRevision(SCHEMA_REVISION, SCHEMA_REVISION)

    engine = _engine(catalog_url, create=False)
    with engine.begin() as conn:  # back to a catalog of the previous release
        for table in reversed(metadata.sorted_tables):
            table.drop(conn)
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
    engine.dispose()
    _build_previous_release(catalog_url)
    outcomes.clear()
    each(lambda: Catalog.upgrade(catalog_url))  # three operators at once: one upgrades
    upgraded = [
        outcome for outcome in outcomes if isinstance(outcome, SchemaRevision) and not outcome.current
    ]
    assert len(upgraded) == 1 and len(outcomes) == 3, outcomes
    assert all(isinstance(outcome, SchemaRevision) for outcome in outcomes), outcomes
    assert Catalog.revision(catalog_url).current


def _attempt(work: Any) -> Any:
    try:
        return work()
    except Exception as exc:
        return exc


def test_alembic_drafts_the_next_migration_from_the_schema(
    tmp_path: Path, copied_migrations: Migrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What catalog._migrations tells a developer to run (on a copy of the scripts, not these).
    monkeypatch.setattr(migrations, "MIGRATIONS", copied_migrations)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'draft.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
        command.revision(alembic_config(conn), "next change", autogenerate=True, rev_id=NEXT)
    engine.dispose()
    draft = (copied_migrations.location / "versions" / f"{NEXT}_next_change.py").read_text(encoding="utf-8")
    assert f"down_revision: str | None = '{SCHEMA_REVISION}'" in draft
    assert "op." not in draft.split("def upgrade")[1], "the tables are the schema's: nothing to migrate"
