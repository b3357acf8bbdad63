"""Offline proof bundles: a valid bundle verifies; any one changed character does not."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

import evidence
from evidence import bundle as bundle_module
from evidence.bundle import (
    BUNDLE_FORMAT,
    PREVIOUS_FORMAT,
    VerifiedBundle,
    build_bundle,
    certificate_leaf_bytes,
    verify_bundle,
)
from evidence.commitment import certificate_entry
from evidence.identifier import CertificateId
from evidence.keys import KeyRecord, Keyring, SigningKey
from evidence.merkle import consistency_proof, inclusion_proof, leaf_hash, root
from evidence.note import Checkpoint
from evidence.status_list import LIST_SIZE, PublishedList, make_document, sign_document
from onceonly.errors import EvidenceError, VerificationFailed

ORIGIN = "onceonly.example/120114"
USCC = "91350100M000100Y43"
CERTS = 7
LOG_SIZE = CERTS + 1  # the certificates, then their issuer's status list
PUBLISHED = dt.datetime(2026, 11, 21, 8, 0, tzinfo=dt.UTC)


def status_index(serial: int) -> int:
    return (serial * 40_503) % LIST_SIZE  # spread out, as the random assignment would


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
        "credential_status": {"issuer": USCC, "list": 0, "index": status_index(serial)},
    }


class Log:
    """A tiny in-memory log: certificates, their issuer's signed status list and a checkpoint."""

    def __init__(
        self,
        key: SigningKey,
        states: dict[int, str] | None = None,
        certificates: int = CERTS,
        *,
        committed: bool = True,
    ) -> None:
        self.key = key
        self.certificates = [make_certificate(serial) for serial in range(1, certificates + 1)]
        # Format 3: the leaf commits to the certificate under a salt; format 2 (a log an earlier
        # version wrote): the leaf is the certificate itself.
        self.salts = (
            [hashlib.sha256(f"salt {serial}".encode()).digest()[:16] for serial in range(1, certificates + 1)]
            if committed
            else None
        )
        document = make_document(
            USCC,
            0,
            ORIGIN,
            PUBLISHED,
            {status_index(serial): state for serial, state in (states or {}).items()},
        )
        canonical, signature = sign_document(document, key)
        self.status_list = PublishedList(document, signature, len(self.certificates))
        self.leaves = [
            leaf_hash(certificate_entry(c, self.salts[i]) if self.salts else certificate_leaf_bytes(c))
            for i, c in enumerate(self.certificates)
        ]
        self.leaves.append(leaf_hash(canonical))
        self.checkpoint = self.checkpoint_at(len(self.leaves))

    def checkpoint_at(self, size: int) -> str:
        return self.key.sign_note(Checkpoint(ORIGIN, size, root(self.leaves[:size])).to_body())

    def bundle(self, index: int, consistency_from: int | None = None) -> dict[str, Any]:
        return build_bundle(
            self.certificates[index],
            index,
            inclusion_proof(index, self.leaves),
            self.checkpoint,
            self.key.vkey,
            status_list=self.status_list,
            status_list_proof=inclusion_proof(self.status_list.leaf_index, self.leaves),
            consistency=None
            if consistency_from is None
            else (consistency_from, consistency_proof(consistency_from, self.leaves)),
            salt=self.salts[index] if self.salts else None,
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
        "log_hash",
        "status_list",
        "status_list_proof",
        "opening",
    ]
    assert bundle["format"] == BUNDLE_FORMAT == "onceonly-bundle/3"
    assert bundle["opening"] == {"salt": log.salts[3].hex()} if log.salts else False
    assert bundle["log_hash"] == "sha256" and bundle["status_list"]["leaf_index"] == CERTS
    assert bundle["inclusion_proof"] == [h.hex() for h in inclusion_proof(3, log.leaves)]
    assert bundle["public_key"] == log.key.vkey


