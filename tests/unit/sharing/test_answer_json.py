"""The service's answers are rendered by orjson (``sharing.service._json_bytes``): byte for byte
what the standard library renders as Starlette's JSONResponse does (UTF-8, compact)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sharing.service import _json_bytes
from sharing.skipcheck import MaterialAnswer, SkipCheckAnswer


def _stdlib(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def test_an_answer_renders_as_the_standard_library_renders_it() -> None:
    answer = SkipCheckAnswer(
        "pension-enrolment",
        "城乡居民养老保险参保登记",
        "120114********0015",
        (
            MaterialAnswer("居民户口簿", True, "1.2.156.3005.2.x", "证照有效", "可免交", needed_by=("a",)),
            MaterialAnswer("结婚证", False, None, "未找到\n（见\t说明）", "未找到证照", "spouse", "1201**"),
        ),
    )
    body = answer.to_json() | {"slip": "text\n\n— onceonly 4Kx+/=\n", "checkpoint_size": 2**40, "x": None}
    assert _json_bytes(body) == _stdlib(body)
    assert json.loads(_json_bytes(body))["materials"][1]["holder"] == "spouse"


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_any_answer_shaped_value_renders_the_same(body: Any) -> None:
    assert _json_bytes(body) == _stdlib(body)
