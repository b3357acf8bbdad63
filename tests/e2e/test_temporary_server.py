"""The temporary Prefect server of `onceonly run` / `onceonly demo` dies with the command.

Prefect's own ephemeral server outlived a killed `onceonly demo` and went on holding the
terminal and its port. Ours is started with PR_SET_PDEATHSIG: when the command is killed with
SIGKILL (no cleanup runs at all), the kernel stops the server too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == pid:
            found.append((int(entry.name), cmdline))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie has exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_run_takes_its_temporary_prefect_server_with_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ONCEONLY_"))}
    env |= {
        "ONCEONLY_HOME": str(tmp_path / "var"),
        "ONCEONLY_KEY_PASSPHRASE": "temporary-server-test-passphrase-0123456789",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    command = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        servers: list[int] = []
        while time.monotonic() < deadline and not servers:
            servers = [pid for pid, cmd in _children(command.pid) if "uvicorn" in cmd]
            time.sleep(0.2)
        assert servers, "the run started no temporary server"
        os.kill(command.pid, signal.SIGKILL)
        command.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(pid) for pid in servers):
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in servers), "the temporary server outlived the killed command"
    finally:
        if command.poll() is None:
            command.kill()
