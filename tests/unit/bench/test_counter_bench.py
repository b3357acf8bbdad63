"""The counter benchmark's inputs and its reading of wrk (the run itself needs wrk: make bench)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import counter
from contracts.identifiers import is_valid_citizen_id

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.10ms    3.20ms  45.00ms   80.00%
  Latency Distribution
     50%   14.50ms
     75%   16.00ms
     90%   19.00ms
     99%   31.20ms
  5300 requests in 10.00s, 9.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    529.91
Transfer/sec:      0.90MB
"""


def test_the_subjects_are_distinct_valid_citizen_ids() -> None:
    ids = counter._citizen_ids(30_000).to_pylist()
    assert len(set(ids)) == 30_000 and all(is_valid_citizen_id(i) for i in ids)


def test_wrk_figures_are_read_with_their_units(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        assert command[0] == "wrk" and "--latency" in command
        return subprocess.CompletedProcess(command, 0, WRK_OUTPUT, "")

    monkeypatch.setattr(counter.subprocess, "run", fake)
    assert counter._wrk("http://127.0.0.1:8080/healthz", None) == {
        "requests_per_s": 529.9,
        "p50_ms": 14.5,
        "p99_ms": 31.2,
        "non_2xx": 3,
    }
    monkeypatch.setattr(
        counter.subprocess,
        "run",
        lambda command, **_: subprocess.CompletedProcess(
            command, 0, WRK_OUTPUT.replace("31.20ms", "812.00us"), ""
        ),
    )
    assert counter._wrk("http://x/", None)["p99_ms"] == 0.812


def test_without_wrk_the_benchmark_says_so_and_make_bench_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import Unavailable

    monkeypatch.setattr(counter.shutil, "which", lambda _: None)
    with pytest.raises(Unavailable, match="apt-get install wrk"):
        counter.run(1000)


def _counting_server() -> tuple[Any, list[float]]:
    """An HTTP server on a free port that answers every POST at once and notes when."""
    import http.server
    import threading
    import time

    seen: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits on a delayed ACK (~40 ms)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.mark.skipif(
    shutil.which("wrk") is None and not os.environ.get("CI"),  # in CI: fails without it
    reason="needs wrk, the benchmark's load tool (apt-get install wrk; .ci/run installs it)",
)
def test_a_paced_connection_waits_its_pauses_and_an_unpaced_one_does_not(tmp_path: Path) -> None:
    """The paced script's connections each wait ~pause_ms between an answer and the next request
    (wrk's delay hook); the same script without a pause asks as fast as it is answered."""
    server, seen = _counting_server()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        ids = counter._citizen_ids(10).to_pylist()
        paced = counter._lua(tmp_path / "paced.lua", "oos_token", ids, pause_ms=50)
        subprocess.run(["wrk", "-t1", "-c4", "-d2s", "-s", str(paced), url], check=True, capture_output=True)
        paced_count = len(seen)
        seen.clear()
        eager = counter._lua(tmp_path / "eager.lua", "oos_token", ids)
        subprocess.run(["wrk", "-t1", "-c4", "-d2s", "-s", str(eager), url], check=True, capture_output=True)
    finally:
        server.shutdown()
    # 4 connections x 2 s / 50 ms = 160 requests at most paced (fewer on a loaded machine: the
    # answers' time adds to the pauses); unpaced, as many as answered (thousands here).
    assert 20 <= paced_count <= 240, paced_count
    assert len(seen) > 2 * 240


def test_a_servers_cpu_is_read_for_its_whole_tree_and_for_itself_alone() -> None:
    """The server's CPU per answer counts its children (the log appender); ``alone`` the serving
    process itself, whose threads share one interpreter lock."""
    import os
    import sys
    import time

    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 30: pass"]
    )
    try:
        me = os.getpid()
        whole, alone = counter._cpu_seconds(me), counter._cpu_seconds(me, alone=True)
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:  # however busy the machine: until the child has spun
            time.sleep(0.1)
            grown_whole = counter._cpu_seconds(me) - whole
            grown_alone = counter._cpu_seconds(me, alone=True) - alone
            if grown_whole - grown_alone >= 0.3:
                break
        assert grown_whole - grown_alone >= 0.3, (grown_whole, grown_alone)  # the child's, spinning
        assert grown_alone < grown_whole / 2  # this process mostly slept
    finally:
        busy.kill()
        busy.wait()