def test_bundles_of_the_previous_format_still_verify() -> None:
    old = Log(SigningKey.generate(ORIGIN), committed=False)  # leaves that are the certificates
    bundle = as_json_file(old.bundle(2))
    assert bundle["format"] == PREVIOUS_FORMAT == "onceonly-bundle/2" and "opening" not in bundle
    assert verify_bundle(bundle, trusted_vkey=old.key.vkey).certificate_id == old.certificates[2]["id"]
    bundle["certificate"]["holder"]["id"] = "110105194912310037"
    with pytest.raises(VerificationFailed, match="not in the checkpoint's log"):
        verify_bundle(bundle, trusted_vkey=old.key.vkey)
    with_opening = as_json_file(old.bundle(2)) | {"opening": {"salt": "00" * 16}}
    with pytest.raises(VerificationFailed, match="has an opening"):
        verify_bundle(with_opening, trusted_vkey=old.key.vkey)


def test_the_opening_must_open_the_commitment(log: Log) -> None:
    bundle = as_json_file(log.bundle(1))
    assert verify_bundle(bundle, trusted_vkey=log.key.vkey).certificate_id == log.certificates[1]["id"]
    for salt in ("00" * 16, log.salts[2].hex() if log.salts else "", bundle["opening"]["salt"][:-2] + "ff"):
        changed = copy.deepcopy(bundle) | {"opening": {"salt": salt}}
        with pytest.raises(VerificationFailed, match="not in the checkpoint's log"):
            verify_bundle(changed, trusted_vkey=log.key.vkey)
    for bad in ({"salt": "00" * 15}, {"salt": "AB" * 16}, {"salt": 7}, {}, "00" * 16):
        with pytest.raises(VerificationFailed, match="opening"):
            verify_bundle(copy.deepcopy(bundle) | {"opening": bad}, trusted_vkey=log.key.vkey)
    missing = {k: v for k, v in bundle.items() if k != "opening"}
    with pytest.raises(VerificationFailed, match="lacks an opening"):
        verify_bundle(missing, trusted_vkey=log.key.vkey)


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
            status_published="2026-11-21T08:00:00Z",
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
    for index in (0, 3, CERTS - 1):
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
    for index in range(CERTS):
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
        (lambda b: b.update(format="onceonly-bundle/1"), "format"),
        (lambda b: b.pop("status_list"), "bundle lacks status_list"),
        (lambda b: b.update(log_hash="md5"), "log_hash"),
        (lambda b: b.update(status_list_proof=None), "status_list_proof is not a list"),
        (lambda b: b.update(consistency={"from_size": 1}), "consistency is not an object"),
        (lambda b: b["certificate"].pop("credential_status"), "lacks a field its public entry needs"),
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


def test_every_status_list_value_is_protected(log: Log) -> None:
    good = log.bundle(2)
    for path in _leaf_paths(good["status_list"]):
        original: Any = good["status_list"]
        for step in path:
            original = original[step]
        for replacement in _changed(original):
            bundle = copy.deepcopy(good)
            _set(bundle["status_list"], path, replacement)
            _assert_fails(bundle, f"status_list{list(path)} to {replacement!r}", log.key.vkey)


def test_every_status_list_proof_character_is_protected(log: Log) -> None:
    good = log.bundle(1)
    for position, element in enumerate(good["status_list_proof"]):
        for offset in range(len(element)):
            bundle = copy.deepcopy(good)
            flipped = "0" if element[offset] != "0" else "1"
            bundle["status_list_proof"][position] = element[:offset] + flipped + element[offset + 1 :]
            _assert_fails(bundle, f"status_list_proof[{position}][{offset}]", None)
    _assert_fails({**good, "status_list_proof": good["status_list_proof"][:-1]}, "a shorter proof", None)


