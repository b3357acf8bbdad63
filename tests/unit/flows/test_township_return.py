"""The township-return flow over a real home: the first run writes each township's full extract,
a second finds nothing new, a full snapshot on demand follows the last; a table artifact in
Chinese says what was written (counts and hashes, no personal data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SHARING_TESTS = Path(__file__).parents[1] / "sharing"
MINE, OTHER = "120114001000", "120114002000"


@pytest.fixture
def people(home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> dict[str, str]:
    monkeypatch.syspath_prepend(str(SHARING_TESTS))
    from counter_home import land_people

    return land_people(home, monkeypatch)


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1
        )
    return latest


def test_the_flow_writes_extracts_then_a_full_snapshot_on_demand(home: Path, people: dict[str, str]) -> None:
    from flows.township_return import township_return
    from onceonly.settings import Settings

    state = township_return(return_state=True)
    assert state.is_completed(), state.message
    assert state.message == "数据回流：写出 2 份（全量 2，增量 0），共 2 行"
    rows: Any = state.result()
    assert [(r["编号"], r["类型"], r["行数"]) for r in rows] == [(1, "全量", 1), (1, "全量", 1)]
    data = _artifact("township-return").data
    table = json.loads(data) if isinstance(data, str) else data
    assert table[0]["镇街"] == f"杨村街道（{MINE}）" and len(table[0]["清单 SHA-256"]) == 16
    assert people["mine"] not in json.dumps(table) and people["other"] not in json.dumps(table)
    assert "第 1 号全量" in str(_artifact("township-return-report").data)

    again = township_return(return_state=True)
    assert again.message == "数据回流：没有镇街有新的变动，未写出回流"

    full = township_return(full=True, townships=[MINE], return_state=True)
    result: Any = full.result()
    (row,) = result
    assert (row["编号"], row["类型"], row["接续"]) == (2, "全量", 1)
    extracts = Settings().extracts_dir
    assert (extracts / f"township={MINE}" / "extract=000002" / "manifest.txt").is_file()
