"""Service stations (镇街便民服务中心, 村/社区服务站) and their credentials: deny by default.

Example::

    with catalog.begin() as conn:
        station, token = add_station(conn, "杨村街道便民服务中心", "120114001000", district="120114")
    # the token is shown once; only its SHA-256 is stored
    with catalog.read() as conn:
        station = authenticate(conn, token)        # None for an unknown or revoked credential

A station's credential is a 32-byte random token (``secrets.token_urlsafe``), prefixed with the
station id so a leaked one is recognisable (``oos_<id>_<secret>``). The catalog keeps its
SHA-256 only: a copy of the catalog gives no usable credential, and a 256-bit random secret
needs no slow hash. A station is scoped to one township (a 12-digit code of the district's
region list) and, optionally, to a list of matters or 一件事 bundles.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from catalog import Prepared, stations, utcnow
from onceonly.errors import ConfigurationError

TOKEN_PREFIX = "oos_"
# A station by its credential's digest: every request asks it (run on the driver).
_BY_DIGEST = Prepared(select(stations).where(stations.c.token_sha256 == bindparam("digest")))


@dataclass(frozen=True)
class Station:
    station_id: str
    name: str
    township: str
    matters: tuple[str, ...] | None  # None: every matter
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    def may_ask(self, matter: str) -> bool:
        return self.matters is None or matter in self.matters


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_station(
    conn: Connection,
    name: str,
    township: str,
    *,
    district: str,
    matters: Sequence[str] | None = None,
) -> tuple[Station, str]:
    """Register a station of ``township`` (checked against ``district``'s region list); the
    station and its credential, which is not stored and cannot be shown again."""
    from sharing.skipcheck import check_township

    check_township(township, district)
    if not name.strip():
        raise ConfigurationError("a station needs a name (e.g. 杨村街道便民服务中心)")
    station_id = f"st{secrets.token_hex(4)}"
    token = f"{TOKEN_PREFIX}{station_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    scope = sorted(set(matters)) if matters else None
    conn.execute(
        insert(stations).values(
            station_id=station_id,
            name=name.strip(),
            township=township,
            matters=json.dumps(scope) if scope else None,
            token_sha256=token_digest(token),
            created_at=now,
        )
    )
    return Station(station_id, name.strip(), township, tuple(scope) if scope else None, now, None), token


def authenticate(conn: Connection, token: str | None) -> Station | None:
    """The station whose credential ``token`` is, unless it was revoked; else None."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = token_digest(token)
    row = _BY_DIGEST.first(conn, digest=digest)
    if row is None or not hmac.compare_digest(row.token_sha256, digest) or row.revoked_at is not None:
        return None
    return _station(row)


def list_stations(conn: Connection) -> list[Station]:
    return [_station(r) for r in conn.execute(select(stations).order_by(stations.c.created_at))]


def revoke_station(conn: Connection, station_id: str) -> Station:
    """Revoke a station's credential (at once: every request with it is then refused)."""
    row = conn.execute(select(stations).where(stations.c.station_id == station_id)).first()
    if row is None:
        raise ConfigurationError(f"no station {station_id!r} (see `onceonly stations list`)")
    if row.revoked_at is None:
        conn.execute(update(stations).where(stations.c.station_id == station_id).values(revoked_at=utcnow()))
    row = conn.execute(select(stations).where(stations.c.station_id == station_id)).one()
    return _station(row)


def _station(row: Any) -> Station:
    return Station(
        str(row.station_id),
        str(row.name),
        str(row.township),
        tuple(json.loads(row.matters)) if row.matters else None,
        row.created_at,
        row.revoked_at,
    )


__all__ = [
    "TOKEN_PREFIX",
    "Station",
    "add_station",
    "authenticate",
    "list_stations",
    "revoke_station",
    "token_digest",
]
