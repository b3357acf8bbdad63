"""Registered connectors, kept in the catalog: what the daily flow runs.

Example::

    registration = parse_registration(path.read_text(), str(path))
    register(catalog, registration, path.read_text())   # replaces an earlier registration
    registered(catalog)                                  # {"gongan-household": Registration, ...}
    remove(catalog, "gongan-household")                  # kept as history, no longer run

The registration's YAML text is stored as written, so secrets are stored by NAME only (the
registration model refuses anything else). Files in ``settings.registrations_dir`` are
registered automatically the first time a catalog sees their connector's name
(:func:`register_directory`, called when the pipeline opens): that is how the demo's shipped
registrations get in; a connector removed later is not brought back by its file.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select, update

from catalog import Catalog, connector_registrations, insert_missing, utcnow
from connectors.registration import Registration, parse_registration
from onceonly.errors import ConfigurationError


def register(catalog: Catalog, registration: Registration, yaml_text: str) -> bool:
    """Store ``registration``; True if the name is new (or was removed), False if it replaced one."""
    c = connector_registrations.c
    values = {
        "type": registration.type,
        "dataset": registration.dataset,
        "department": registration.department,
        "yaml_text": yaml_text,
        "registered_at": utcnow(),
        "removed_at": None,
    }
    with catalog.begin() as conn:
        before = conn.execute(select(c.removed_at).where(c.name == registration.name)).first()
        if before is None:
            conn.execute(connector_registrations.insert().values(name=registration.name, **values))
            return True
        conn.execute(update(connector_registrations).where(c.name == registration.name).values(**values))
        return before.removed_at is not None


def remove(catalog: Catalog, name: str) -> Registration:
    """Mark ``name`` removed (the row stays as history); the removed registration is returned."""
    registration = registration_of(catalog, name)
    c = connector_registrations.c
    with catalog.begin() as conn:
        conn.execute(
            update(connector_registrations)
            .where(c.name == name, c.removed_at.is_(None))
            .values(removed_at=utcnow())
        )
    return registration


def registered(catalog: Catalog) -> dict[str, Registration]:
    """The active registrations, by name."""
    c = connector_registrations.c
    with catalog.read() as conn:
        rows = conn.execute(select(c.name, c.yaml_text).where(c.removed_at.is_(None)).order_by(c.name)).all()
    return {r.name: _parsed(r.name, r.yaml_text) for r in rows}


# A run asks for the registrations ~100 times (every subflow, every connector): each text is
# parsed and validated once per process, and each caller gets its own deep copy (the options
# are dicts). Keyed by the stored text, so a registration changed in the catalog is parsed anew.
_PARSED: dict[tuple[str, str], Registration] = {}
_PARSED_LOCK = threading.Lock()


def _parsed(name: str, text: str) -> Registration:
    key = (name, text)
    with _PARSED_LOCK:
        cached = _PARSED.get(key)
    if cached is None:
        cached = parse_registration(text, f"catalog registration {name!r}")  # errors are not kept
        with _PARSED_LOCK:
            if len(_PARSED) >= 512:
                _PARSED.clear()
            _PARSED[key] = cached
    return cached.model_copy(deep=True)


def removed(catalog: Catalog) -> list[str]:
    """Names of connectors removed and not registered again (their history stays)."""
    c = connector_registrations.c
    with catalog.read() as conn:
        return list(conn.execute(select(c.name).where(c.removed_at.is_not(None)).order_by(c.name)).scalars())


def registration_of(catalog: Catalog, name: str) -> Registration:
    regs = registered(catalog)
    if name not in regs:
        raise ConfigurationError(
            f"no connector named {name!r} is registered (known: {', '.join(sorted(regs)) or 'none'})"
        )
    return regs[name]


def register_directory(catalog: Catalog, directory: Path) -> list[str]:
    """Register each ``*.yaml`` in ``directory`` whose name the catalog has never seen."""
    added = []
    for path in sorted(directory.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        reg = parse_registration(text, str(path))
        values = {
            "name": reg.name,
            "type": reg.type,
            "dataset": reg.dataset,
            "department": reg.department,
            "yaml_text": text,
            "registered_at": utcnow(),
        }
        with catalog.begin() as conn:
            if (
                conn.execute(
                    select(connector_registrations.c.name).where(connector_registrations.c.name == reg.name)
                ).first()
                is None
            ):
                insert_missing(conn, connector_registrations, values)  # a concurrent opener may race us
                added.append(reg.name)
    return added


__all__ = ["register", "register_directory", "registered", "registration_of", "remove", "removed"]
