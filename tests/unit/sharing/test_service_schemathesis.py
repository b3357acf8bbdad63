"""schemathesis against the service's OpenAPI document: every generated request — valid data and
invalid data, with a station's credential — gets a documented status and a response that
matches the schema, never a server error.

(Hypothesis drives each operation's strategy directly: schemathesis's pytest plugin does not
load a schema from a fixture under pytest 9.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from counter_home import station
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from onceonly.settings import Settings
from sharing.service import create_app


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_generated_request_gets_a_documented_answer(
    people: dict[str, str], mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings()))
    headers = {"Authorization": f"Bearer {station()}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
        "POST /api/skip-check",
        "GET /api/matters",
        "GET /api/certificates/{cert_id}/bundle",
        "POST /api/citizen/consents",
        "GET /api/citizen/uses",
    }
    seen: dict[str, set[int]] = {}

    @given(data=st.data())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def exercise(data: Any) -> None:
        operation = data.draw(st.sampled_from(operations))
        case = data.draw(operation.as_strategy(generation_mode=mode))
        response = case.call_and_validate(headers=headers)
        seen.setdefault(f"{operation.method.upper()} {operation.path}", set()).add(response.status_code)

    exercise()
    assert seen and all(code < 500 for codes in seen.values() for code in codes), seen
