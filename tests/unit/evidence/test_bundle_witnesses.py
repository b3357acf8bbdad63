"""Bundles whose checkpoint carries witnesses' cosignatures: they verify as before, and with
``witnesses`` they verify only with enough valid cosignatures from the keys given."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_bundle import Log, as_json_file

from evidence.bundle import check_witnesses, verify_bundle
from evidence.cosignature import Cosigner
from evidence.keys import SigningKey
from evidence.note import NoteSignature, add_signatures, split_note
from onceonly.errors import VerificationFailed

ORIGIN = "onceonly.example/120114"


@pytest.fixture(scope="module")
def log() -> Log:
    return Log(SigningKey.generate(ORIGIN))


@pytest.fixture(scope="module")
def witnesses() -> list[Cosigner]:
    return [Cosigner.generate(f"witness.{name}.example/w1") for name in ("baodi", "jinghai", "ninghe")]


def cosigned_bundle(log: Log, cosigners: list[Cosigner], index: int = 2) -> dict[str, Any]:
    bundle = log.bundle(index)
    text = split_note(bundle["checkpoint"])[0]
    bundle["checkpoint"] = add_signatures(bundle["checkpoint"], [c.cosign(text) for c in cosigners])
    return as_json_file(bundle)


def test_a_cosigned_bundle_verifies_with_and_without_witnesses(log: Log, witnesses: list[Cosigner]) -> None:
    a, b, c = witnesses
    bundle = cosigned_bundle(log, [a, b])
    assert verify_bundle(bundle, trusted_vkey=log.key.vkey).cosigned_by == ()
    verified = verify_bundle(bundle, trusted_vkey=log.key.vkey, witnesses=[a.vkey, b.vkey])
    assert verified.cosigned_by == (a.verifier.label, b.verifier.label)
    assert verify_bundle(bundle, witnesses=[a.vkey, c.vkey], min_witnesses=1).cosigned_by == (
        a.verifier.label,
    )


def test_a_wrong_or_missing_witness_or_too_few_cosignatures_fail(log: Log, witnesses: list[Cosigner]) -> None:
    a, b, c = witnesses
    bundle = cosigned_bundle(log, [a, b])
    with pytest.raises(VerificationFailed, match=r"0 valid cosignature\(s\) of the 1 required"):
        verify_bundle(bundle, witnesses=[c.vkey])  # a witness that did not cosign
    with pytest.raises(VerificationFailed, match="missing: " + c.verifier.label.replace("+", r"\+")):
        verify_bundle(bundle, witnesses=[a.vkey, b.vkey, c.vkey])  # all three by default
    with pytest.raises(VerificationFailed, match=r"2 valid cosignature\(s\) of the 3 required"):
        verify_bundle(bundle, witnesses=[a.vkey, b.vkey, c.vkey], min_witnesses=3)
    with pytest.raises(VerificationFailed, match="0 valid cosignature"):
        verify_bundle(as_json_file(log.bundle(2)), witnesses=[a.vkey])  # exported before any cosigned
    with pytest.raises(VerificationFailed, match="witness key"):
        verify_bundle(bundle, witnesses=[log.key.vkey])  # the log's key is no witness key


def test_a_changed_cosignature_fails(log: Log, witnesses: list[Cosigner]) -> None:
    a = witnesses[0]
    bundle = cosigned_bundle(log, [a])
    text, (own, cosignature) = split_note(bundle["checkpoint"])
    for position in range(len(cosignature.signature)):
        raw = bytearray(cosignature.signature)
        raw[position] ^= 0x01
        changed = copy.deepcopy(bundle)
        changed["checkpoint"] = (
            text + "\n" + own.line + NoteSignature(cosignature.name, cosignature.key_id, bytes(raw)).line
        )
        with pytest.raises(VerificationFailed, match="bad cosignature"):
            verify_bundle(changed, witnesses=[a.vkey])


def test_a_cosignature_of_another_checkpoint_does_not_count(log: Log, witnesses: list[Cosigner]) -> None:
    a = witnesses[0]
    older = log.checkpoint_at(5)
    moved = add_signatures(log.checkpoint, [a.cosign(split_note(older)[0])])
    with pytest.raises(VerificationFailed, match="bad cosignature"):
        check_witnesses(moved, [a.vkey])
