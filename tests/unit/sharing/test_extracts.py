"""Township extracts: each township gets its own certificates, and only the townships asked for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
from catalog_records import HOUSEHOLD_TYPE, LICENCE_TYPE, MARRIAGE_TYPE, Records

from catalog import Catalog
from evidence.certificate import STATUS_SUPERSEDED
from sharing.extracts import EXTRACT_SCHEMA, extract_path, write_extracts

YANGCUN, XIAZHUZHUANG, DONGPUWA = "120114001000", "120114002000", "120114003000"
END = dt.date(2030, 1, 1)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_only_the_townships_asked_for_are_written_each_with_its_own(
    catalog: Catalog, records: Records, tmp_path: Path
) -> None:
    yangcun = [
        records.certificate("120114199003070011", HOUSEHOLD_TYPE, township=YANGCUN),
        records.certificate("120114199003070011", MARRIAGE_TYPE, township=YANGCUN, valid_to=END),
        records.certificate("91120114MA00000013", LICENCE_TYPE, township=YANGCUN, status=STATUS_SUPERSEDED),
    ]
    xiazhu = [records.certificate("120114199202010020", MARRIAGE_TYPE, township=XIAZHUZHUANG)]
    records.certificate("120114198001010030", HOUSEHOLD_TYPE, township=DONGPUWA)
    records.certificate("120114198001010049", HOUSEHOLD_TYPE, township=None)
    out = tmp_path / "extracts"

    with catalog.read() as conn:
        written = write_extracts(conn, out, [XIAZHUZHUANG, YANGCUN, YANGCUN])

    assert written == [extract_path(out, YANGCUN), extract_path(out, XIAZHUZHUANG)]
    assert _files(out) == [
        f"township={YANGCUN}/certificates.parquet",
        f"township={XIAZHUZHUANG}/certificates.parquet",
    ]
    for path, expected in ((written[0], yangcun), (written[1], xiazhu)):
        extract = pq.read_table(path)
        assert extract.schema.equals(EXTRACT_SCHEMA)
        assert extract.column("cert_id").to_pylist() == expected  # in log order
    first = pq.read_table(written[0]).to_pylist()[1]
    assert first["type_code"] == MARRIAGE_TYPE[0] and first["valid_to"] == END
    assert first["holder_id"] == "120114199003070011" and first["status"] == "有效" and first["version"] == 1
    assert pq.read_table(written[0]).column("status").to_pylist()[2] == STATUS_SUPERSEDED


def test_a_township_is_rewritten_whole_and_an_empty_one_is_empty(
    catalog: Catalog, records: Records, tmp_path: Path
) -> None:
    records.certificate("120114199003070011", HOUSEHOLD_TYPE, township=YANGCUN)
    out = tmp_path / "extracts"
    with catalog.read() as conn:
        write_extracts(conn, out, [YANGCUN, DONGPUWA])
    records.certificate("120114199202010020", HOUSEHOLD_TYPE, township=YANGCUN)
    with catalog.read() as conn:
        write_extracts(conn, out, [YANGCUN])

    assert pq.read_table(extract_path(out, YANGCUN)).num_rows == 2
    empty = pq.read_table(extract_path(out, DONGPUWA))
    assert empty.num_rows == 0 and empty.schema.equals(EXTRACT_SCHEMA)
    assert not [p for p in out.rglob("*") if p.suffix == ".tmp"], "no half-written file is left"
    with catalog.read() as conn:
        assert write_extracts(conn, out, []) == []
