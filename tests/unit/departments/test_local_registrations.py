"""The shipped registrations pointed at demo systems served here (departments.registrations)."""

from __future__ import annotations

from pathlib import Path

import yaml

from departments import local_registrations
from departments.registrations import SHIPPED


def test_http_reads_the_given_api_and_files_are_read_at_once(tmp_path: Path) -> None:
    target = local_registrations(tmp_path / "regs", "http://127.0.0.1:4711/api/v1", backoff_seconds=0.01)
    written = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in target.glob("*.yaml")}
    assert sorted(written) == sorted(p.name for p in SHIPPED.glob("*.yaml"))
    for data in written.values():
        if data["type"] == "http":
            assert data["options"]["base_url"] == "http://127.0.0.1:4711/api/v1"
            assert data["options"]["backoff_seconds"] == 0.01
        if data["type"] == "files":
            assert data["options"]["settle_seconds"] == 0
    assert {d["type"] for d in written.values()} >= {"http", "files", "sql"}
