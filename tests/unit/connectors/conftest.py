"""Fixtures: the demo department systems, generated once for the connector tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from departments import Manifest, generate_all

DEPARTMENT_ROWS = 300
DEPARTMENT_SEED = 5


@pytest.fixture(scope="session")
def departments(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """``(root, manifest)`` of freshly generated department systems; tests must not change them."""
    root = tmp_path_factory.mktemp("departments")
    return root, generate_all(root, rows=DEPARTMENT_ROWS, seed=DEPARTMENT_SEED)
