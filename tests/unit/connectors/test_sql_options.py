"""The options convention: a connector type's ``options_model`` validates its options."""

from __future__ import annotations

from typing import Any

import pytest
from connector_sources import connector, registration

from connectors.sql import SqlOptions
from onceonly.errors import ConfigurationError

CURSOR = {"column": "updated_at", "tiebreak": "id"}


def test_the_connector_reads_typed_options() -> None:
    source = connector(
        registration("sql", url="sqlite:////tmp/x.db", table="t", schema="main", cursor=CURSOR)
    )
    assert isinstance(source.opts, SqlOptions)
    assert source.opts.table == "t" and source.opts.db_schema == "main"
    assert source.opts.cursor.column == "updated_at" and source.opts.cursor.tiebreak == "id"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"url": "sqlite:///x.db", "table": "t", "cursor": CURSOR, "tabel": "x"}, r"options\.tabel: Extra"),
        ({"url": "sqlite:///x.db", "table": "t", "cursor": {"column": "ts"}}, r"options\.cursor\.tiebreak"),
        ({"url": "sqlite:///x.db", "cursor": CURSOR}, "exactly one of `table` or `query`"),
        ({"url": "sqlite:///x.db", "table": "t", "query": "SELECT 1", "cursor": CURSOR}, "exactly one"),
    ],
)
def test_options_errors_name_the_connector_and_the_field(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        connector(registration("sql", name="gongan-household", **options))
    assert "'gongan-household'" in str(info.value)
