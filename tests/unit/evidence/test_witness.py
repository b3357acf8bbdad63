"""c2sp.org/tlog-witness add-checkpoint, both sides: every answer of the witness (200, 400, 403,
404, 409, 422), its state kept atomically across restarts and concurrent requests, and the log's
client that retries from a 409, checks the cosignature and keeps it in the catalog."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from catalog import Catalog, checkpoint_cosignatures
from evidence.cosignature import Cosigner, require_cosignatures
from evidence.keys import SigningKey
from evidence.log import KIND_USE, TransparencyLog, latest_checkpoint, log_entry
from evidence.merkle import EMPTY_ROOT, SM3, consistency_proof, leaf_hash, root
from evidence.note import Checkpoint, NoteSignature, add_signatures, open_note, split_note
from evidence.witness import (
    MAX_PROOF_LINES,
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    DistrictWitness,
    Witness,
    WitnessedLog,
    WitnessRefused,
    WitnessState,
    WitnessUnavailable,
    create_app,
    create_cosigner,
    last_cosigned_size,
    load_cosigner,
    load_witness_config,
    parse_witnesses,
    stored_cosignatures,
    submit_checkpoint,
    submit_to_witnesses,
    with_cosignatures,
)
from onceonly.errors import ConfigurationError, EvidenceError

ORIGIN = "onceonly.example/baodi/evidence"
WHEN = 1_795_000_000


class MemoryLog:
    """A log of ``entries`` signed by ``key``: checkpoints and consistency proofs at any size."""

    def __init__(self, key: SigningKey, entries: list[bytes], origin: str = ORIGIN) -> None:
        self.key, self.origin = key, origin
        self.leaves = [leaf_hash(e) for e in entries]

    def note(self, size: int) -> str:
        return self.key.sign_note(Checkpoint(self.origin, size, root(self.leaves[:size])).to_body())

    def request(self, old: int, size: int, note: str | None = None) -> bytes:
        proof = consistency_proof(old, self.leaves[:size]) if 0 < old < size else []
        return AddCheckpoint(old, tuple(proof), note or self.note(size)).to_body()


def entries(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{n}".encode() for n in range(count)]


@pytest.fixture(scope="module")
def log_key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture(scope="module")
def cosigner() -> Cosigner:
    return Cosigner.generate("witness.wuqing.example/w1")


@pytest.fixture
def log(log_key: SigningKey) -> MemoryLog:
    return MemoryLog(log_key, entries("a", 8))


@pytest.fixture
def witness(tmp_path: Path, log_key: SigningKey, cosigner: Cosigner) -> Witness:
    logs = [WitnessedLog(ORIGIN, (log_key.verifier,))]
    return Witness(cosigner, WitnessState(tmp_path / "witness" / "state.db"), logs, clock=lambda: WHEN)


def cosigned_by(witness: Witness, note: str, body: str) -> int:
    """The checked timestamp of the one cosignature line ``body`` holds."""
    assert body.endswith("\n") and body.count("\n") == 1
    line = NoteSignature.parse(body[:-1])
    cosigned = add_signatures(note, [line])
    (cosignature,) = require_cosignatures(cosigned, [witness.cosigner.vkey])
    return cosignature.timestamp


# ------------------------------------------------------------------------------------ 200


def test_a_first_checkpoint_then_an_extension_are_cosigned(witness: Witness, log: MemoryLog) -> None:
    reply = witness.add_checkpoint(log.request(0, 3))
    assert reply.status == 200, reply.body
    assert cosigned_by(witness, log.note(3), reply.body) == WHEN
    assert witness.state.sizes() == {ORIGIN: 3}
    reply = witness.add_checkpoint(log.request(3, 8))
    assert reply.status == 200, reply.body
    assert cosigned_by(witness, log.note(8), reply.body) == WHEN
    assert witness.state.sizes() == {ORIGIN: 8}
    again = witness.add_checkpoint(log.request(8, 8))  # the same tree again: cosigned again
    assert again.status == 200 and witness.state.sizes() == {ORIGIN: 8}


def test_an_empty_tree_is_cosigned_and_a_size_zero_with_another_root_is_not(
    witness: Witness, log_key: SigningKey
) -> None:
    empty = log_key.sign_note(Checkpoint(ORIGIN, 0, EMPTY_ROOT).to_body())
    assert witness.add_checkpoint(AddCheckpoint(0, (), empty).to_body()).status == 200
    wrong = log_key.sign_note(Checkpoint(ORIGIN, 0, hashlib.sha256(b"x").digest()).to_body())
    reply = witness.add_checkpoint(AddCheckpoint(0, (), wrong).to_body())
    assert reply.status == 422 and "empty tree" in reply.body


def test_the_monitoring_checkpoint_carries_the_log_and_witness_signatures(
    witness: Witness, log: MemoryLog, log_key: SigningKey
) -> None:
    origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
    assert witness.latest_checkpoint(origin_hash).status == 404
    stranger = Cosigner.generate("stranger.example/w").cosign(split_note(log.note(4))[0])
    submitted = add_signatures(log.note(4), [stranger])  # a line the witness cannot check
    assert witness.add_checkpoint(AddCheckpoint(0, (), submitted).to_body()).status == 200
    reply = witness.latest_checkpoint(origin_hash)
    assert reply.status == 200
    assert open_note(reply.body, log_key.verifier) == split_note(log.note(4))[0]
    assert require_cosignatures(reply.body, [witness.cosigner.vkey])
    assert {s.name for s in split_note(reply.body)[1]} == {ORIGIN, witness.cosigner.name}
    assert witness.latest_checkpoint("00" * 32).status == 404


# ------------------------------------------------------------------------------------ 400


def malformed_bodies(log: MemoryLog) -> dict[str, bytes]:
    note = log.note(3)
    hash_line = base64.b64encode(bytes(32)).decode()
    garbled = log.key.sign_note("onceonly.example/baodi/evidence\nthree\nroot\n")
    return {
        "no empty line": f"old 0\n{note}".replace("\n\n", "\n").encode(),
        "two empty lines": f"old 0\n\n\n{note}".encode(),
        "leading zero": f"old 01\n\n{note}".encode(),
        "negative": f"old -1\n\n{note}".encode(),
        "no old line": f"{hash_line}\n\n{note}".encode(),
        "not base64": f"old 1\n!!!!\n\n{note}".encode(),
        "short hash": f"old 1\n{base64.b64encode(bytes(31)).decode()}\n\n{note}".encode(),
        "64 proof lines": ("old 1\n" + f"{hash_line}\n" * (MAX_PROOF_LINES + 1) + f"\n{note}").encode(),
        "not utf-8": b"old 0\n\n\xff\xfe" + note.encode(),
        "not a signed note": b"old 0\n\nonceonly.example/baodi/evidence\n3\n",
        "not a checkpoint": f"old 0\n\n{garbled}".encode(),
        "old larger than the checkpoint": log.request(5, 3),
        "too large": b"old 0\n\n" + b"x" * 70_000,
    }


def test_malformed_requests_are_400(witness: Witness, log: MemoryLog) -> None:
    for case, body in malformed_bodies(log).items():
        reply = witness.add_checkpoint(body)
        assert reply.status == 400, (case, reply)
    assert witness.state.sizes() == {} and witness.state.refusals() == []


def test_a_rollback_is_400_and_a_stale_old_size_is_409(witness: Witness, log: MemoryLog) -> None:
    assert witness.add_checkpoint(log.request(0, 5)).status == 200
    rollback = witness.add_checkpoint(log.request(5, 3))  # old is right, the tree is smaller
    assert rollback.status == 400 and "larger than the checkpoint's size 3" in rollback.body
    stale = witness.add_checkpoint(log.request(3, 3))
    assert (stale.status, stale.body, stale.content_type) == (409, "5\n", SIZE_CONTENT_TYPE)
    assert witness.state.sizes() == {ORIGIN: 5}


# ------------------------------------------------------------------------------- 403, 404


def test_an_unknown_origin_is_404(witness: Witness, log_key: SigningKey) -> None:
    other = MemoryLog(log_key, entries("a", 3), origin="onceonly.example/elsewhere/evidence")
    reply = witness.add_checkpoint(other.request(0, 3))
    assert reply.status == 404 and "unknown log origin" in reply.body


def test_no_trusted_signature_or_a_bad_one_is_403(witness: Witness, log: MemoryLog) -> None:
    impostor = MemoryLog(SigningKey.generate(ORIGIN), entries("a", 8))
    reply = witness.add_checkpoint(impostor.request(0, 3))
    assert reply.status == 403 and "no signature by" in reply.body
    text, (signature,) = split_note(log.note(3))
    flipped = bytearray(signature.signature)
    flipped[10] ^= 0x01
    bad = text + "\n" + NoteSignature(signature.name, signature.key_id, bytes(flipped)).line
    reply = witness.add_checkpoint(AddCheckpoint(0, (), bad).to_body())
    assert reply.status == 403 and "bad signature" in reply.body
    assert witness.state.sizes() == {} and witness.state.refusals() == []


# ------------------------------------------------------------------------------------ 409


def test_a_stale_old_size_is_409_with_the_latest_size(witness: Witness, log: MemoryLog) -> None:
    assert witness.add_checkpoint(log.request(0, 3)).status == 200
    for old in (0, 2):
        reply = witness.add_checkpoint(log.request(old, 8))
        assert (reply.status, reply.body, reply.content_type) == (409, "3\n", SIZE_CONTENT_TYPE)
    assert witness.state.sizes() == {ORIGIN: 3}
    assert [r[1] for r in witness.state.refusals(ORIGIN)] == [409, 409], "kept: signed by the log"


# ------------------------------------------------------------------------------------ 422


def test_a_proof_that_does_not_verify_is_422(witness: Witness, log: MemoryLog) -> None:
    assert witness.add_checkpoint(log.request(0, 3)).status == 200
    proof = consistency_proof(3, log.leaves)
    wrong = (proof[0], bytes(32), *proof[2:])
    reply = witness.add_checkpoint(AddCheckpoint(3, wrong, log.note(8)).to_body())
    assert reply.status == 422 and "consistency proof from size 3 to 8 fails" in reply.body
    reply = witness.add_checkpoint(AddCheckpoint(3, (), log.note(8)).to_body())
    assert reply.status == 422
    assert witness.state.sizes() == {ORIGIN: 3}


def test_a_proof_from_size_zero_must_be_empty(witness: Witness, log: MemoryLog) -> None:
    reply = witness.add_checkpoint(AddCheckpoint(0, (bytes(32),), log.note(3)).to_body())
    assert reply.status == 422 and "from size 0 must be empty" in reply.body
    assert witness.state.sizes() == {}


def test_a_forked_log_is_refused_and_kept_as_evidence(
    witness: Witness, log: MemoryLog, log_key: SigningKey
) -> None:
    """The same origin and key, two different trees: the witness cosigns one history only."""
    assert witness.add_checkpoint(log.request(0, 5)).status == 200
    fork = MemoryLog(log_key, [*entries("a", 4), *entries("forked", 6)])
    same_size = witness.add_checkpoint(fork.request(5, 5))
    assert same_size.status == 422 and "another root hash" in same_size.body
    larger = witness.add_checkpoint(fork.request(5, 9))  # a proof from the fork's own size 5
    assert larger.status == 422
    from_zero = witness.add_checkpoint(fork.request(0, 9))
    assert from_zero.status == 409 and from_zero.body == "5\n"
    assert witness.state.sizes() == {ORIGIN: 5}
    assert witness.add_checkpoint(log.request(5, 8)).status == 200, "the log it cosigned goes on"
    statuses = [status for _, status, _, _ in witness.state.refusals(ORIGIN)]
    assert statuses == [422, 422, 409]
    kept = [request for *_, request in witness.state.refusals(ORIGIN)]
    assert all(split_note(fork.note(n))[0] in request for request, n in zip(kept, (5, 9, 9), strict=True))
    assert all(fork.note(9) in request for request in kept[1:]), "the log-signed checkpoint itself"


def test_an_sm3_log_is_witnessed_with_its_own_hash(
    tmp_path: Path, log_key: SigningKey, cosigner: Cosigner
) -> None:
    witness = Witness(
        cosigner, WitnessState(tmp_path / "s.db"), [WitnessedLog(ORIGIN, (log_key.verifier,), SM3)]
    )
    leaves = [SM3.leaf(e) for e in entries("a", 6)]

    def request(old: int, size: int) -> bytes:
        note = log_key.sign_note(Checkpoint(ORIGIN, size, root(leaves[:size], hasher=SM3)).to_body())
        proof = consistency_proof(old, leaves[:size], hasher=SM3) if old else []
        return AddCheckpoint(old, tuple(proof), note).to_body()

    assert witness.add_checkpoint(request(0, 3)).status == 200
    assert witness.add_checkpoint(request(3, 6)).status == 200


# --------------------------------------------------------------------- state and concurrency


def test_the_state_survives_a_restart(
    tmp_path: Path, log: MemoryLog, log_key: SigningKey, cosigner: Cosigner
) -> None:
    path = tmp_path / "state.db"
    logs = [WitnessedLog(ORIGIN, (log_key.verifier,))]
    assert Witness(cosigner, WitnessState(path), logs).add_checkpoint(log.request(0, 5)).status == 200
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    restarted = Witness(cosigner, WitnessState(path), logs)
    reply = restarted.add_checkpoint(log.request(0, 8))
    assert (reply.status, reply.body) == (409, "5\n")
    assert restarted.add_checkpoint(log.request(5, 8)).status == 200


def test_concurrent_requests_never_both_cosign_conflicting_trees(
    tmp_path: Path, log_key: SigningKey, cosigner: Cosigner
) -> None:
    """Sixteen forks of the same size race from size 0, in threads and through two Witness objects
    sharing one state file (as two processes would): exactly one is cosigned."""
    path = tmp_path / "state.db"
    logs = [WitnessedLog(ORIGIN, (log_key.verifier,))]
    witnesses = [Witness(cosigner, WitnessState(path), logs) for _ in range(2)]
    forks = [MemoryLog(log_key, entries(f"fork{n}", 4)).request(0, 4) for n in range(16)]
    statuses: list[int] = []
    start = threading.Barrier(len(forks))

    def submit(n: int) -> None:
        start.wait()
        statuses.append(witnesses[n % 2].add_checkpoint(forks[n]).status)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(len(forks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] + [409] * 15
    assert witnesses[0].state.sizes() == {ORIGIN: 4}


# ------------------------------------------------------------------------------ HTTP mapping


def test_the_http_service_maps_every_answer(witness: Witness, log: MemoryLog) -> None:
    client = TestClient(create_app(witness))
    ok = client.post("/add-checkpoint", content=log.request(0, 3))
    assert ok.status_code == 200 and ok.text.startswith("\u2014 witness.wuqing.example/w1 ")
    conflict = client.post("/add-checkpoint", content=log.request(0, 8))
    assert (conflict.status_code, conflict.text) == (409, "3\n")
    assert conflict.headers["content-type"] == SIZE_CONTENT_TYPE
    assert client.post("/add-checkpoint", content=b"old 0\n").status_code == 400
    assert client.post("/add-checkpoint", content=b"x" * 70_000).status_code == 413
    other = MemoryLog(log.key, entries("a", 3), origin="onceonly.example/elsewhere")
    assert client.post("/add-checkpoint", content=other.request(0, 3)).status_code == 404
    impostor = MemoryLog(SigningKey.generate(ORIGIN), entries("a", 8))
    assert client.post("/add-checkpoint", content=impostor.request(3, 8)).status_code == 403
    proof = (bytes(32),) * 3
    assert (
        client.post("/add-checkpoint", content=AddCheckpoint(3, proof, log.note(8)).to_body()).status_code
        == 422
    )
    assert client.get("/add-checkpoint").status_code == 405
    origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
    assert client.get(f"/{origin_hash}/checkpoint").status_code == 200


# ---------------------------------------------------------------------------- configuration


def test_the_witness_configuration_file(tmp_path: Path, log_key: SigningKey) -> None:
    path = tmp_path / "witness.yaml"
    path.write_text(
        f"logs:\n  - origin: {ORIGIN}\n    keys: ['{log_key.vkey}']\n    hash: sm3\n", encoding="utf-8"
    )
    (log,) = load_witness_config(path)
    assert (log.origin, log.verifiers, log.hasher.name) == (ORIGIN, (log_key.verifier,), "sm3")
    for text, problem in (
        ("logs: []", "non-empty list"),
        ("logs:\n  - keys: []", "needs an 'origin'"),
        (f"logs:\n  - origin: {ORIGIN}", "needs 'keys'"),
        (f"logs:\n  - origin: {ORIGIN}\n    keys: [nonsense]", "logs\\[1\\]: public key"),
        (f"logs:\n  - origin: {ORIGIN}\n    key: '{log_key.vkey}'\n    hash: md5", "md5"),
        (f"logs:\n  - origin: {ORIGIN}\n    key: '{log_key.vkey}'\n    color: red", "unknown field"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigurationError, match=problem):
            load_witness_config(path)


def test_the_districts_witnesses_setting(tmp_path: Path, cosigner: Cosigner) -> None:
    listed = [{"url": "http://127.0.0.1:7380/", "vkey": cosigner.vkey, "name": "baodi"}]
    (witness,) = parse_witnesses(json.dumps(listed))
    assert (witness.url, witness.label, witness.verifier) == (
        "http://127.0.0.1:7380",
        "baodi",
        cosigner.verifier,
    )
    path = tmp_path / "witnesses.yaml"
    path.write_text(f"- url: http://w.example\n  vkey: '{cosigner.vkey}'\n", encoding="utf-8")
    assert parse_witnesses(str(path))[0].label == cosigner.name
    assert parse_witnesses(None) == () == parse_witnesses(" ")
    for value, problem in (
        ('[{"url": "ftp://x", "vkey": "' + cosigner.vkey + '"}]', "http"),
        ('[{"url": "http://x"}]', "must be"),
        ('[{"url": "http://x", "vkey": "a+b+c"}]', "witness key"),
        (json.dumps(listed * 2), "listed twice"),
        (str(tmp_path / "missing.json"), "neither a JSON list nor a readable file"),
    ):
        with pytest.raises(ConfigurationError, match=problem):
            parse_witnesses(value)


def test_the_witness_key_files(tmp_path: Path) -> None:
    cosigner = create_cosigner(tmp_path / "w", "witness.example/w1", b"passphrase")
    assert oct((tmp_path / "w" / "witness.key.pem").stat().st_mode & 0o777) == oct(0o600)
    assert load_cosigner(tmp_path / "w", b"passphrase").vkey == cosigner.vkey
    with pytest.raises(EvidenceError, match="already exists"):
        create_cosigner(tmp_path / "w", "witness.example/w1", b"passphrase")
    with pytest.raises(EvidenceError, match="passphrase is wrong"):
        load_cosigner(tmp_path / "w", b"wrong")
    with pytest.raises(EvidenceError, match="witness init"):
        load_cosigner(tmp_path / "none", b"passphrase")


# ------------------------------------------------------------------------- the log's client


def district_log(catalog: Catalog, key: SigningKey, prefix: str, count: int) -> None:
    """``count`` appends of one entry each (every append after a log's first also logs the
    checkpoint before it: a log of n such appends has 2n - 1 leaves)."""
    log = TransparencyLog(key, ORIGIN)
    for n in range(count):
        with catalog.begin() as conn:
            log.append(conn, [log_entry(KIND_USE, f"{prefix}-{n}", {"n": n, "prefix": prefix})])


def http_for(witness: Witness) -> TestClient:
    return TestClient(create_app(witness), base_url="http://witness.test")


def target(witness: Witness) -> DistrictWitness:
    return DistrictWitness("http://witness.test", witness.cosigner.vkey, "w1")


def stored(catalog: Catalog) -> list[tuple[int, str]]:
    with catalog.read() as conn:
        rows = conn.execute(
            select(checkpoint_cosignatures.c.tree_size, checkpoint_cosignatures.c.witness_name).order_by(
                checkpoint_cosignatures.c.tree_size
            )
        ).all()
    return [(int(r.tree_size), str(r.witness_name)) for r in rows]


def test_the_log_submits_its_newest_checkpoint_and_keeps_the_checked_cosignature(
    catalog: Catalog, witness: Witness, log_key: SigningKey
) -> None:
    http = http_for(witness)
    district_log(catalog, log_key, "a", 3)
    first = submit_checkpoint(catalog, target(witness), client=http)
    assert first.ok and first.tree_size == 5 and first.cosignature is not None
    assert first.cosignature.witness == witness.cosigner.name and stored(catalog) == [
        (5, witness.cosigner.name)
    ]
    district_log(catalog, log_key, "b", 2)
    submit_checkpoint(catalog, target(witness), client=http)  # from size 5, with a proof to 9
    assert stored(catalog) == [(5, witness.cosigner.name), (9, witness.cosigner.name)]
    with catalog.read() as conn:
        assert last_cosigned_size(conn, witness.cosigner.verifier) == 9
        size, note = latest_checkpoint(conn) or (0, "")
        cosigned = with_cosignatures(conn, size, note)
        assert len(stored_cosignatures(conn, size)) == 1
    assert require_cosignatures(cosigned, [witness.cosigner.vkey])
    assert open_note(cosigned, log_key.verifier) == split_note(note)[0]


def test_a_409_is_retried_once_from_the_witnesss_size(
    catalog: Catalog, witness: Witness, log_key: SigningKey
) -> None:
    http = http_for(witness)
    district_log(catalog, log_key, "a", 3)
    submit_checkpoint(catalog, target(witness), client=http)
    with catalog.begin() as conn:  # the catalog forgot (a crash before it stored the cosignature)
        conn.execute(delete(checkpoint_cosignatures))
    district_log(catalog, log_key, "b", 3)
    submit_checkpoint(catalog, target(witness), client=http)  # old 0 -> 409 (5) -> from 5: 200
    assert stored(catalog) == [(11, witness.cosigner.name)]
    assert witness.state.sizes() == {ORIGIN: 11}


def test_a_forked_log_is_not_cosigned(
    tmp_path: Path, catalog: Catalog, witness: Witness, log_key: SigningKey
) -> None:
    """Two catalogs, one origin and key, different leaves: whichever the witness saw first wins."""
    http = http_for(witness)
    district_log(catalog, log_key, "a", 4)
    submit_checkpoint(catalog, target(witness), client=http)
    for size in (4, 6, 3):
        fork = Catalog.connect(f"sqlite:///{tmp_path / f'fork{size}.db'}")
        district_log(fork, log_key, "forked", size)
        with pytest.raises(WitnessRefused) as refused:
            submit_checkpoint(fork, target(witness), client=http)
        if size < 4:
            assert "has cosigned a tree of 7 leaves of this log, which has 5" in str(refused.value)
        else:
            assert refused.value.status == 422 and "422" in str(refused.value)
        assert stored(fork) == []
        fork.dispose()
    assert witness.state.sizes() == {ORIGIN: 7}


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_a_witness_that_is_down_or_answers_nonsense(
    catalog: Catalog, witness: Witness, log_key: SigningKey
) -> None:
    district_log(catalog, log_key, "a", 2)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(WitnessUnavailable, match="did not answer"):
        submit_checkpoint(catalog, target(witness), client=mock(down))
    with pytest.raises(WitnessUnavailable, match="503"):
        submit_checkpoint(catalog, target(witness), client=mock(lambda r: httpx.Response(503)))
    answers: list[Any] = [
        (409, "not a size", "text/plain"),
        (200, "", "text/plain"),
        (200, "garbage\n", "text/plain"),
        (200, Cosigner.generate("someone.else/w").cosign("x\n").line, "text/plain"),
    ]
    real = witness.add_checkpoint  # a cosignature over another checkpoint: it must not verify
    wrong = real(MemoryLog(log_key, entries("z", 2)).request(0, 2)).body
    answers.append((200, wrong, "text/plain"))
    for status, body, kind in answers:
        client = mock(
            lambda r, s=status, b=body, k=kind: httpx.Response(s, text=b, headers={"content-type": k})
        )
        with pytest.raises(WitnessRefused):
            submit_checkpoint(catalog, target(witness), client=client)
    assert stored(catalog) == []
    outcomes = submit_to_witnesses(catalog, [target(witness)], client=mock(down))
    assert [(o.ok, type(o.error).__name__) for o in outcomes] == [(False, "WitnessUnavailable")]


def test_an_empty_log_has_nothing_to_witness(catalog: Catalog, witness: Witness) -> None:
    with pytest.raises(EvidenceError, match="no checkpoint yet"):
        submit_checkpoint(catalog, target(witness), client=http_for(witness))
