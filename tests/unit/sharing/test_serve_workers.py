"""``onceonly serve --workers N`` (``sharing.workers``): N processes, each listening on a socket of
its own on the one port (SO_REUSEPORT), so the kernel spreads connections across them — uvicorn's
shared socket gave every connection of a load test to one process. A process that dies is started
again; a port something listens on already is refused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from counter_home import free_port, served, station

from sharing.workers import reuse_port_available

pytestmark = pytest.mark.skipif(
    not reuse_port_available() or not Path("/proc/net/tcp").exists(),
    reason="SO_REUSEPORT and /proc are Linux's: elsewhere --workers is uvicorn's own",
)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _sockets(port: int, state: str) -> set[int]:
    """Inodes of the IPv4 sockets on local ``port`` in ``state`` (0A listening, 01 established)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == state:
            found.add(int(fields[9]))
    return found


def _inodes_of(pid: int) -> set[int]:
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    return held


def _wait_for_listeners(port: int, count: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while len(_sockets(port, "0A")) < count:
        assert time.monotonic() < deadline, f"{len(_sockets(port, '0A'))} of {count} processes listen"
        time.sleep(0.2)


def _ask(client: httpx.Client, token: str, subject: str, case: str) -> httpx.Response:
    return client.post(
        "/api/skip-check",
        headers={"Authorization": f"Bearer {token}"},
        json={"subject_id": subject, "matter": "pension-enrolment", "purpose": "参保", "case_number": case},
    )


def test_each_process_listens_and_takes_connections(people: dict[str, str], home: Path) -> None:
    token = station()
    with served("--workers", "2") as (url, supervisor):
        port = int(url.rsplit(":", 1)[1])
        _wait_for_listeners(port, 2)
        workers = [p for p in _children(supervisor.pid) if _inodes_of(p) & _sockets(port, "0A")]
        assert len(workers) == 2, "two processes, each with a listening socket of its own"
        # Sixteen connections kept open at once, as a load tool's or a station's browser tabs:
        # the kernel hashes each to one of the two sockets (all to one: 1 in 2**15).
        clients = [httpx.Client(base_url=url, timeout=60) for _ in range(16)]
        try:
            with ThreadPoolExecutor(16) as pool:
                asked = pool.map(lambda n: _ask(clients[n], token, people["mine"], f"WQ-{n}"), range(16))
                answers = list(asked)
            assert [a.status_code for a in answers] == [200] * 16
            established = _sockets(port, "01")
            held = {p: len(_inodes_of(p) & established) for p in workers}
            # (all of them unless uvicorn closed some idle ones meanwhile: 5 s without a request)
            assert all(held.values()) and sum(held.values()) <= 16, held
        finally:
            for client in clients:
                client.close()


def test_a_process_that_dies_is_started_again(people: dict[str, str], home: Path) -> None:
    token = station()
    with served("--workers", "2") as (url, supervisor):
        port = int(url.rsplit(":", 1)[1])
        _wait_for_listeners(port, 2)
        first = _children(supervisor.pid)
        victim = next(p for p in first if _inodes_of(p) & _sockets(port, "0A"))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while victim in _children(supervisor.pid) or len(_sockets(port, "0A")) < 2:
            assert time.monotonic() < deadline, "the dead process was not replaced"
            time.sleep(0.2)
        assert supervisor.poll() is None
        with httpx.Client(base_url=url, timeout=60) as client:
            assert _ask(client, token, people["mine"], "WQ-after").status_code == 200


def test_a_port_in_use_is_refused(people: dict[str, str], home: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "2"],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert f"cannot serve on 127.0.0.1:{port}: something already listens there" in done.stderr


def test_the_processes_stop_when_their_supervisor_is_killed(people: dict[str, str], home: Path) -> None:
    """SIGKILL leaves no chance to stop them in order: each process asked the kernel for SIGTERM
    when its parent dies (PR_SET_PDEATHSIG), so none goes on serving on its own."""
    with served("--workers", "2") as (url, supervisor):
        port = int(url.rsplit(":", 1)[1])
        _wait_for_listeners(port, 2)
        workers = _children(supervisor.pid)
        supervisor.kill()
        supervisor.wait(10)
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{p}").exists() and _state(p) != "Z" for p in workers):
            assert time.monotonic() < deadline, "a serving process outlived its supervisor"
            time.sleep(0.2)
        assert not _sockets(port, "0A")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_processes_that_die_before_they_listen_stop_the_service(
    people: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """A configuration the supervisor's own checks let through but no process can start with (a
    matters catalogue that does not load): three deaths before listening, then exit 1 — not
    restarted for ever, and nothing left listening."""
    broken = tmp_path / "matters.yaml"
    broken.write_text("matters: [{code: x}]\n", encoding="utf-8")
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, "ONCEONLY_MATTERS_FILE": str(broken)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "3 in a row before they listened, stopping the service" in done.stderr
    assert not _sockets(port, "0A")
