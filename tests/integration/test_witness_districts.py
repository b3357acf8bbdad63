"""Two districts (武清, 宝坻) witness each other (互通互认) through real `onceonly witness serve`
processes on 127.0.0.1: each district's checkpoints are cosigned by the other's witness, its
bundles verify with `--witness`, and a forked log (the same origin and key, another tree of the
same or a larger size) is refused with 409/422 and not cosigned, also after a witness restart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from catalog import Catalog, checkpoint_cosignatures
from evidence.keys import open_key_store
from evidence.log import TransparencyLog
from evidence.status_list import publish_status_lists
from onceonly.settings import Settings

pytestmark = pytest.mark.integration

PASSPHRASE = "a long passphrase for the two districts' test homes"
ONCEONLY = str(Path(sys.executable).parent / "onceonly")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class District:
    name: str
    home: Path
    origin: str

    @property
    def settings(self) -> Settings:
        return Settings(home=self.home, key_passphrase=PASSPHRASE, log_origin=self.origin)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ONCEONLY_")}
        env.update(
            ONCEONLY_HOME=str(self.home),
            ONCEONLY_KEY_PASSPHRASE=PASSPHRASE,
            ONCEONLY_LOG_ORIGIN=self.origin,
            PREFECT_HOME=str(self.home / "prefect"),
        )
        env.update(extra)
        return env

    def onceonly(self, *args: str, code: int = 0, **env: str) -> str:
        done = subprocess.run(
            [ONCEONLY, *args],
            env=self.env(**env),
            cwd=self.home.parent,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == code, output
        return output

    def land(self, seqs: range) -> None:
        """Certificates of household rows ``seqs``, then the issuer's status list, in the log."""
        from landing_harness import Harness, household_row

        settings = self.settings
        key, _ = open_key_store(settings).load_or_create(self.origin)
        catalog = Catalog.connect(settings.catalog_url)
        log = TransparencyLog(key, self.origin)
        harness = Harness(catalog, settings.lake_dir, key)
        harness.land([household_row(s) for s in seqs], before=None, after={"watermark": seqs[-1]}, log=log)
        with catalog.begin() as conn:
            publish_status_lists(conn, log)
        catalog.dispose()

    @property
    def log_vkey(self) -> str:
        return open_key_store(self.settings).load(self.origin).vkey

    def cosignatures(self) -> list[tuple[int, str]]:
        catalog = Catalog.connect(self.settings.catalog_url)
        with catalog.read() as conn:
            rows = conn.execute(
                sa.select(checkpoint_cosignatures.c.tree_size, checkpoint_cosignatures.c.witness_name)
            ).all()
        catalog.dispose()
        return [(int(r.tree_size), str(r.witness_name)) for r in rows]


