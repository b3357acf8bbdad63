"""Offline proof bundles: a valid bundle verifies; any one changed character does not."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

import evidence
from evidence import bundle as bundle_module
from evidence.bundle import (
    BUNDLE_FORMAT,
    VerifiedBundle,
    build_bundle,
    certificate_leaf_bytes,
    verify_bundle,
)
from evidence.identifier import CertificateId
from evidence.keys import SigningKey
from evidence.merkle import inclusion_proof, leaf_hash, root
from evidence.note import Checkpoint
from onceonly.errors import EvidenceError, VerificationFailed

ORIGIN = "onceonly.example/120114"
USCC = "91350100M000100Y43"
LOG_SIZE = 7


def make_certificate(serial: int) -> dict[str, Any]:
    return {
        "schema": "onceonly-ecert/1",
        "id": str(CertificateId.build("HKB0001", USCC, serial)),
        "number": f"津滨户{serial:06d}",
        "type": {"code": "HKB0001", "name": "居民户口簿"},
        "issuer": {"name": "天津市滨海新区公安局", "code": USCC},
        "holder": {"name": "张三", "id_type": "居民身份证", "id": "11010519491231002X"},
        "issue_date": "2026-11-21",
        "valid_from": "2026-11-21",
        "valid_to": None,
        "status": "有效",
        "township": "120114001000",
        "fields": {"household_no": f"{serial:09d}", "members": 3, "head": True, "area": 86.5},
        "source": {"dataset": "hukou", "rows": [serial, serial + 1]},
        "version": 1,
        "previous": None,
    }


class Log:
    """A tiny in-memory log: certificates, their leaf hashes and a signed checkpoint."""

    def __init__(self, key: SigningKey, size: int = LOG_SIZE) -> None:
        self.key = key
        self.certificates = [make_certificate(serial) for serial in range(1, size + 1)]
        self.leaves = [leaf_hash(certificate_leaf_bytes(c)) for c in self.certificates]
        body = Checkpoint(ORIGIN, size, root(self.leaves)).to_body()
        self.checkpoint = key.sign_note(body)

    def bundle(self, index: int) -> dict[str, Any]:
        return build_bundle(
            self.certificates[index],
            index,
            inclusion_proof(index, self.leaves),
            self.checkpoint,
            self.key.vkey,
        )


@pytest.fixture(scope="module")
def log() -> Log:
    return Log(SigningKey.generate(ORIGIN))


def as_json_file(value: dict[str, Any]) -> dict[str, Any]:
    """What a verifier gets back from the bundle file."""
    loaded: dict[str, Any] = json.loads(json.dumps(value, ensure_ascii=False))
    return loaded


def test_exports() -> None:
    assert set(bundle_module.__all__) <= set(evidence.__all__)
    for name in bundle_module.__all__:
        assert getattr(evidence, name) is getattr(bundle_module, name)


def test_bundle_layout(log: Log) -> None:
    bundle = log.bundle(3)
    assert list(bundle) == [
        "format",
        "certificate",
        "leaf_index",
        "inclusion_proof",
        "checkpoint",
        "public_key",
    ]
    assert bundle["format"] == BUNDLE_FORMAT == "onceonly-bundle/1"
    assert bundle["inclusion_proof"] == [h.hex() for h in inclusion_proof(3, log.leaves)]
    assert bundle["public_key"] == log.key.vkey


def test_leaf_bytes_are_rfc8785_canonical_json() -> None:
    assert certificate_leaf_bytes({"b": [1, None], "a": "张三", "c": 1.5}) == (
        '{"a":"张三","b":[1,null],"c":1.5}'.encode()
    )
    with pytest.raises(EvidenceError, match="canonical JSON"):
        certificate_leaf_bytes({"n": 2**60})
    with pytest.raises(EvidenceError, match="canonical JSON"):
        certificate_leaf_bytes({"n": float("nan")})


def test_every_certificate_of_the_log_verifies(log: Log) -> None:
    for index, certificate in enumerate(log.certificates):
        verified = verify_bundle(as_json_file(log.bundle(index)), trusted_vkey=log.key.vkey)
        assert verified == VerifiedBundle(
            certificate_id=certificate["id"],
            status="有效",
            leaf_index=index,
            tree_size=LOG_SIZE,
            origin=ORIGIN,
            root_hash=root(log.leaves),
        )


def test_without_a_trusted_key_the_bundle_key_is_used(log: Log) -> None:
    assert verify_bundle(log.bundle(0)).origin == ORIGIN


def test_json_layout_does_not_matter(log: Log) -> None:
    bundle = log.bundle(5)
    for text in (
        json.dumps(bundle, ensure_ascii=False, indent=4),
        json.dumps(bundle, separators=(",", ":")),
        json.dumps(bundle, sort_keys=True, indent="\t"),
        json.dumps({**bundle, "certificate": dict(reversed(list(bundle["certificate"].items())))}),
    ):
        verify_bundle(json.loads(text), trusted_vkey=log.key.vkey)


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _leaf_paths(item, (*path, position))
    else:
        yield path


def _changed(value: Any) -> list[Any]:
    """Values that differ from ``value`` by one character, one unit, or one type."""
    if isinstance(value, bool):
        return [not value, int(value)]
    if isinstance(value, int):
        return [value + 1, value - 1, str(value)]
    if isinstance(value, float):
        return [value + 0.5, str(value)]
    if value is None:
        return [0, "", False]
    assert isinstance(value, str) and value
    return [
        chr(ord(value[0]) ^ 1) + value[1:],
        value[:-1] + chr(ord(value[-1]) ^ 1),
        value + " ",
        value[:-1],
    ]


def _set(container: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        container = container[step]
    container[path[-1]] = value


def _assert_fails(bundle: dict[str, Any], what: str, trusted: str | None) -> None:
    with pytest.raises(VerificationFailed):
        verify_bundle(as_json_file(bundle), trusted_vkey=trusted)
        pytest.fail(f"changing {what} went unnoticed")


def test_every_certificate_value_is_protected(log: Log) -> None:
    good = log.bundle(2)
    paths = list(_leaf_paths(good["certificate"]))
    assert len(paths) >= 20
    for path in paths:
        original = good["certificate"]
        for path_value in path:
            original = original[path_value]
        for replacement in _changed(original):
            bundle = copy.deepcopy(good)
            _set(bundle["certificate"], path, replacement)
            _assert_fails(bundle, f"certificate{list(path)} to {replacement!r}", log.key.vkey)
            _assert_fails(bundle, f"certificate{list(path)} to {replacement!r}", None)


def test_adding_or_removing_a_certificate_field_is_detected(log: Log) -> None:
    good = log.bundle(2)
    for name in good["certificate"]:
        bundle = copy.deepcopy(good)
        del bundle["certificate"][name]
        _assert_fails(bundle, f"removing certificate.{name}", log.key.vkey)
    bundle = copy.deepcopy(good)
    bundle["certificate"]["note"] = "added"
    _assert_fails(bundle, "adding a certificate field", log.key.vkey)


def test_every_proof_character_is_protected(log: Log) -> None:
    for index in (0, 3, LOG_SIZE - 1):
        good = log.bundle(index)
        for position, element in enumerate(good["inclusion_proof"]):
            for offset, char in enumerate(element):
                for replacement in {"0" if char != "0" else "1", char.upper(), chr(ord(char) ^ 1)}:
                    if replacement == char:
                        continue
                    bundle = copy.deepcopy(good)
                    bundle["inclusion_proof"][position] = (
                        element[:offset] + replacement + element[offset + 1 :]
                    )
                    _assert_fails(bundle, f"proof[{position}][{offset}] of leaf {index}", None)
        for cut in (
            good["inclusion_proof"][:-1],
            good["inclusion_proof"][1:],
            [*good["inclusion_proof"], "00" * 32],
        ):
            _assert_fails({**good, "inclusion_proof": cut}, f"proof length of leaf {index}", None)


def test_leaf_index_is_protected(log: Log) -> None:
    for index in range(LOG_SIZE):
        good = log.bundle(index)
        for other in [*range(-1, LOG_SIZE + 2), str(index), float(index), True, None]:
            if other == index and type(other) is int:
                continue
            _assert_fails({**good, "leaf_index": other}, f"leaf_index {index} to {other!r}", None)


def test_every_checkpoint_character_is_protected(log: Log) -> None:
    good = log.bundle(4)
    note = good["checkpoint"]
    assert note.count("\n") == 5  # origin, size, root, blank line, signature
    for position, char in enumerate(note):
        for replacement in {chr(ord(char) ^ 1), "x" if char != "x" else "y"}:
            changed = note[:position] + replacement + note[position + 1 :]
            _assert_fails({**good, "checkpoint": changed}, f"checkpoint[{position}]", None)


def test_every_public_key_character_is_protected(log: Log) -> None:
    good = log.bundle(4)
    vkey = good["public_key"]
    for position, char in enumerate(vkey):
        for replacement in {chr(ord(char) ^ 1), "x" if char != "x" else "y"}:
            changed = vkey[:position] + replacement + vkey[position + 1 :]
            _assert_fails({**good, "public_key": changed}, f"public_key[{position}]", None)


def test_a_bundle_resigned_by_another_key_needs_the_trusted_key_to_be_caught(log: Log) -> None:
    impostor = Log(SigningKey.generate(ORIGIN))
    forged = impostor.bundle(1)
    # Self-consistent, so it verifies on its own terms...
    verify_bundle(forged)
    # ...and is refused once the verifier says which key it trusts.
    with pytest.raises(VerificationFailed, match="not by the trusted key"):
        verify_bundle(forged, trusted_vkey=log.key.vkey)
    # Mixing the impostor's key with the real checkpoint fails on the signature.
    with pytest.raises(VerificationFailed, match="no signature by"):
        verify_bundle({**log.bundle(1), "public_key": impostor.key.vkey})


def test_a_malformed_trusted_key_is_reported(log: Log) -> None:
    with pytest.raises(VerificationFailed, match="trusted key itself is malformed"):
        verify_bundle(log.bundle(0), trusted_vkey="not a key")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.pop("checkpoint"), "bundle lacks checkpoint"),
        (lambda b: b.update(extra=1), "unknown fields extra"),
        (lambda b: b.update(format="onceonly-bundle/2"), "format"),
        (lambda b: b.update(certificate=[]), "certificate is not a JSON object"),
        (lambda b: b.update(leaf_index=-1), "leaf_index"),
        (lambda b: b.update(inclusion_proof="00"), "inclusion_proof is not a list"),
        (lambda b: b.update(inclusion_proof=[1]), r"inclusion_proof\[0\]"),
        (lambda b: b.update(checkpoint=None), "checkpoint is not a string"),
        (lambda b: b.update(public_key=b"key"), "public_key is not a string"),
        (lambda b: b.update(public_key="x+00000000+AA=="), "public key"),
        (lambda b: b.update(leaf_index=LOG_SIZE), "not inside the checkpoint's tree"),
        (lambda b: b["certificate"].pop("id"), "certificate has no id"),
        (lambda b: b["certificate"].update(id="1.2.156.3005.2.X"), "certificate: certificate id"),
        (lambda b: b["certificate"].update(status="注销"), "not in the checkpoint's log"),
    ],
)
def test_the_first_failure_is_named(log: Log, change: Any, message: str) -> None:
    bundle = copy.deepcopy(log.bundle(2))
    change(bundle)
    with pytest.raises(VerificationFailed, match=message):
        verify_bundle(bundle, trusted_vkey=log.key.vkey)


def test_failures_are_reported_in_order(log: Log) -> None:
    bundle = copy.deepcopy(log.bundle(2))
    bundle["certificate"]["status"] = "注销"  # would fail inclusion...
    bundle["leaf_index"] = LOG_SIZE + 3  # ...but the index check comes first
    with pytest.raises(VerificationFailed, match="not inside the checkpoint's tree"):
        verify_bundle(bundle)
    bundle["checkpoint"] = bundle["checkpoint"].replace(
        ORIGIN, ORIGIN + "x", 1
    )  # and before that, the signature
    with pytest.raises(VerificationFailed, match="bad signature"):
        verify_bundle(bundle)


def test_not_a_mapping() -> None:
    with pytest.raises(VerificationFailed, match="not a JSON object"):
        verify_bundle([])  # type: ignore[arg-type]


def test_status_is_optional(log: Log) -> None:
    key = SigningKey.generate(ORIGIN)
    certificate = make_certificate(99)
    del certificate["status"]
    leaves = [leaf_hash(certificate_leaf_bytes(certificate))]
    note = key.sign_note(Checkpoint(ORIGIN, 1, root(leaves)).to_body())
    verified = verify_bundle(build_bundle(certificate, 0, [], note, key.vkey), trusted_vkey=key.vkey)
    assert verified.status is None and verified.tree_size == 1
