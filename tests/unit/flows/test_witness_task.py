"""The daily run's last task submits the newest checkpoint to the district's witnesses: a cosignature
is kept; a witness that is down, or a wrong setting, is a warning and never fails the run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvicorn
from prefect.logging import disable_run_logger

from catalog import Catalog
from evidence.cosignature import Cosigner
from evidence.keys import SigningKey
from evidence.log import KIND_USE, TransparencyLog, log_entry
from evidence.witness import Witness, WitnessedLog, WitnessState, create_app, stored_cosignatures
from flows.daily_sharing import witness_checkpoint
from onceonly.settings import Settings

ORIGIN = "onceonly.example/wuqing/evidence"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture
def catalog(tmp_path: Path, key: SigningKey) -> Iterator[Catalog]:
    catalog = Catalog.connect(f"sqlite:///{tmp_path / 'catalog.db'}")
    with catalog.begin() as conn:
        TransparencyLog(key, ORIGIN).append(conn, [log_entry(KIND_USE, "u1", {"n": 1})])
    yield catalog
    catalog.dispose()


@pytest.fixture
def served(tmp_path: Path, key: SigningKey) -> Iterator[tuple[str, Cosigner]]:
    """A witness of ORIGIN on a real HTTP server (uvicorn in a thread) on 127.0.0.1."""
    cosigner = Cosigner.generate("witness.baodi.example/w1")
    witness = Witness(cosigner, WitnessState(tmp_path / "state.db"), [WitnessedLog(ORIGIN, (key.verifier,))])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(witness), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", cosigner
    server.should_exit = True
    thread.join(timeout=10)


def pipeline(tmp_path: Path, catalog: Catalog, witnesses: str | None) -> SimpleNamespace:
    return SimpleNamespace(settings=Settings(home=tmp_path / "var", witnesses=witnesses), catalog=catalog)


def test_the_newest_checkpoint_is_cosigned_at_the_end_of_the_run(
    tmp_path: Path, catalog: Catalog, served: tuple[str, Cosigner]
) -> None:
    url, cosigner = served
    witnesses = json.dumps([{"url": url, "vkey": cosigner.vkey}])
    with disable_run_logger():
        assert witness_checkpoint.fn(pipeline(tmp_path, catalog, witnesses)) == 1
    with catalog.read() as conn:
        assert [s.name for s in stored_cosignatures(conn, 1)] == [cosigner.name]


def test_a_witness_that_is_down_or_a_wrong_setting_does_not_fail_the_run(
    tmp_path: Path, catalog: Catalog, served: tuple[str, Cosigner]
) -> None:
    url, cosigner = served
    down = {"url": f"http://127.0.0.1:{free_port()}", "vkey": Cosigner.generate("down.example/w").vkey}
    with disable_run_logger():
        both = json.dumps([down, {"url": url, "vkey": cosigner.vkey}])
        assert witness_checkpoint.fn(pipeline(tmp_path, catalog, both)) == 1, "the other one still cosigns"
        assert witness_checkpoint.fn(pipeline(tmp_path, catalog, '[{"url": "x"}]')) == 0
        assert witness_checkpoint.fn(pipeline(tmp_path, catalog, None)) == 0