class WitnessProcess:
    """`onceonly witness serve` of a district, witnessing the logs ``config`` names."""

    def __init__(self, district: District, config: Path) -> None:
        self.district, self.config, self.port = district, config, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.district.home / f"witness-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [ONCEONLY, "witness", "serve", "--config", str(self.config), "--port", str(self.port)],
            env=self.district.env(),
            cwd=self.district.home.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.district.home / f"witness-{self.port}.log").read_text()
            try:
                if httpx.get(f"{self.url}/{'0' * 64}/checkpoint", timeout=2).status_code == 404:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        pytest.fail(f"the witness of {self.district.name} did not answer within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def witnesses() -> Iterator[list[WitnessProcess]]:
    started: list[WitnessProcess] = []
    yield started
    for witness in started:
        witness.stop()


def test_two_districts_witness_each_other_and_refuse_a_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, witnesses: list[WitnessProcess]
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "unit" / "lake"))
    wuqing = District("武清", tmp_path / "wuqing", "onceonly.example/wuqing/evidence")
    baodi = District("宝坻", tmp_path / "baodi", "onceonly.example/baodi/evidence")
    wuqing.land(range(1, 3))
    baodi.land(range(10, 13))

    # Each district runs a witness for the other's log.
    vkeys = {}
    for district in (wuqing, baodi):
        name = f"witness.{district.home.name}.example/w1"
        vkeys[district.home.name] = district.onceonly("witness", "init", "--name", name).splitlines()[0]
    for district, other in ((wuqing, baodi), (baodi, wuqing)):
        config = district.home / "witness.yaml"
        config.write_text(
            f"logs:\n  - origin: {other.origin}\n    keys: ['{other.log_vkey}']\n", encoding="utf-8"
        )
        witnesses.append(WitnessProcess(district, config))
        witnesses[-1].start()
    wuqing_witness, baodi_witness = witnesses
    by = {
        "wuqing": json.dumps([{"name": "宝坻", "url": baodi_witness.url, "vkey": vkeys["baodi"]}]),
        "baodi": json.dumps([{"name": "武清", "url": wuqing_witness.url, "vkey": vkeys["wuqing"]}]),
    }

    # Each submits its newest checkpoint to the other's witness; bundles then carry the cosignature.
    for district, other in ((wuqing, baodi), (baodi, wuqing)):
        out = district.onceonly("witness", "submit", ONCEONLY_WITNESSES=by[district.home.name])
        assert f"witness {other.name} cosigned the checkpoint of size" in out
        listed = json.loads(district.onceonly("certificates", "list", "--json"))
        bundle = str(district.home / "bundle.json")
        assert "cosigned by 1 witness(es)" in district.onceonly(
            "certificates", "export", listed[0]["id"], "-o", bundle
        )
        out = district.onceonly(
            "verify", bundle, "--trusted-key", district.log_vkey, "--witness", vkeys[other.home.name]
        )
        assert "VALID" in out and f"cosigned by witness(es) witness.{other.home.name}.example/w1+" in out
        # Its own witness did not cosign it (it witnesses the other log): refused.
        out = district.onceonly("verify", bundle, "--witness", vkeys[district.home.name], code=1)
        assert "0 valid cosignature(s) of the 1 required" in out
        both = ("--witness", vkeys["wuqing"], "--witness", vkeys["baodi"])
        assert "1 valid cosignature(s) of the 2 required" in district.onceonly(
            "verify", bundle, *both, code=1
        )
        district.onceonly("verify", bundle, *both, "--min-witnesses", "1")
    cosigned_size = wuqing.cosignatures()[0][0]

    # A forked 武清 log: the same origin and key, another tree of the same size, and of a larger one.
    for name, seqs in (("fork-same", range(40, 42)), ("fork-larger", range(50, 53))):
        fork = District(name, tmp_path / name, wuqing.origin)
        shutil.copytree(wuqing.home / "keys", fork.home / "keys")
        fork.land(seqs)
        out = fork.onceonly("witness", "submit", code=1, ONCEONLY_WITNESSES=by["wuqing"])
        assert "refused the checkpoint" in out and "422" in out, out
        assert fork.cosignatures() == []
    state = baodi.onceonly("witness", "state")
    assert f"{wuqing.origin}  cosigned up to size {cosigned_size}" in state
    assert state.count(f"refused 422  {wuqing.origin}") == 2, state

    # The witness restarts: it remembers what it cosigned, so the real log goes on and a fork stays out.
    baodi_witness.stop()
    baodi_witness.start()
    wuqing.land(range(3, 5))
    assert "cosigned the checkpoint of size" in wuqing.onceonly(
        "witness", "submit", ONCEONLY_WITNESSES=by["wuqing"]
    )
    assert len(wuqing.cosignatures()) == 2
    fork = District("fork-larger", tmp_path / "fork-larger", wuqing.origin)  # now smaller than the log
    out = fork.onceonly("witness", "submit", code=1, ONCEONLY_WITNESSES=by["wuqing"])
    assert re.search(
        r"has cosigned a tree of \d+ leaves of this log, which has \d+: the log was rolled back", out
    )
    assert fork.cosignatures() == []

    # A witness that is down: `witness submit` says so and exits 1.
    baodi_witness.stop()
    wuqing.land(range(5, 6))
    out = wuqing.onceonly("witness", "submit", code=1, ONCEONLY_WITNESSES=by["wuqing"])
    assert "did not answer" in out
