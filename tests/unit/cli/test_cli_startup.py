"""What the command line imports to start: ``--help`` and catalog-only commands stay light, and no
command that runs no flow loads Prefect (so none starts its temporary server).

The modules are asserted, not the wall time (timing belongs to benchmarks): each case runs the
command in a fresh interpreter under ``python -X importtime`` and reads what it imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app, onceonly_home

# Never on the way to --help, nor to a command that only reads the catalog.
HEAVY = ("prefect", "great_expectations", "pyarrow", "cryptography", "numpy", "pandas")


def imported(
    args: list[str], home: Path, cwd: Path, **env: str
) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The top-level packages ``onceonly ARGS`` imports, and the finished process."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "ONCEONLY_"))}
    environ.update(ONCEONLY_HOME=str(home), ONCEONLY_SOURCE_ROOTS=str(home.parent), **env)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(Path(sys.executable).with_name("onceonly")), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        timeout=120,
    )
    modules = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return modules, done


def test_help_imports_no_stage_and_no_heavy_library(tmp_path: Path) -> None:
    modules, done = imported(["--help"], tmp_path / "var", tmp_path)
    assert done.returncode == 0 and "Usage: onceonly" in done.stdout
    loaded = modules & {*HEAVY, "sqlalchemy", "pydantic_settings", "rich", "catalog", "evidence", "contracts"}
    assert not loaded, f"--help imported {sorted(loaded)}"


@pytest.mark.parametrize(
    "command",
    [
        ["connectors", "list"],
        ["certificates", "list"],
        ["quarantine", "list"],
        ["keys", "list"],
        ["matters", "list"],
    ],
)
def test_catalog_only_commands_on_an_empty_home_load_no_heavy_library(
    tmp_path: Path, command: list[str]
) -> None:
    from catalog import Catalog
    from onceonly.settings import Settings

    home = tmp_path / "var"
    Catalog.connect(Settings(home=home).catalog_url, create=True).dispose()
    modules, done = imported(command, home, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    # `keys list` checks each key of the keyring (its verifier key): that takes the signature suites.
    allowed = {"cryptography"} if command == ["keys", "list"] else set()
    loaded = modules & set(HEAVY) - allowed
    assert not loaded, f"{' '.join(command)} imported {sorted(loaded)}"


def test_register_without_a_prefect_server_named_loads_no_prefect(tmp_path: Path) -> None:
    from test_cli_connectors import household_db, registration_file

    path = registration_file(tmp_path, household_db(tmp_path / "huji.db"))
    modules, done = imported(["connectors", "register", str(path)], tmp_path / "var", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "registered in the catalog" in done.stdout
    assert "will be brought up to date by the next run (no PREFECT_API_URL" in done.stdout
    assert "prefect" not in modules and "great_expectations" not in modules


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"onceonly {version('onceonly')}\n"


def test_help_shows_metavars_and_no_type_beside_flags() -> None:
    root = CliRunner().invoke(app, ["--help"]).output
    assert "--version" in root and "<bool>" not in root
    register = CliRunner().invoke(app, ["connectors", "register", "--help"]).output
    assert "FILE" in register and "{file}" not in register and "--block / --no-block" in register
    history = CliRunner().invoke(app, ["certificates", "history", "--help"]).output
    assert "CERT_ID" in history and "{cert_id}" not in history


def test_prefect_home_follows_onceonly_home_as_the_settings_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onceonly.settings import Settings

    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("ONCEONLY_HOME", raising=False)
    assert onceonly_home() == "var" == str(Settings().home)
    monkeypatch.setenv("onceonly_home", str(tmp_path / "lower"))  # the settings ignore the case
    assert onceonly_home() == str(tmp_path / "lower") == str(Settings().home)


def test_run_refuses_an_unknown_connector_before_starting_prefect(tmp_path: Path) -> None:
    modules, done = imported(
        ["run", "-c", "no-such-connector"], tmp_path / "var", tmp_path, ONCEONLY_KEY_PASSPHRASE="x" * 32
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no connector named 'no-such-connector' is registered" in done.stderr
    assert "gongan-household" in done.stderr  # the known ones are named
    assert not modules & {"prefect", "great_expectations"}, "checked before anything slow"
