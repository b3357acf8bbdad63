"""E-certificate identifiers: ISO/IEC 7064 check characters and GB/T 36904-style parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import evidence
from evidence import identifier
from evidence.identifier import (
    ISO7064_ALPHABET,
    CertificateId,
    InvalidCertificateId,
    _iso7064_hybrid,
    iso7064_mod37_36,
)
from onceonly.errors import VerificationFailed

USCC = "91350100M000100Y43"  # GB 32100 example; check character '3' (contracts.identifiers)
GOOD = "1.2.156.3005.2.HKB0001.91350100M000100Y43.00000042.001.2"


def test_exports() -> None:
    assert set(identifier.__all__) <= set(evidence.__all__)
    for name in identifier.__all__:
        assert getattr(evidence, name) is getattr(identifier, name)


def test_iso7064_mod11_10_published_example() -> None:
    # ISO/IEC 7064 MOD 11,10 worked example: "0794" gets check digit 5. Same hybrid algorithm.
    assert _iso7064_hybrid("0794", "0123456789") == "5"


@pytest.mark.parametrize(
    ("payload", "check"),
    [
        # Published MOD 37,36 examples (Lobster_data "checksum ISO 7064 Mod. 37/36()").
        ("123AB", "X"),
        ("DADPIDA3897722461", "J"),
        ("A12425GABC1234002", "M"),
    ],
)
def test_iso7064_mod37_36_published_examples(payload: str, check: str) -> None:
    assert iso7064_mod37_36(payload) == check


@pytest.mark.parametrize("payload", ["abc", "12-3", "Ａ1", " 1"])
def test_iso7064_rejects_characters_outside_the_alphabet(payload: str) -> None:
    with pytest.raises(ValueError, match="ISO 7064 alphabet"):
        iso7064_mod37_36(payload)


payloads = st.text(alphabet=ISO7064_ALPHABET, min_size=1, max_size=40)


@given(payloads)
def test_hybrid_check_closes_the_chain(payload: str) -> None:
    # ISO/IEC 7064 hybrid systems: with the check character appended, the running S ends at 1.
    modulus, product = 36, 36
    for char in payload + iso7064_mod37_36(payload):
        total = (product + ISO7064_ALPHABET.index(char)) % modulus or modulus
        product = (2 * total) % (modulus + 1)
    assert total == 1


@given(payloads, st.data())
def test_every_single_substitution_changes_the_check(payload: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(payload) - 1))
    replacement = data.draw(st.sampled_from(ISO7064_ALPHABET).filter(lambda c: c != payload[position]))
    changed = payload[:position] + replacement + payload[position + 1 :]
    assert iso7064_mod37_36(changed) != iso7064_mod37_36(payload)


@pytest.mark.parametrize("prefix", ["", "HKB", "9135"])
def test_nearly_all_adjacent_transpositions_change_the_check(prefix: str) -> None:
    # ISO/IEC 7064 promises hybrid systems detect "all or nearly all" adjacent transpositions.
    missed = sum(
        iso7064_mod37_36(f"{prefix}{a}{b}7") == iso7064_mod37_36(f"{prefix}{b}{a}7")
        for a in ISO7064_ALPHABET
        for b in ISO7064_ALPHABET
        if a != b
    )
    assert missed <= 5  # of 1260 swaps


def test_build_and_format() -> None:
    cid = CertificateId.build("HKB0001", USCC, 42)
    assert str(cid) == GOOD
    assert cid.check == iso7064_mod37_36("HKB0001" + USCC + "00000042" + "001")
    assert (cid.type_code, cid.issuer_uscc, cid.serial, cid.version) == ("HKB0001", USCC, 42, 1)


def test_serial_longer_than_eight_digits_is_not_padded() -> None:
    cid = CertificateId.build("HKB0001", USCC, 123456789, version=12)
    assert ".123456789.012." in str(cid)
    assert CertificateId.parse(str(cid)) == cid


def test_parse_round_trip_and_with_version() -> None:
    cid = CertificateId.parse(GOOD)
    assert cid == CertificateId.build("HKB0001", USCC, 42)
    second = cid.with_version(2)
    assert str(second) == "1.2.156.3005.2.HKB0001.91350100M000100Y43.00000042.002.Z"
    assert CertificateId.parse(str(second)) == second
    assert second.serial == cid.serial and second.version == 2


@given(
    st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=4, max_size=32),
    st.integers(0, 10**18 - 1),
    st.integers(1, 999),
)
def test_build_parse_round_trip(type_code: str, serial: int, version: int) -> None:
    cid = CertificateId.build(type_code, USCC, serial, version)
    assert CertificateId.parse(str(cid)) == cid


@pytest.mark.parametrize(
    ("text", "part"),
    [
        (GOOD.replace("1.2.156.3005.2.", "1.2.156.3005.3."), "start with"),
        (GOOD + ".X", "6 parts"),
        (GOOD.replace(".001.", "."), "4 parts"),
        (GOOD.replace("HKB0001", "hkb0001"), "type code"),
        (GOOD.replace("HKB0001", "HKB"), "type code"),
        (GOOD.replace("HKB0001", "H" * 33), "type code"),
        (GOOD.replace(USCC, "91350100M000100Y44"), "unified social credit code"),
        (GOOD.replace(USCC, "91350100M000100Y4"), "unified social credit code"),
        (GOOD.replace("00000042", "0000042"), "serial"),
        (GOOD.replace("00000042", "000000042"), "serial"),
        (GOOD.replace("00000042", "0000004A"), "serial"),
        (GOOD.replace("00000042", "1" * 19), "serial"),
        (GOOD.replace(".001.", ".01."), "version"),
        (GOOD.replace(".001.", ".000."), "version"),
        (GOOD.replace(".001.", ".00A."), "version"),
        (GOOD[:-1] + "3", "check character"),
        (GOOD[:-1] + "23", "check"),
        (GOOD[:-1], "check"),
        ("", "start with"),
    ],
)
def test_parse_names_the_wrong_part(text: str, part: str) -> None:
    with pytest.raises(InvalidCertificateId, match=part):
        CertificateId.parse(text)


def test_every_single_character_change_is_detected() -> None:
    for position in range(len(GOOD)):
        for replacement in ISO7064_ALPHABET + ".":
            if replacement == GOOD[position]:
                continue
            changed = GOOD[:position] + replacement + GOOD[position + 1 :]
            with pytest.raises(InvalidCertificateId):
                CertificateId.parse(changed)


def test_invalid_certificate_id_is_a_verification_failure_and_a_value_error() -> None:
    assert issubclass(InvalidCertificateId, VerificationFailed)
    assert issubclass(InvalidCertificateId, ValueError)
    with pytest.raises(VerificationFailed):
        CertificateId.parse(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type_code": "HK", "issuer_uscc": USCC, "serial": 1},
        {"type_code": "HKB0001", "issuer_uscc": "91350100M000100Y44", "serial": 1},
        {"type_code": "HKB0001", "issuer_uscc": USCC, "serial": -1},
        {"type_code": "HKB0001", "issuer_uscc": USCC, "serial": 10**18},
        {"type_code": "HKB0001", "issuer_uscc": USCC, "serial": True},
        {"type_code": "HKB0001", "issuer_uscc": USCC, "serial": 1, "version": 0},
        {"type_code": "HKB0001", "issuer_uscc": USCC, "serial": 1, "version": 1000},
    ],
)
def test_build_rejects_bad_parts(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CertificateId.build(**kwargs)  # type: ignore[arg-type]


def test_direct_construction_checks_the_check_character() -> None:
    with pytest.raises(InvalidCertificateId, match="check character"):
        CertificateId("HKB0001", USCC, 42, 1, "3")


def test_long_hostile_input_is_cut_in_messages() -> None:
    with pytest.raises(InvalidCertificateId) as caught:
        CertificateId.parse("1.2.156.3005.2." + "A" * 10_000 + ".x.x.x.x")
    assert len(str(caught.value)) < 200


@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**18 - 1)
            | st.integers(0, 10**9)
            | st.sampled_from([0, 10**8 - 1, 10**8, 10**17]),
            st.integers(1, 999),
        ),
        max_size=40,
    ),
    st.text(alphabet=ISO7064_ALPHABET, min_size=4, max_size=32),
)
def test_certificate_ids_equal_building_each(parts: list[tuple[int, int]], type_code: str) -> None:
    # The bulk check characters step through precomputed ISO 7064 tables, three digits at a time.
    from evidence.identifier import certificate_ids

    expected = [str(CertificateId.build(type_code, USCC, serial, version)) for serial, version in parts]
    got = certificate_ids(type_code, USCC, [s for s, _ in parts], [v for _, v in parts])
    assert got.to_pylist() == expected