def test_a_status_list_signed_by_another_key_is_refused(log: Log) -> None:
    impostor = Log(SigningKey.generate(ORIGIN))
    bundle = {**log.bundle(1), "status_list": impostor.status_list.to_json()}
    with pytest.raises(VerificationFailed, match="status list: note has no signature by"):
        verify_bundle(bundle, trusted_vkey=log.key.vkey)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("暂扣", "is suspended \\(暂扣\\)"),
        ("撤销", "is revoked \\(撤销\\)"),
        ("吊销", "revoked as a penalty \\(吊销\\)"),
        ("注销", "is cancelled \\(注销\\)"),
        ("失效", "is expired \\(失效\\)"),
        ("superseded", "is superseded by a newer version \\(失效\\)"),
    ],
)
def test_a_certificate_not_in_force_fails_with_its_state(state: str, message: str) -> None:
    log = Log(SigningKey.generate(ORIGIN), states={2: state})
    with pytest.raises(VerificationFailed, match=message + " according to the status list of " + USCC):
        verify_bundle(log.bundle(1), trusted_vkey=log.key.vkey)  # serial 2 is certificate 1
    # the others, sharing the same list, are in force
    assert verify_bundle(log.bundle(0), trusted_vkey=log.key.vkey).status == "有效"


def test_validity_dates_are_checked_against_today(log: Log) -> None:
    bundle = log.bundle(0)
    with pytest.raises(VerificationFailed, match="not valid before 2026-11-21"):
        verify_bundle(bundle, today=dt.date(2026, 11, 20))
    certificate = make_certificate(1) | {"valid_to": "2030-01-01"}
    rebuilt = _log_with(SigningKey.generate(ORIGIN), [certificate])
    assert verify_bundle(rebuilt.bundle(0), today=dt.date(2029, 12, 31)).status == "有效"
    with pytest.raises(VerificationFailed, match="expired on 2030-01-01"):
        verify_bundle(rebuilt.bundle(0), today=dt.date(2030, 1, 2))


def _log_with(key: SigningKey, certificates: list[dict[str, Any]]) -> Log:
    log = Log(key, certificates=0)
    log.certificates = certificates
    log.leaves = [leaf_hash(certificate_leaf_bytes(c)) for c in certificates]
    canonical, signature = sign_document(log.status_list.document, key)
    log.status_list = PublishedList(log.status_list.document, signature, len(certificates))
    log.leaves.append(leaf_hash(canonical))
    log.checkpoint = log.checkpoint_at(len(log.leaves))
    return log


def test_consistency_with_an_older_checkpoint(log: Log) -> None:
    for old_size in range(1, LOG_SIZE):
        old = log.checkpoint_at(old_size)
        verified = verify_bundle(log.bundle(0, consistency_from=old_size), old_checkpoint=old)
        assert verified.consistent_from == old_size
        # the proof for another size does not do
        other = old_size % (LOG_SIZE - 1) + 1
        if other != old_size:
            with pytest.raises(VerificationFailed, match=f"no consistency proof from size {old_size}"):
                verify_bundle(log.bundle(0, consistency_from=other), old_checkpoint=old)
    # the same size needs no proof; a bundle without a proof for a smaller one fails
    assert verify_bundle(log.bundle(0), old_checkpoint=log.checkpoint).consistent_from == LOG_SIZE
    with pytest.raises(VerificationFailed, match="carries no consistency proof from size 3 \\(none\\)"):
        verify_bundle(log.bundle(0), old_checkpoint=log.checkpoint_at(3))


def test_a_rewritten_log_is_caught_by_the_older_checkpoint(log: Log) -> None:
    # The verifier saw a checkpoint of a log whose first leaf was different (a rewrite).
    forked = copy.deepcopy(log.leaves)
    forked[0] = leaf_hash(b"a certificate that was later removed")
    old = log.key.sign_note(Checkpoint(ORIGIN, 4, root(forked[:4])).to_body())
    with pytest.raises(VerificationFailed, match="not consistent with the older checkpoint"):
        verify_bundle(log.bundle(0, consistency_from=4), old_checkpoint=old)
    same_size = log.key.sign_note(Checkpoint(ORIGIN, LOG_SIZE, root(forked)).to_body())
    with pytest.raises(VerificationFailed, match="two different trees of size"):
        verify_bundle(log.bundle(0), old_checkpoint=same_size)
    # a checkpoint of a larger tree, of another log, or by another key
    larger = log.key.sign_note(Checkpoint(ORIGIN, LOG_SIZE + 5, root(forked)).to_body())
    with pytest.raises(VerificationFailed, match="larger tree"):
        verify_bundle(log.bundle(0), old_checkpoint=larger)
    other_origin = log.key.sign_note(Checkpoint(ORIGIN + "2", 3, root(log.leaves[:3])).to_body())
    with pytest.raises(VerificationFailed, match="of the log"):
        verify_bundle(log.bundle(0, consistency_from=3), old_checkpoint=other_origin)
    stranger = SigningKey.generate(ORIGIN).sign_note(Checkpoint(ORIGIN, 3, root(log.leaves[:3])).to_body())
    with pytest.raises(
        VerificationFailed, match=r"the older checkpoint \(--consistency-from\): note has no signature"
    ):
        verify_bundle(log.bundle(0, consistency_from=3), old_checkpoint=stranger)


