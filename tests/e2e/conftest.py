"""A finished demo home, made once per session as a user makes it (``onceonly demo``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home after ``onceonly demo`` (5,000 rows per department), run in its own process."""
    root = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONCEONLY_", "PREFECT_"))}
    env |= {
        "ONCEONLY_HOME": str(root / "var"),
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    onceonly = Path(sys.executable).with_name("onceonly")
    done = subprocess.run(
        [str(onceonly), "demo"], env=env, cwd=root, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (root / "demo-output.txt").write_text(done.stdout, encoding="utf-8")  # what the user read
    return root / "var"


@pytest.fixture
def home(demo_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The demo home as this process's ONCEONLY_HOME (no other ONCEONLY_ setting leaks in)."""
    for name in list(os.environ):
        if name.startswith("ONCEONLY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ONCEONLY_HOME", str(demo_home))
    yield demo_home
