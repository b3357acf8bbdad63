"""The fast canonical-JSON path must equal the rfc8785 reference wherever it is taken."""

from __future__ import annotations

import json
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.canonical import canonical_json

_keys = st.text(alphabet=st.characters(max_codepoint=127), max_size=12)
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)  # no lone surrogates
_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _text
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_keys, children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=600)
@given(_values)
def test_fast_path_equals_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@given(st.dictionaries(st.text(max_size=6), st.floats(allow_nan=False, allow_infinity=False), max_size=4))
def test_outside_the_domain_the_reference_is_used(value: dict[str, float]) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_control_characters_and_chinese_text() -> None:
    value = {"名": '张\u0001三\n\t"\\', "b": [1, None, True], "a": "\u2028\u007f"}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert json.loads(canonical_json(value)) == value


def test_non_ascii_keys_go_through_the_reference() -> None:
    value = {"\ue000": 1, "\U0001f600": 2}  # UTF-16 order differs from code-point order here
    assert canonical_json(value) == rfc8785.dumps(value)
    assert list(json.loads(canonical_json(value))) == ["\U0001f600", "\ue000"]
