"""The catalog's schema revision and its Alembic migrations, run from code (no alembic.ini).

Example::

    catalog = Catalog.connect(url)       # at SCHEMA_REVISION: opens; behind it: CatalogOutdated
    before = Catalog.upgrade(url)        # `onceonly catalog upgrade`: before.found -> before.needed

A catalog records its revision in the table ``catalog_version`` (Alembic's version table under
a name of our own, so that a database shared with another Alembic user, such as Prefect's
server, keeps the two apart). A new catalog is made by running every migration; an existing
one is opened only at the revision ``catalog._schema.SCHEMA_REVISION`` names. Behind it, it is
refused with the hint ``onceonly catalog upgrade`` and left untouched; at a revision this
version does not know (a newer OnceOnly made it) it is refused too. A catalog made before
schema revisions existed (no ``catalog_version``) is at revision 0001 if its columns are
0001's: the upgrade records that, then goes on.

Adding a migration, when the tables change, is the table change plus one new file:

1. change the tables in ``catalog/_schema.py`` and set ``SCHEMA_REVISION`` there to the new
   revision (``"0002"``);
2. add ``catalog/migrations/versions/0002_<what>.py`` with ``revision = "0002"``,
   ``down_revision = "0001"`` and an ``upgrade()`` of ``op`` calls that turn the previous
   revision's tables into the new ones (``op.add_column("runs", sa.Column(...))``; on SQLite
   anything beyond adding a column goes through ``with op.batch_alter_table(...)``). Alembic
   drafts it from the difference between the newest migration and ``_schema``::

       import sqlalchemy as sa
       from alembic import command
       from catalog._migrations import alembic_config
       with sa.create_engine("sqlite:///draft.db").begin() as conn:     # a new, empty file
           command.upgrade(alembic_config(conn), "head")
           command.revision(alembic_config(conn), "dead runs", autogenerate=True, rev_id="0002")

``tests/unit/catalog/test_catalog_migrations.py`` then checks, on SQLite, PostgreSQL and
MariaDB, that the migrations reach exactly ``_schema``'s tables, and upgrades a catalog of the
previous release (``previous_release_schema.py`` there: when a release ships, copy its
``_schema`` over it) with its rows intact.

Upgrades run in one transaction under the database's lock (:func:`changing_schema`; SQLite
and PostgreSQL change their schema in a transaction, all or nothing; on MariaDB each DDL
statement commits on its own: back the catalog up first).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import LargeBinary, create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine

from catalog._schema import SCHEMA_REVISION, metadata
from onceonly.errors import CatalogOutdated, CatalogRefused, CatalogUnavailable

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

VERSION_TABLE = "catalog_version"
LOCK_WAIT_SECONDS = 600  # MariaDB: how long an upgrade or a new catalog waits for another one


@dataclass(frozen=True)
class SchemaRevision:
    """A catalog's schema revision and the one this version of OnceOnly needs."""

    found: str | None  # None: the database holds no catalog yet
    needed: str
    recorded: bool = True  # False: a catalog from before schema revisions, at ``found`` by its columns

    @property
    def current(self) -> bool:
        return self.recorded and self.found == self.needed


@dataclass(frozen=True)
class Migrations:
    """The migration scripts in ``location``, whose newest revision must be ``head``."""

    location: Path
    head: str

    def config(self, conn: Connection) -> Config:
        """An Alembic Config for migrating ``conn`` (inside its transaction) with these scripts."""
        from alembic.config import Config

        config = Config(attributes={"connection": conn})
        config.set_main_option("script_location", str(self.location).replace("%", "%%"))
        config.set_main_option("path_separator", "os")
        return config

    def script(self) -> ScriptDirectory:
        return _script_directory(self.location)

    def base(self) -> str:
        """The first revision: the tables of the last release before schema revisions."""
        base = self.script().get_base()
        assert base is not None, f"no migrations in {self.location}"
        return base

    def known(self, revision: str) -> bool:
        from alembic.util import CommandError

        try:
            return self.script().get_revision(revision) is not None
        except CommandError:  # alembic.script.revision.ResolutionError and kin
            return False

    def recorded(self, conn: Connection) -> str | None:
        """The revision the catalog records (reading only), None if it records none."""
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        recorded = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        if len(recorded) > 1:
            raise CatalogRefused(
                f"the catalog records several schema revisions ({', '.join(sorted(recorded))}) in "
                f"{VERSION_TABLE}: it was not made by OnceOnly's migrations, which are one line"
            )
        return recorded[0] if recorded else None

    def read(self, conn: Connection) -> SchemaRevision:
        """The revision of the catalog ``conn`` reaches, reading only (nothing is changed).

        Refuses a catalog from before schema revisions whose columns are not those of the
        first revision, naming the tables that differ.
        """
        recorded = self.recorded(conn)
        if recorded is not None:
            return SchemaRevision(recorded, self.head)
        names = set(inspect(conn).get_table_names())
        if not names & set(metadata.tables):
            return SchemaRevision(None, self.head)  # another application's tables at most
        base = self.base()
        differences = _differences(_tables_of(self, base), conn)
        if differences:
            raise CatalogRefused(
                f"the catalog was made by another version of OnceOnly and records no schema revision: "
                f"{'; '.join(differences)}, against revision {base} (the oldest catalog "
                "`onceonly catalog upgrade` knows); keep the old catalog and start a new one "
                "(the demo: make demo RESET=1)"
            )
        return SchemaRevision(base, self.head, recorded=False)

    def check(self, found: SchemaRevision) -> None:
        """Refuse a catalog that is not at ``head``; the message says what to do."""
        if found.current:
            return
        if found.found is None:
            raise CatalogRefused("the database holds no catalog (a first run creates one)")
        if not self.known(found.found):
            raise CatalogRefused(
                f"the catalog is at schema revision {found.found}, which this version of OnceOnly does "
                f"not know (it knows revisions up to {self.head}): a newer OnceOnly made it; run that "
                "version, or restore the catalog's backup from before its upgrade"
            )
        if not found.recorded:
            raise CatalogOutdated(
                f"the catalog was made by the release before schema revisions (its tables are revision "
                f"{found.found}; this version of OnceOnly needs revision {self.head}): run "
                "`onceonly catalog upgrade` (back the catalog up first)"
            )
        raise CatalogOutdated(
            f"the catalog is at schema revision {found.found}, this version of OnceOnly needs revision "
            f"{self.head}: run `onceonly catalog upgrade` (back the catalog up first)"
        )

    def create_missing(self, engine: Engine) -> SchemaRevision:
        """Under the lock: make the catalog of an empty database (every migration), else read it.

        What was read without the lock may be half made (on MariaDB, where each DDL statement
        commits, another process may be making or upgrading the catalog right now); once the
        lock is held it is whole. A catalog found then is returned as it is, unchanged.
        """
        from alembic import command

        with changing_schema(engine) as conn:
            found = self.read(conn)
            if found.found is None:
                command.upgrade(self.config(conn), self.head)
                return SchemaRevision(self.head, self.head)
            return found

    def upgrade(self, engine: Engine) -> SchemaRevision:
        """Bring the catalog to ``head`` under the lock; returns what it was before."""
        from alembic import command

        with changing_schema(engine) as conn:
            found = self.read(conn)
            if found.found is None:
                raise CatalogRefused(
                    "the database holds no catalog: nothing to upgrade (a first run creates one)"
                )
            if found.current:
                return found
            if not self.known(found.found):
                self.check(found)  # refuses, saying a newer OnceOnly made it
            config = self.config(conn)
            if not found.recorded:
                command.stamp(config, found.found)
            command.upgrade(config, self.head)
            return found


