"""Each stage's public surface is explicit: everything in __all__ exists, and nothing is missing."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["connectors", "evidence"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__, f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing


def test_connectors_exports() -> None:
    import connectors

    assert {"Connector", "Pulled", "create_connector", "load_registrations", "EnvironmentSecrets"} <= set(
        connectors.__all__
    )


def test_connector_types_come_from_entry_points() -> None:
    from connectors import connector_types

    assert set(connector_types()) >= {"sql", "http", "files"}
