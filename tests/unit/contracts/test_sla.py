from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from contracts.model import contract_by_id
from contracts.sla import SlaUnitError, freshness_window

ROOT = Path(__file__).resolve().parents[3]


def _contract(sla: list[dict[str, object]], default_element: str | None = None) -> object:
    from contracts.model import Contract

    base = contract_by_id(ROOT / "contracts" / "datasets", "household")
    data = base.model_dump(by_alias=True, exclude_none=True)
    data["slaProperties"] = sla
    if default_element:
        data["slaDefaultElement"] = default_element
    return Contract.model_validate(data)


def test_the_demo_contracts_allow_a_day_of_frequency_and_a_day_of_latency() -> None:
    window = freshness_window(contract_by_id(ROOT / "contracts" / "datasets", "household"))
    assert window is not None
    assert window.within == dt.timedelta(days=2)
    assert window.describe() == "frequency 1 d + latency 1 d"


@pytest.mark.parametrize(
    ("value", "unit", "seconds"),
    [
        (20, "s", 20),
        (5, "minutes", 300),
        (6, "h", 21600),
        (1, "week", 604800),
        (1, "y", 31536000),
        (1.5, "d", 129600),
    ],
)
def test_units_of_odcs_and_shorter_ones_for_near_real_time_sources(
    value: float, unit: str, seconds: int
) -> None:
    window = freshness_window(_contract([{"property": "frequency", "value": value, "unit": unit}]))  # type: ignore[arg-type]
    assert window is not None
    assert window.within == dt.timedelta(seconds=seconds)  # no latency: zero


def test_no_frequency_no_window_and_element_level_properties_do_not_count() -> None:
    assert freshness_window(_contract([{"property": "latency", "value": 1, "unit": "d"}])) is None  # type: ignore[arg-type]
    element = [{"property": "frequency", "value": 1, "unit": "d", "element": "household_member.updated_at"}]
    assert freshness_window(_contract(element)) is None  # type: ignore[arg-type]
    window = freshness_window(_contract(element, default_element="household_member.updated_at"))  # type: ignore[arg-type]
    assert window is not None and window.within == dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("sla", "says"),
    [
        ({"property": "frequency", "value": 1, "unit": "m"}, "unit 'm' is not one of"),
        ({"property": "frequency", "value": 1, "unit": None}, "unit None"),
        (
            {"property": "frequency", "value": "daily", "unit": "d"},
            "value 'daily' is not a non-negative number",
        ),
        ({"property": "frequency", "value": 0, "unit": "d"}, "frequency: must be more than zero"),
    ],
)
def test_an_unreadable_duration_names_the_property(sla: dict[str, object], says: str) -> None:
    with pytest.raises(SlaUnitError, match="frequency") as raised:
        freshness_window(_contract([sla]))  # type: ignore[arg-type]
    assert says in str(raised.value)
