"""The published log read by other processes over HTTP: README's generic tiles client, exactly as
printed, and `onceonly log check-proof --tiles URL`, against the catalog's newest checkpoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog import Catalog
from evidence.keys import SigningKey
from evidence.log import TransparencyLog, latest_checkpoint, leaf_at
from evidence.note import Checkpoint
from evidence.tiles import publish

README = Path(__file__).resolve().parents[3] / "README.md"
ORIGIN = "onceonly.example/test/client"
KEY = SigningKey.generate(ORIGIN)


def readme_client() -> str:
    """The Python block of README's "Publishing the log" section."""
    section = README.read_text(encoding="utf-8").split("### Publishing the log\n", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "one Python block in the section"
    return str(blocks[0])


def environment(home: Path) -> dict[str, str]:
    """This environment without proxies (the server is on the loopback) or OnceOnly settings."""
    drop = ("http_proxy", "https_proxy", "all_proxy", "onceonly_")
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith(drop)}
    return env | {"ONCEONLY_HOME": str(home)}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """``python -m http.server`` on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(www)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 43567 (http://…/) ..."
        port = re.search(r"port (\d+)", line)
        assert port, line
        yield f"http://127.0.0.1:{port.group(1)}"
    finally:
        server.kill()
        server.wait(timeout=10)


def test_readme_client_and_check_proof_read_only_the_published_files(
    catalog: Catalog, tmp_path: Path, served: str
) -> None:
    log = TransparencyLog(KEY, ORIGIN)
    with catalog.begin() as conn:  # three levels of tiles: 66,000 leaves, in two appends
        log.append(conn, [(b'{"n":%d}' % i, "lifecycle", f"e{i}") for i in range(65_000)])
    with catalog.begin() as conn:
        # after the leaf logging the first append's checkpoint
        log.append(conn, [(b'{"n":%d}' % i, "lifecycle", f"e{i}") for i in range(65_001, 66_000)])
    with catalog.read() as conn:
        published = publish(conn, tmp_path / "www" / "log")
        newest = latest_checkpoint(conn)
        entries = {n: leaf_at(conn, n).entry for n in (0, 255, 256, 65_535, 65_999)}
    assert published is not None and newest is not None
    signed = Checkpoint.parse(newest[1].split("\n\n")[0] + "\n")
    url = f"{served}/log"
    script = tmp_path / "check_leaf.py"
    script.write_text(readme_client(), encoding="utf-8")
    env = environment(tmp_path / "empty-home")

    for n, entry in entries.items():
        assert entry is not None
        done = subprocess.run(
            [sys.executable, str(script), url, str(n)], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"leaf {n} ({len(entry)} bytes) is in {ORIGIN} at size 66000\n"

    onceonly = str(Path(sys.executable).with_name("onceonly"))
    done = subprocess.run(
        [onceonly, "log", "check-proof", "--tiles", url, "--leaf", "65999", "--trusted-key", KEY.vkey],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"at size 66000: {signed.root_hash.hex()}" in done.stdout  # the catalog's newest root
    assert "VALID: leaf 65999 is in the log at size 66000" in done.stdout
    assert not (tmp_path / "empty-home").exists()  # nothing but the published files was read

    # The same client refuses an entry changed on the server.
    bundle = tmp_path / "www/log/tile/entries/257.p/208"
    bundle.write_bytes(bundle.read_bytes().replace(b'{"n":65999}', b'{"n":65990}'))
    done = subprocess.run(
        [sys.executable, str(script), url, "65999"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1 and "leaf 65999 is not in the tree" in done.stderr