def test_every_consistency_proof_character_is_protected(log: Log) -> None:
    good = log.bundle(0, consistency_from=3)
    old = log.checkpoint_at(3)
    for position, element in enumerate(good["consistency"]["proof"]):
        for offset in range(0, len(element), 7):
            bundle = copy.deepcopy(good)
            flipped = "0" if element[offset] != "0" else "1"
            bundle["consistency"]["proof"][position] = element[:offset] + flipped + element[offset + 1 :]
            with pytest.raises(VerificationFailed):
                verify_bundle(bundle, old_checkpoint=old)
    with pytest.raises(VerificationFailed):
        verify_bundle({**good, "consistency": {"from_size": 3, "proof": []}}, old_checkpoint=old)


def test_a_newer_status_list_decides_the_state(log: Log) -> None:
    later = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
    suspended = make_document(USCC, 0, ORIGIN, later, {status_index(2): "暂扣"})
    _, signature = sign_document(suspended, log.key)
    newer = as_json_file(PublishedList(suspended, signature, 99).to_json())
    bundle = log.bundle(1)  # serial 2, in force in the bundle's own list
    assert verify_bundle(bundle).status == "有效"
    with pytest.raises(VerificationFailed, match=r"is suspended \(暂扣\) .* published 2026-11-22T08:00:00Z"):
        verify_bundle(bundle, newer_status_list=newer)
    assert verify_bundle(log.bundle(0), newer_status_list=newer).status == "有效"
    # older than the bundle's, for another list, or signed by someone else: refused
    older = make_document(USCC, 0, ORIGIN, PUBLISHED - dt.timedelta(days=1), {})
    with pytest.raises(VerificationFailed, match="is older than the bundle's"):
        verify_bundle(
            bundle, newer_status_list=PublishedList(older, sign_document(older, log.key)[1], 1).to_json()
        )
    other_list = make_document(USCC, 1, ORIGIN, later, {})
    with pytest.raises(VerificationFailed, match="the certificate's is"):
        verify_bundle(
            bundle,
            newer_status_list=PublishedList(other_list, sign_document(other_list, log.key)[1], 1).to_json(),
        )
    forged = PublishedList(suspended, sign_document(suspended, SigningKey.generate(ORIGIN))[1], 99)
    with pytest.raises(VerificationFailed, match="the newer status list: note has no signature"):
        verify_bundle(bundle, newer_status_list=forged.to_json())


# ----------------------------------------------------------------------- key rotation, keyring


def _rotated(log: Log) -> tuple[SigningKey, dict[str, Any]]:
    """A bundle whose checkpoint a new key signed after a rotation; the list is the old key's."""
    new = SigningKey.generate(ORIGIN)
    checkpoint = new.sign_note(Checkpoint(ORIGIN, len(log.leaves), root(log.leaves)).to_body())
    bundle = build_bundle(
        log.certificates[2],
        2,
        inclusion_proof(2, log.leaves),
        checkpoint,
        new.vkey,
        status_list=log.status_list,
        status_list_proof=inclusion_proof(log.status_list.leaf_index, log.leaves),
        status_list_key=log.key.vkey,
        salt=log.salts[2] if log.salts else None,
    )
    return new, as_json_file(bundle)


