"""Screenshots of the Prefect UI as operators see it, taken in headless Chromium against a real server.

Example (from the repository root; Debian's ``chromium`` and ``chromium-driver`` installed)::

    .venv/bin/python -m deployments.screenshots             # writes docs/prefect-*.png
    .venv/bin/python -m deployments.screenshots --out /tmp/shots

What it does, as an operator would: generated department systems in a temporary home, ``make
server`` (``deployments.server``: a real ``prefect server`` with the UI, the deployments of
``deployments/prefect.yaml`` and a process worker), ``onceonly alerts install`` against a local
webhook receiver, then the ``daily`` deployment run through the worker on a household registry
and a copy of it with 40 % bad rows, so the breach automation fires. Then three pages:

- ``prefect-run-artifacts.png`` — the run's page, Artifacts tab (summary table, report);
- ``prefect-deployments.png`` — the deployments: daily, one pull per connector, watch;
- ``prefect-automation-fired.png`` — the event feed with the breach and the automation it fired.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "screenshots-passphrase-0123456789-abcdef"
WINDOW = (1440, 960)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook: the notifications the automations send."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def _home(root: Path) -> tuple[Path, Path]:
    from departments import generate_all

    home = root / "var"
    generate_all(home / "departments", rows=300, seed=11)
    registrations = root / "registrations"
    registrations.mkdir()
    gongan = yaml.safe_load((REPO / "connectors/registrations/gongan-household.yaml").read_text("utf-8"))
    shutil.copy(home / "departments/gongan/household.db", home / "departments/breaching.db")
    with sqlite3.connect(home / "departments/breaching.db") as db:  # 40 % in no township of ours
        db.execute("UPDATE household_member SET township_code = '120114999000' WHERE id % 5 < 2")
    breaching = {**gongan, "name": "zz-breaching-household"}
    breaching["options"] = {**gongan["options"], "url": "sqlite:///{home}/departments/breaching.db"}
    for reg in (gongan, breaching):
        (registrations / f"{reg['name']}.yaml").write_text(yaml.safe_dump(reg, allow_unicode=True), "utf-8")
    return home, registrations


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"{what} within {timeout:.0f} s")


def _run_daily(api_url: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:

        def deployed() -> Any:
            try:
                return client.read_deployment_by_name("daily_sharing/daily")
            except ObjectNotFound:
                return None

        def finished() -> bool:
            state = client.read_flow_run(run.id).state
            return state is not None and state.is_final()

        deployment = _wait("the daily deployment", deployed, 180)
        run = client.create_flow_run_from_deployment(deployment.id)
        _wait("the daily run to finish", finished, 600)
        return str(run.id)


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise SystemExit(
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def _shoot(
    browser: Any, url: str, wait_for: str, path: Path, *, tab: str | None = None, scroll_to: str | None = None
) -> None:
    """Open ``url`` (and its ``tab``), wait until the page shows ``wait_for``, let it settle, save it."""
    browser.get(url)
    if tab is not None:
        xpath = f"//*[normalize-space(.)='{tab}']"  # the innermost element reading just that
        _wait(f"the {tab} tab on {url}", lambda: browser.find_elements("xpath", xpath), 60)[-1].click()
    try:
        _wait(f"{wait_for!r} on {url}", lambda: wait_for in browser.find_element("tag name", "body").text, 90)
    except TimeoutError:
        browser.save_screenshot(str(path.with_suffix(".timeout.png")))
        text = browser.find_element("tag name", "body").text
        raise TimeoutError(f"{wait_for!r} not on {url}; the page shows: {text[:600]!r}") from None
    if scroll_to is not None:  # the first element reading just that, in the middle of the screen
        (element, *_) = browser.find_elements("xpath", f"//*[normalize-space(.)='{scroll_to}']")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    time.sleep(2)  # charts and lazy panels finish drawing
    browser.save_screenshot(str(path))


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="onceonly-shots-"))
    port = _free_port()
    ui = f"http://127.0.0.1:{port}"
    api = f"{ui}/api"
    home, registrations = _home(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ONCEONLY_"))}
    env |= {
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "ONCEONLY_HOME": str(home),
        "ONCEONLY_KEY_PASSPHRASE": PASSPHRASE,
        "ONCEONLY_REGISTRATIONS_DIR": str(registrations),
        "ONCEONLY_PREFECT_PORT": str(port),
        "ONCEONLY_RETRY_WAIT_SECONDS": "0",
        "ONCEONLY_CONNECTOR_ATTEMPTS": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "deployments.server"], env=env, cwd=REPO, stdin=subprocess.DEVNULL
    )
    shots = [
        out / "prefect-run-artifacts.png",
        out / "prefect-deployments.png",
        out / "prefect-automation-fired.png",
    ]
    try:
        _wait("the server", lambda: _healthy(api), 240)
        with _receiver() as (hook, received):
            subprocess.run(
                [sys.executable, "-m", "cli.main", "alerts", "install", "--webhook", hook],
                env={**env, "PREFECT_API_URL": api},
                cwd=REPO,
                check=True,
            )
            run_id = _run_daily(api)
            _wait("the breach notification", lambda: received, 90)
        browser = _browser()
        try:
            run_page = f"{ui}/runs/flow-run/{run_id}"
            _shoot(browser, run_page, "daily-sharing-summary", shots[0], tab="Artifacts")
            _shoot(browser, f"{ui}/deployments", "pull-gongan-household", shots[1])
            _shoot(
                browser, f"{ui}/events", "Automation triggered", shots[2], scroll_to="Automation triggered"
            )
        finally:
            browser.quit()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)
    return shots


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs", help="where the PNG files go (default docs/)"
    )
    for path in take(parser.parse_args().out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
