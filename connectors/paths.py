"""Where a registration may point: the folders and databases the operator allows, never OnceOnly's own.

Example::

    paths = SourcePaths.of(settings)       # ONCEONLY_SOURCE_ROOTS, default home/departments
    paths.check("minzheng-marriages", "options.path", "/srv/drop/minzheng")   # fine
    paths.check("minzheng-marriages", "options.path", "/srv/onceonly/keys")
    # ConfigurationError: connector 'minzheng-marriages': options.path /srv/onceonly/keys is the
    # district's signing keys; a registration may name only folders under ONCEONLY_SOURCE_ROOTS (...)

A registration is written by a department engineer, not by the operator: its drop folder,
archive folder, snapshot folder and SQLite file must not reach what OnceOnly itself keeps —
the signing keys, the passphrase file, the catalog, the lake, the township extracts — or a
`connectors register` would print a line of the signing key as a "sample row", or archive the
lake away. Every such path must lie under one of the operator's roots
(``ONCEONLY_SOURCE_ROOTS``: folders and URL prefixes such as ``s3://bucket/drops/``,
separated by ``:`` or ``;``) and must neither be inside nor contain one of the protected places
(a lake on an object store, ``s3://bucket/lake``, is one too). Local paths are compared after
resolving ``..`` and symbolic links, so neither escapes; a URL with a ``..`` segment is refused.
A SQL source on the catalog's own database is refused too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from onceonly.errors import ConfigurationError

if TYPE_CHECKING:
    from onceonly.settings import Settings


_ROOTS_SEP = re.compile(r"[:;](?!//)")  # os.pathsep, but not the ':' of a URL's '://'


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # a URL, with or without '//'


class _Form(ValueError):
    """A path written in a form we do not confine (the reason)."""


def _local(path: str) -> Path | None:
    """The resolved local path of ``path`` (an absolute path or a file:// URL); None for a URL
    of another scheme; _Form for what fsspec or SQLite would read otherwise than we check it
    (a chained ``a::b`` URL, ``file:/x`` without '//', a relative path: relative to what?)."""
    if "::" in path:
        raise _Form("is a chained URL (…::…)")
    if "://" in path:
        scheme, rest = path.split("://", 1)
        if scheme.lower() not in ("file", "local"):
            return None
        path = unquote(urlsplit(path).path) if rest.startswith("/") else rest
    elif _SCHEME.match(path):
        raise _Form("is a URL without '//'")
    if not path.startswith("/"):
        raise _Form("is not an absolute path")
    return Path(os.path.realpath(path))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _url_key(url: str) -> str:
    """``scheme://rest/``, so a prefix matches whole segments (``s3://b/drops/`` is not a prefix
    of ``s3://b/dropsx/``); a bare ``scheme://`` stays as it is (every URL of the scheme)."""
    scheme, rest = url.split("://", 1)
    rest = rest.rstrip("/")
    return f"{scheme.lower()}://{rest}/" if rest else f"{scheme.lower()}://"


@dataclass(frozen=True)
class SourcePaths:
    """The roots a registration's paths must lie under, and the places they must not reach."""

    #: Local folders (resolved) and URL prefixes (``scheme://…/``) a registration may name.
    roots: tuple[str, ...]
    #: Local places OnceOnly keeps: (resolved path, what it is, whether what lies inside is
    #: refused too). The home itself is refused and so is any folder holding it, but not what
    #: lies inside it (the demo's department systems live in home/departments): its own places
    #: are listed one by one.
    protected: tuple[tuple[Path, str, bool], ...] = ()
    #: Databases OnceOnly keeps (SQLAlchemy URLs rendered without password), by what they are.
    databases: tuple[tuple[str, str], ...] = ()
    #: URL places OnceOnly keeps (``scheme://…/``: a lake on an object store), by what they are.
    protected_urls: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> SourcePaths:
        """The operator's roots (``settings.source_roots``, default home/departments) and the
        home's own places: the home itself, keys, secrets, catalog, lake, extracts, snapshots
        (a snapshot folder may be there: see :meth:`check`), Data Docs."""
        home = Path(os.path.abspath(settings.home))  # the default home, "var", is relative
        given = settings.source_roots
        roots = [r for r in _ROOTS_SEP.split(given) if r.strip()] if given else [str(home / "departments")]
        # A lake on an object store (s3://bucket/lake) is a URL place: no registration may reach it.
        lake = [(settings.lake_dir, "the lake")] if settings.lake_is_local else []
        lake_urls = [] if settings.lake_is_local else [(settings.lake_location, "the lake")]
        protected = [(home, "OnceOnly's home", False)]
        protected += [
            (p, what, True)
            for p, what in (
                (settings.keys_dir, "the district's signing keys"),
                (home / "secrets", "OnceOnly's secrets"),
                *lake,
                (settings.extracts_dir, "the township extracts"),
                (settings.datadocs_dir, "the Data Docs"),
                (home / "snapshots", "the snapshots of other connectors"),
                (home / "catalog.db", "the catalog"),
            )
        ]
        databases: list[tuple[str, str]] = []
        if settings.database_url is None:
            databases.append((f"sqlite:///{home / 'catalog.db'}", "the catalog"))
        else:
            databases.append((settings.database_url, "the catalog"))
        return cls.build(roots, protected, databases, lake_urls)

    @classmethod
    def build(
        cls,
        roots: Iterable[str],
        protected: Iterable[tuple[Path, str, bool]] = (),
        databases: Iterable[tuple[str, str]] = (),
        protected_urls: Iterable[tuple[str, str]] = (),
    ) -> SourcePaths:
        kept: list[str] = []
        for root in (r.strip() for r in roots):
            if "://" in root:
                local = _local(root)
                kept.append(str(local) if local is not None else _url_key(root))
            else:  # the operator's own setting: a relative folder is taken from the working one
                kept.append(os.path.realpath(os.path.abspath(root)))
        places = tuple((Path(os.path.realpath(p)), what, whole) for p, what, whole in protected)
        return cls(
            tuple(kept),
            places,
            tuple((_database(u), what) for u, what in databases),
            tuple((_url_key(u), what) for u, what in protected_urls),
        )

    def check(self, connector: str, option: str, value: str, *, also: Iterable[Path] = ()) -> None:
        """Refuse ``value`` (a folder, file or URL named by ``option``) unless it lies under a
        root and reaches no protected place; ``also``: further allowed local folders (a
        connector's own snapshot folder, inside the snapshots of all)."""
        try:
            local = _local(value)
        except _Form as exc:
            raise self._refused(connector, option, value, str(exc)) from None
        if local is None:
            self._check_url(connector, option, value)
            return
        if any(_inside(local, Path(os.path.realpath(p))) for p in also):
            return
        for place, what, whole in self.protected:
            if local == place:
                raise self._refused(connector, option, value, f"is {what}")
            if whole and place in local.parents:
                raise self._refused(connector, option, value, f"is inside {what}")
            if local in place.parents:
                raise self._refused(connector, option, value, f"contains {what}")
        if not any("://" not in r and _inside(local, Path(r)) for r in self.roots):
            raise self._refused(connector, option, value, "is outside the allowed roots")

    def check_database(self, connector: str, option: str, url: str) -> None:
        """Refuse a SQL source that is the catalog's own database (same server and database); a
        SQLite file is a path like the others (:meth:`check`)."""
        key = _database(url)
        if key == "sqlite::memory:":
            return  # nothing on disk
        if key.startswith("sqlite:"):
            self.check(connector, option, key.removeprefix("sqlite:"))
        for database, what in self.databases:
            if key == database:
                raise self._refused(connector, option, "(the URL)", f"is {what}'s database")

    def _check_url(self, connector: str, option: str, url: str) -> None:
        rest = url.split("://", 1)[1]
        if ".." in unquote(rest).replace("\\", "/").split("/"):
            raise self._refused(connector, option, url, "has a '..' segment")
        key = _url_key(url)
        for place, what in self.protected_urls:
            if key == place:
                raise self._refused(connector, option, url, f"is {what}")
            if key.startswith(place):
                raise self._refused(connector, option, url, f"is inside {what}")
            if place.startswith(key):
                raise self._refused(connector, option, url, f"contains {what}")
        if not any(_url_key(url).startswith(r) for r in self.roots if "://" in r):
            raise self._refused(connector, option, url, "is outside the allowed roots")

    def _refused(self, connector: str, option: str, value: str, why: str) -> ConfigurationError:
        shown = ", ".join(self.roots) or "none"
        return ConfigurationError(
            f"connector {connector!r}: {option} {value} {why}; a registration may name only folders "
            f"and URLs under ONCEONLY_SOURCE_ROOTS (now: {shown}), never OnceOnly's own keys, "
            "secrets, catalog, lake, extracts or snapshots"
        )


def _database(url: str) -> str:
    """A SQLAlchemy URL reduced to what names a database: driver family, host, port, database."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a SQLAlchemy URL: compared as written
        return url
    family = parsed.get_backend_name()
    if family == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            return "sqlite::memory:"
        # A path: checked as one by the caller (a relative one is refused there).
        return f"sqlite:{os.path.realpath(database) if database.startswith('/') else database}"
    host = (parsed.host or "localhost").lower().strip("[]")
    host = "loopback" if host in _LOOPBACK else host
    port = parsed.port or _DEFAULT_PORTS.get(family, 0)
    return f"{_FAMILIES.get(family, family)}://{host}:{port}/{parsed.database or ''}"


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "localhost.localdomain", "ip6-localhost"})
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "oracle": 1521, "mssql": 1433}
_FAMILIES = {"mariadb": "mysql"}  # one server speaks both


__all__ = ["SourcePaths"]
