"""Fixtures shared by the integration tests against the servers on this machine."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["postgres_url", "mariadb_url"], ids=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> str:
    """The URL of each server in turn (the fixtures skip, or fail under CI, when one is down)."""
    return str(request.getfixturevalue(request.param))
