"""Fuzzing the loaders of what people write: registrations and contracts.

Whatever the text — arbitrary characters, a shipped file with random edits, a random document
of mappings, lists and scalars — loading ends with the file's own result or one of OnceOnly's
errors (``OnceOnlyError``), never another exception, in bounded time. Derandomized, so CI runs
the same examples every time; a failure prints the example that broke it.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.registration import parse_registration
from contracts.compiler import compile_contract
from contracts.model import parse_contract
from onceonly.errors import OnceOnlyError

ROOT = Path(__file__).parents[3]
REGISTRATIONS = sorted((ROOT / "connectors/registrations").glob("*.yaml"))
CONTRACTS = sorted((ROOT / "contracts/datasets").glob("*.yaml"))
FUZZ = settings(
    max_examples=200,
    deadline=None,  # bounded below, per example, by wall time
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# What YAML gives meaning to, and what breaks parsers: indentation, flow, anchors, tags, quotes.
YAML_CHARS = st.sampled_from(list(" \n\t:-[]{},&*!|>'\"#%@`?.0123456789xX~=\x00\ufeff\u3000中文"))


def loads_cleanly(load: Any, text: str) -> None:
    started = time.monotonic()
    with contextlib.suppress(OnceOnlyError):
        load(text)
    assert time.monotonic() - started < 5, "a loader took more than 5 s"


@st.composite
def edited(draw: st.DrawFn, files: list[Path]) -> str:
    """A shipped file with a few random insertions, deletions and replacements."""
    text = draw(st.sampled_from(files)).read_text(encoding="utf-8")
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate-line"]))
        piece = draw(st.text(YAML_CHARS, min_size=1, max_size=8))
        if kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + len(piece) :]
        elif kind == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        else:  # a line written twice: duplicate keys
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            line = text[start : end if end >= 0 else len(text)]
            text = text[:start] + line + "\n" + text[start:]
    return text


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["sql", "http", "files", "household", "{home}", "sqlite:///x.db", "*.csv", "../../keys"]),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
KEYS = ["name", "department", "dataset", "type", "options", "secrets", "contract", "schedule", "id", "schema"]


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A random mapping, often with the keys a registration or contract has, as YAML."""
    data = {draw(st.sampled_from(KEYS)): draw(DOCUMENTS) for _ in range(draw(st.integers(0, 6)))}
    data.update(draw(st.dictionaries(st.text(max_size=8), DOCUMENTS, max_size=3)))
    return yaml.safe_dump(data, allow_unicode=True)


@FUZZ
@given(st.text(max_size=400))
def test_registration_loader_on_any_text(text: str) -> None:
    loads_cleanly(lambda t: parse_registration(t, "fuzz.yaml"), text)


@FUZZ
@given(edited(REGISTRATIONS))
def test_registration_loader_on_edited_shipped_files(text: str) -> None:
    loads_cleanly(lambda t: parse_registration(t, "fuzz.yaml"), text)


@FUZZ
@given(documents())
def test_registration_loader_on_random_documents(text: str) -> None:
    loads_cleanly(lambda t: parse_registration(t, "fuzz.yaml"), text)


@FUZZ
@given(st.text(max_size=400))
def test_contract_loader_on_any_text(text: str) -> None:
    loads_cleanly(lambda t: parse_contract(t, source="fuzz.yaml"), text)


@FUZZ
@given(edited(CONTRACTS))
def test_contract_loader_on_edited_shipped_files(text: str) -> None:
    # Loaded and compiled, as a run uses it (the compiler checks what the model cannot).
    loads_cleanly(lambda t: compile_contract(parse_contract(t, source="fuzz.yaml")), text)


@FUZZ
@given(documents())
def test_contract_loader_on_random_documents(text: str) -> None:
    loads_cleanly(lambda t: parse_contract(t, source="fuzz.yaml"), text)