MIGRATIONS = Migrations(Path(__file__).with_name("migrations"), SCHEMA_REVISION)


def alembic_config(conn: Connection) -> Config:
    """The Alembic Config of the catalog's migrations, for ``alembic.command`` on ``conn``."""
    return MIGRATIONS.config(conn)


def compare_type(
    context: Any, _inspected: Any, _column: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    """Alembic's column type comparison, less MySQL's renaming of ``BLOB(n)``.

    MariaDB stores ``BLOB(n)`` as the smallest BLOB kind that holds n bytes (``BLOB(32)`` is
    a TINYBLOB); that is no difference. None: Alembic's own comparison decides.
    """
    if context.dialect.name not in ("mysql", "mariadb") or type(metadata_type) is not LargeBinary:
        return None
    length = metadata_type.length or 2**16 - 1
    expected = next(kind for limit, kind in _MYSQL_BLOBS if length <= limit)
    return type(inspected_type).__name__.upper() != expected


_MYSQL_BLOBS = (
    (2**8 - 1, "TINYBLOB"),
    (2**16 - 1, "BLOB"),
    (2**24 - 1, "MEDIUMBLOB"),
    (2**32 - 1, "LONGBLOB"),
)


@contextmanager
def changing_schema(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the database's lock for changing the schema, until it commits.

    SQLite: the transaction's write lock (``BEGIN IMMEDIATE``). PostgreSQL: an advisory lock,
    one per schema, released when the transaction ends. MariaDB: a named lock (``GET_LOCK``),
    one per database, taken before the transaction and released after its commit, so the next
    process to hold it sees the version row as well as the tables.
    """
    with engine.connect() as conn:
        named = conn.dialect.name in ("mysql", "mariadb")
        if named:
            held = conn.execute(text(f"SELECT GET_LOCK({_MYSQL_LOCK}, :wait)"), {"wait": LOCK_WAIT_SECONDS})
            if held.scalar() != 1:
                raise CatalogUnavailable(
                    f"another process has been changing the catalog's schema for {LOCK_WAIT_SECONDS} s"
                )
            conn.commit()
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    lock = text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))")
                    conn.execute(lock, {"key": _LOCK_KEY})
                yield conn
        finally:
            if named and not conn.invalidated:
                conn.execute(text(f"SELECT RELEASE_LOCK({_MYSQL_LOCK})"))
                conn.commit()


_MYSQL_LOCK = "LEFT(CONCAT('onceonly.catalog:', DATABASE()), 64)"
_LOCK_KEY = 0x4F4E4345  # "ONCE": the first half of the PostgreSQL advisory lock key


@functools.cache
def _script_directory(location: Path) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(location))


@functools.cache
def _tables_of(migrations: Migrations, revision: str) -> dict[str, frozenset[str]]:
    """Each table's columns at ``revision``: the migrations run up to it on an empty database."""
    from alembic import command

    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            command.upgrade(migrations.config(conn), revision)
            inspector = inspect(conn)
            return {
                table: frozenset(column["name"] for column in inspector.get_columns(table))
                for table in inspector.get_table_names()
                if table != VERSION_TABLE
            }
    finally:
        engine.dispose()


def _differences(expected: dict[str, frozenset[str]], conn: Connection) -> list[str]:
    inspector = inspect(conn)
    existing = set(inspector.get_table_names())
    differences = []
    for table, columns in sorted(expected.items()):
        if table not in existing:
            differences.append(f"it has no table {table}")
            continue
        stored = {column["name"] for column in inspector.get_columns(table)}
        if stored != columns:
            changes = [f"+{name}" for name in sorted(stored - columns)]
            changes += [f"-{name}" for name in sorted(columns - stored)]
            differences.append(f"its table {table} has columns {' '.join(changes)}")
    return differences
