"""The counter benchmark's inputs and its reading of wrk (the run itself needs wrk: make bench)."""

from __future__ import annotations

import subprocess
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
