"""The readers' limits: defaults, ONCEONLY_LIMIT_* overrides, and the words of an error."""

from __future__ import annotations

import pytest

from onceonly.limits import Limits
from onceonly.settings import Settings


def test_each_limit_is_overridden_by_its_own_variable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ONCEONLY_LIMIT_FIELD_BYTES", "4096")
    monkeypatch.setenv("ONCEONLY_LIMIT_PAGE_SECONDS", "2.5")
    limits = Settings(home=tmp_path).limits
    assert limits.field_bytes == 4096
    assert limits.page_seconds == 2.5
    assert limits.json_depth == Limits.model_fields["json_depth"].default


def test_limits_travel_with_the_settings_a_flow_run_receives(tmp_path) -> None:
    settings = Settings(home=tmp_path, limits=Limits(pages=7))
    again = Settings.model_validate(settings.model_dump(mode="json"))
    assert again.limits.pages == 7


def test_an_error_names_the_limit_its_value_and_its_variable() -> None:
    limits = Limits(field_bytes=2 << 20, page_seconds=30)
    assert limits.exceeded("field_bytes", "file a.csv: a field") == (
        "file a.csv: a field exceeds the limit field_bytes = 2 MiB (ONCEONLY_LIMIT_FIELD_BYTES)"
    )
    assert limits.exceeded("page_seconds", "page 3") == (
        "page 3 exceeds the limit page_seconds = 30 s (ONCEONLY_LIMIT_PAGE_SECONDS)"
    )
    assert (
        limits.exceeded("json_depth", "line 4")
        == "line 4 exceeds the limit json_depth = 32 (ONCEONLY_LIMIT_JSON_DEPTH)"
    )


def test_a_limit_too_small_to_read_anything_is_refused() -> None:
    with pytest.raises(ValueError, match="field_bytes"):
        Limits(field_bytes=10)
