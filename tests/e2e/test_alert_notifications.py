"""Alerts that reach someone, end to end: a real `prefect server`, `onceonly alerts install`, a
local HTTP receiver standing in for the operators' webhook, and real runs.

As an operator sets it up: alerts installed with `--webhook`, then the daily run as usual. A
run with a breaching and an unreachable department produces exactly one breach notification and
one connector-failed notification; a dataset whose contract allows 20 s (a shortened SLA) and
that lands nothing more is reported stale by the server's proactive automation, by `onceonly
watch` and as an event; when data lands again, a "recovered" notification follows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from departments import generate_all
from departments.generate import add_updates

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "alerts-e2e-passphrase-0123456789-abcdef"
SLA_SECONDS = 20


@dataclass
class Receiver:
    """The operators' webhook: every POST body, as received."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def subjects(self, containing: str) -> list[str]:
        with self.lock:
            return [n["subject"] for n in self.received if containing in n.get("subject", "")]

    def wait_for(self, containing: str, *, timeout: float, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [n for n in self.received if containing in n.get("subject", "")]
            if len(found) >= count:
                return found
            time.sleep(0.5)
        with self.lock:
            seen = [n.get("subject") for n in self.received]
        pytest.fail(f"no notification {containing!r} within {timeout:.0f} s; received: {seen}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with got.lock:
                got.received.append(
                    {
                        **json.loads(body),
                        "authorization": self.headers.get("Authorization"),
                        "received_at": dt.datetime.now(dt.UTC),
                    }
                )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    got.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/onceonly"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Site:
    env: dict[str, str]
    home: Path
    registrations: Path
    api_url: str

    def onceonly(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def events(self, name: str) -> list[dict[str, Any]]:
        response = httpx.post(
            f"{self.api_url}/events/filter",
            json={"filter": {"event": {"name": [name]}}, "limit": 50},
            timeout=10,
        )
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        return events


@pytest.fixture
def site(prefect_server: str, tmp_path: Path) -> Site:
    home = tmp_path / "var"
    generate_all(home / "departments", rows=300, seed=11)
    registrations = tmp_path / "registrations"
    registrations.mkdir()
    gongan = yaml.safe_load(
        (REPO / "connectors" / "registrations" / "gongan-household.yaml").read_text("utf-8")
    )
    broken = {**gongan, "name": "xx-broken-household"}
    broken["options"] = {**gongan["options"], "url": "sqlite:///{home}/departments/nowhere/household.db"}
    shutil.copy(home / "departments" / "gongan" / "household.db", home / "departments" / "breaching.db")
    with sqlite3.connect(home / "departments" / "breaching.db") as db:  # 40 % in no township of ours
        db.execute("UPDATE household_member SET township_code = '120114999000' WHERE id % 5 < 2")
    breaching = {**gongan, "name": "zz-breaching-household"}
    breaching["options"] = {**gongan["options"], "url": "sqlite:///{home}/departments/breaching.db"}
    for reg in (gongan, broken, breaching):
        (registrations / f"{reg['name']}.yaml").write_text(yaml.safe_dump(reg, allow_unicode=True), "utf-8")
    # The shortened SLA: household must land every 20 s (its contract says a day, plus a day).
    contracts = tmp_path / "contracts"
    shutil.copytree(REPO / "contracts" / "datasets", contracts)
    household = yaml.safe_load((contracts / "household.yaml").read_text("utf-8"))
    household["slaProperties"] = [{"property": "frequency", "value": SLA_SECONDS, "unit": "s"}]
    (contracts / "household.yaml").write_text(yaml.safe_dump(household, allow_unicode=True), "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ONCEONLY_"))}
    env |= {
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "ONCEONLY_HOME": str(home),
        "ONCEONLY_KEY_PASSPHRASE": PASSPHRASE,
        "ONCEONLY_REGISTRATIONS_DIR": str(registrations),
        "ONCEONLY_CONTRACTS_DIR": str(contracts),
        "ONCEONLY_RETRY_WAIT_SECONDS": "0",
        "ONCEONLY_CONNECTOR_ATTEMPTS": "1",
        "ONCEONLY_WEBHOOK_TOKEN": "hook-token-for-the-test",
    }
    return Site(env, home, registrations, prefect_server)


def _eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"{what} within {timeout:.0f} s")