def _record(key: SigningKey, **times: dt.datetime | None) -> KeyRecord:
    return KeyRecord(
        name=key.name,
        suite=key.suite,
        key_id=key.key_id.hex(),
        vkey=key.vkey,
        created=times.pop("created", None) or PUBLISHED - dt.timedelta(days=30),
        **times,
    )


def test_a_status_list_signed_before_a_rotation_ships_its_own_key(log: Log) -> None:
    new, bundle = _rotated(log)
    assert bundle["status_list_key"] == log.key.vkey
    assert verify_bundle(bundle, trusted_vkey=new.vkey).status == "有效"
    without = {k: v for k, v in bundle.items() if k != "status_list_key"}
    with pytest.raises(VerificationFailed, match="status list: note has no signature by"):
        verify_bundle(without, trusted_vkey=new.vkey)
    for changed in _changed(bundle["status_list_key"]):
        with pytest.raises(VerificationFailed):
            verify_bundle({**bundle, "status_list_key": changed}, trusted_vkey=new.vkey)
    # the same key for both: no separate field
    assert "status_list_key" not in log.bundle(2)


def test_a_trusted_keyring_must_hold_every_key_the_bundle_uses(log: Log) -> None:
    new, bundle = _rotated(log)
    retired = PUBLISHED + dt.timedelta(hours=1)
    keyring = Keyring((_record(log.key, retired=retired), _record(new, created=retired)))
    verified = verify_bundle(bundle, keyring=keyring)
    assert verified.status == "有效" and verified.warnings == ()
    with pytest.raises(VerificationFailed, match=r"status list's key .* is not in the trusted keyring"):
        verify_bundle(bundle, keyring=Keyring((_record(new),)))
    with pytest.raises(VerificationFailed, match=r"checkpoint's key .* is not in the trusted keyring"):
        verify_bundle(log.bundle(2), keyring=Keyring((_record(new),)))


def test_a_key_compromised_by_the_signing_time_fails_and_a_later_compromise_warns(log: Log) -> None:
    bundle = log.bundle(1)
    before = Keyring((_record(log.key, compromised_since=PUBLISHED - dt.timedelta(minutes=1)),))
    with pytest.raises(VerificationFailed, match=r"compromised since .*published time"):
        verify_bundle(bundle, keyring=before)
    at = Keyring((_record(log.key, compromised_since=PUBLISHED),))
    with pytest.raises(VerificationFailed, match="compromised since"):
        verify_bundle(bundle, keyring=at)
    later = Keyring((_record(log.key, compromised_since=PUBLISHED + dt.timedelta(days=1)),))
    verified = verify_bundle(bundle, keyring=later)
    assert verified.status == "有效"
    (warning,) = verified.warnings
    assert log.key.key_id.hex() in warning and "backdate" in warning


def test_a_key_retired_before_the_signing_time_fails(log: Log) -> None:
    keyring = Keyring((_record(log.key, retired=PUBLISHED - dt.timedelta(days=1)),))
    with pytest.raises(VerificationFailed, match="was retired at"):
        verify_bundle(log.bundle(1), keyring=keyring)


def test_an_older_checkpoint_as_a_person_passes_it_on(log: Log) -> None:
    """`jq -r` adds a newline, `$(...)` drops it: both verify; anything else is refused by name."""
    bundle = log.bundle(0, consistency_from=3)
    old = log.checkpoint_at(3)
    assert old.endswith("\n") and not old.endswith("\n\n")
    for given in (old, old + "\n", old.rstrip("\n")):
        assert verify_bundle(bundle, old_checkpoint=given).consistent_from == 3
    with pytest.raises(
        VerificationFailed, match="it ends with 3 newlines; a signed note ends with exactly one"
    ):
        verify_bundle(bundle, old_checkpoint=old + "\n\n")
    with pytest.raises(VerificationFailed, match="control character"):
        verify_bundle(bundle, old_checkpoint=old.replace("\n", "\r\n"))
