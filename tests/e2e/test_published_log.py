"""What a district publishes of its log names nobody: every byte `onceonly log publish` writes for
the demo home (checkpoint, hash tiles, entry bundles) and the status lists townships fetch is
searched for every citizen ID, USCC (sole traders', 个体工商户, among them) and name of the demo's
department data, and none is found."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app

pytestmark = pytest.mark.e2e

PERSONAL = (
    "person_id",
    "name",
    "husband_id",
    "husband_name",
    "wife_id",
    "wife_name",
    "uscc",
    "legal_representative",
    "legal_representative_id",
)
_ID_WINDOW = re.compile(rb"(?=([0-9A-Z]{17}[0-9A-Z]))")  # every 18-character window, overlapping
_CJK_RUN = re.compile(rb"(?:[\xe3-\xe9][\x80-\xbf]{2})+")  # runs of 3-byte UTF-8 characters


def _personal_values(lake: Path) -> tuple[set[str], set[str], set[str]]:
    """Identifiers and names of every row the demo pulled (accepted or quarantined), and the
    USCCs of its sole traders."""
    identifiers: set[str] = set()
    names: set[str] = set()
    sole_traders: set[str] = set()
    for path in lake.rglob("*.parquet"):
        table = pq.read_table(path)
        for column in PERSONAL:
            if column in table.column_names:
                values = {str(v) for v in table.column(column).to_pylist() if v}
                (identifiers if column.endswith(("_id", "uscc")) else names).update(values)
        if "entity_type" in table.column_names and "uscc" in table.column_names:
            sole = table.filter(pc.equal(table.column("entity_type"), pa.scalar("个体工商户")))
            sole_traders.update(str(v) for v in sole.column("uscc").to_pylist() if v)
    return identifiers, names, sole_traders


def _found(blob: bytes, identifiers: set[str], names: set[str]) -> set[str]:
    """The identifiers and names that occur in ``blob``, in any 18-character window or run of
    CJK characters."""
    windows = {m.group(1).decode() for m in _ID_WINDOW.finditer(blob.upper())}
    runs = {m.group(0).decode("utf-8", "ignore") for m in _CJK_RUN.finditer(blob)}
    return (windows & identifiers) | {n for n in names if any(n in run for run in runs)}


def test_nothing_the_district_publishes_names_a_citizen_or_a_sole_trader(
    demo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEONLY_HOME", str(demo_home))
    public = tmp_path / "public" / "log"
    result = CliRunner().invoke(app, ["log", "publish", str(public)])
    assert result.exit_code == 0, result.output
    served = [p for p in public.rglob("*") if p.is_file()] + sorted((demo_home / "status").glob("*.json"))
    assert (public / "checkpoint").is_file() and any("entries" in p.parts for p in served)

    identifiers, names, sole_traders = _personal_values(demo_home / "lake")
    assert len(identifiers) > 15_000 and len(names) > 10_000 and len(sole_traders) > 1_000
    assert sole_traders <= identifiers
    # the search finds what is there: one ID and one name planted in published-looking bytes
    some_id, some_name = sorted(sole_traders)[0], sorted(names)[0]
    planted = b'{"commitment":"ab12","x":"%s","y":"%s"}' % (some_id.encode(), some_name.encode())
    assert _found(planted, identifiers, names) == {some_id, some_name}

    blob = b"\n".join(p.read_bytes() for p in served)
    assert len(blob) > 1_000_000  # ~20k entries, their tiles and the lists
    assert _found(blob, identifiers, names) == set()