def test_a_breach_notifies_once_a_silent_dataset_notifies_and_recovers(
    site: Site, receiver: Receiver
) -> None:
    installed = site.onceonly(
        "alerts", "install", "--webhook", receiver.url, "--token-secret", "ONCEONLY_WEBHOOK_TOKEN"
    )
    assert "created  onceonly-contract-breached" in installed.stdout
    assert "created  onceonly-freshness-household" in installed.stdout
    assert "9 automation(s)" in installed.stdout  # eight shipped, one dataset
    listed = site.onceonly("alerts", "list").stdout
    assert (
        f"onceonly-freshness-household  Proactive on onceonly.batch.landed within {SLA_SECONDS} s" in listed
    )
    token = ("--token-secret", "ONCEONLY_WEBHOOK_TOKEN")
    again = site.onceonly("alerts", "install", "--webhook", receiver.url, *token)  # idempotent: by name
    assert "created" not in again.stdout and "updated" not in again.stdout, "unchanged: left alone"
    assert "9 automation(s)" in again.stdout

    run = site.onceonly("run", check=False)
    assert run.returncode == 1, run.stdout + run.stderr  # two connectors failed, one landed

    breach = receiver.wait_for("数据合同未通过", timeout=60)[0]
    assert breach["subject"] == "【OnceOnly】数据合同未通过：household（zz-breaching-household）"
    assert "/ 300 行不合格" in breach["body"] and "上限 20.0%" in breach["body"]
    assert "township_code.region_code" in breach["body"]
    assert breach["source"] == "onceonly" and breach["authorization"] == "Bearer hook-token-for-the-test"
    failed = receiver.wait_for("部门系统拉取失败", timeout=30)[0]
    assert failed["subject"] == "【OnceOnly】部门系统拉取失败（transient）：xx-broken-household"
    assert "下次运行将从最后入库的批次继续" in failed["body"]
    time.sleep(8)  # a second notification of the same breach would have come by now
    assert len(receiver.subjects("数据合同未通过")) == 1
    assert len(receiver.subjects("部门系统拉取失败")) == 1
    landed = site.events("onceonly.batch.landed")
    assert {e["resource"]["prefect.resource.id"] for e in landed} == {"onceonly.dataset.household"}
    assert {e["payload"]["connector"] for e in landed} == {"gongan-household"}

    # Silent: nothing lands. The server's proactive automation notices by itself.
    stale = receiver.wait_for("数据超时未更新：household", timeout=SLA_SECONDS * 3 + 20)[0]
    last_landed = max(dt.datetime.fromisoformat(e["occurred"]) for e in landed)
    assert stale["received_at"] - last_landed >= dt.timedelta(seconds=SLA_SECONDS)
    assert f"{SLA_SECONDS} 秒内没有新批次入库" in stale["body"]
    watched = site.onceonly("watch", "--no-audit")
    assert "dataset household: STALE" in watched.stdout + watched.stderr
    _eventually(lambda: bool(site.events("onceonly.dataset.stale")), 30, "no onceonly.dataset.stale event")

    # Data lands again: one "recovered" notification. The breaching copy is pulled again and
    # still breaches, the broken system still fails: neither is notified a second time.
    add_updates(site.home / "departments", rows=300, seed=11)
    again_run = site.onceonly("run", check=False)
    assert again_run.returncode == 1, again_run.stdout + again_run.stderr
    recovered = receiver.wait_for("数据已恢复更新：household", timeout=60)[0]
    assert "gongan-household" in recovered["body"] and "STALE" in recovered["body"]
    for notification in receiver.received:  # counts and names only: no ID number in clear
        assert not re.search(r"\d{17}[\dXx]", notification["subject"] + notification["body"])

    time.sleep(5)
    assert len(receiver.subjects("数据合同未通过")) == 1, "the same refused rows are not a new breach"
    assert len(receiver.subjects("部门系统拉取失败")) == 1, "at most once per connector in six hours"
    assert len(site.events("onceonly.contract.breached")) == 2  # still announced at each refusal

    removed = site.onceonly("alerts", "remove")
    assert "deleted 9 automation(s)" in removed.stdout
