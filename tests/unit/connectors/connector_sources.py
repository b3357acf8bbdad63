"""Real sources for connector tests, and ways to pull from them.

Example::

    reg = registration("sql", url=f"sqlite:///{db}", table="t", cursor={"column": "ts", "tiebreak": "id"})
    pulled = drain(connector(reg), cursor=None, batch_size=7)
    assert ids(pulled, "id") == list(range(100))
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from connectors import EnvironmentSecrets, Pulled, Registration, create_connector
from connectors.base import Connector, Cursor
from connectors.paths import SourcePaths

#: Connector tests read from tmp_path and memory://; confinement has its own tests (test_paths).
ANYWHERE = SourcePaths.build(["/", "memory://", "undated://"])


def registration(
    type_: str, *, name: str = "test-source", secrets: Mapping[str, str] | None = None, **options: Any
) -> Registration:
    return Registration(
        name=name,
        department="测试部门",
        dataset="test",
        type=type_,
        options=dict(options),
        secrets=dict(secrets or {}),
    )


def connector(
    reg: Registration, env: Mapping[str, str] | None = None, home: Path = Path("/nonexistent")
) -> Connector:
    """A connector whose secrets come from ``env`` only (never the process environment)."""
    return create_connector(reg, home, EnvironmentSecrets(dict(env or {})), paths=ANYWHERE)


def drain(source: Connector, cursor: Cursor | None = None, batch_size: int = 1000) -> list[Pulled]:
    """Every batch of one pull, with each cursor passed through JSON as a catalog stores it."""
    pulled = []
    for p in source.pull(cursor, batch_size):
        assert isinstance(p, Pulled) and isinstance(p.batch, pa.RecordBatch)
        assert 0 < p.batch.num_rows <= batch_size
        pulled.append(dataclasses.replace(p, cursor=json.loads(json.dumps(p.cursor))))
    return pulled


def column(pulled: Iterable[Pulled], name: str) -> list[Any]:
    """One column's values over all batches, in pull order."""
    return [v for p in pulled for v in p.batch.column(name).to_pylist()]


def rows(pulled: Iterable[Pulled], names: Iterable[str]) -> list[tuple[Any, ...]]:
    """Rows (as tuples of the given columns) over all batches, in pull order."""
    names = list(names)
    out: list[tuple[Any, ...]] = []
    for p in pulled:
        out.extend(zip(*(p.batch.column(n).to_pylist() for n in names), strict=True))
    return out
