"""Registrations stored in the catalog (SQLite and PostgreSQL): register, replace, remove."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from catalog import Catalog, connector_registrations
from connectors.registration import parse_registration
from connectors.registry import register, register_directory, registered, registration_of, remove
from onceonly.errors import ConfigurationError

TEXT = """\
name: gongan-household
department: 天津市公安局武清分局
dataset: household
type: sql
options:
  url: postgresql+psycopg://reader@db.gongan.local/huji
  table: household_member
  cursor: {column: updated_at, tiebreak: id}
secrets: {password: ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD}
"""


def test_register_replace_remove_and_register_again(catalog: Catalog) -> None:
    reg = parse_registration(TEXT, "gongan.yaml")
    assert register(catalog, reg, TEXT) is True
    assert registration_of(catalog, "gongan-household") == reg

    changed = TEXT.replace("household_member", "huji_member")
    assert register(catalog, parse_registration(changed, "gongan.yaml"), changed) is False
    assert registered(catalog)["gongan-household"].options["table"] == "huji_member"

    assert remove(catalog, "gongan-household").name == "gongan-household"
    assert registered(catalog) == {}
    with pytest.raises(ConfigurationError, match=r"no connector named 'gongan-household'.*known: none"):
        remove(catalog, "gongan-household")
    assert register(catalog, reg, TEXT) is True  # registering again brings it back
    assert set(registered(catalog)) == {"gongan-household"}


def test_a_directory_is_registered_once_and_removals_stick(catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "gongan.yaml").write_text(TEXT, encoding="utf-8")
    assert register_directory(catalog, tmp_path) == ["gongan-household"]
    assert register_directory(catalog, tmp_path) == []
    remove(catalog, "gongan-household")
    assert register_directory(catalog, tmp_path) == [] and registered(catalog) == {}


def test_the_catalog_stores_the_text_as_written_with_secret_names_only(catalog: Catalog) -> None:
    register(catalog, parse_registration(TEXT, "gongan.yaml"), TEXT)
    with catalog.read() as conn:
        (stored,) = conn.execute(sa.select(connector_registrations.c.yaml_text)).scalars()
    assert stored == TEXT and "password: ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD" in stored
    with pytest.raises(ConfigurationError, match="secrets"):  # a value pasted in is refused before storing
        pasted = TEXT.replace("ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD", "s3cret value!")
        parse_registration(pasted, "gongan.yaml")


def test_a_stored_text_is_parsed_once_and_each_caller_gets_its_own_copy(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    import connectors.registry as registry

    text = TEXT.replace("huji", f"huji_{uuid.uuid4().hex}")  # a text this process never parsed
    register(catalog, parse_registration(text, "gongan.yaml"), text)
    parsed: list[str] = []
    real = registry.parse_registration
    monkeypatch.setattr(registry, "parse_registration", lambda t, s: parsed.append(s) or real(t, s))
    first = registered(catalog)["gongan-household"]
    first.options["table"] = "changed by a caller"
    again = registered(catalog)["gongan-household"]
    assert again.options["table"] == "household_member" and len(parsed) == 1
    changed = text.replace("household_member", "huji_member")
    register(catalog, parse_registration(changed, "gongan.yaml"), changed)
    assert registered(catalog)["gongan-household"].options["table"] == "huji_member"
