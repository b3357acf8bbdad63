"""SM3 against the examples of GB/T 32905-2016 / GM/T 0004-2012 Appendix A."""

from __future__ import annotations

import os

import pytest

from evidence.sm3 import openssl_has_sm3, sm3, sm3_pure

# GB/T 32905-2016 Appendix A.1: the message "abc".
ABC_DIGEST = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
# GB/T 32905-2016 Appendix A.2: "abcd" repeated 16 times (512 bits, two blocks after padding).
ABCD16_DIGEST = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


@pytest.mark.parametrize("function", [sm3, sm3_pure])
def test_standard_examples(function: object) -> None:
    assert callable(function)
    assert function(b"abc").hex() == ABC_DIGEST
    assert function(b"abcd" * 16).hex() == ABCD16_DIGEST


@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000])
def test_pure_python_agrees_with_openssl_at_padding_edges(length: int) -> None:
    data = os.urandom(length)
    assert len(sm3_pure(data)) == 32
    if openssl_has_sm3():
        import hashlib

        assert sm3_pure(data) == hashlib.new("sm3", data).digest()
    assert sm3(data) == sm3_pure(data)


def test_one_bit_changes_the_digest() -> None:
    assert sm3_pure(b"abd") != sm3_pure(b"abc")
    assert sm3_pure(b"abcd" * 16 + b"\x00") != sm3_pure(b"abcd" * 16)
