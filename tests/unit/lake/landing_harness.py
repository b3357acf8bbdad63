"""Rows through the real contracts, landed on a real catalog: helpers for the lake tests.

Rows are validated by the real contracts through Great Expectations (one Validator per
contract for the session: GX's first run costs seconds, later ones a fraction of that).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from catalog import Catalog
from contracts.checks import CheckContext, load_region_codes
from contracts.compiler import CompiledContract, compile_contract
from contracts.identifiers import citizen_id_check_char, uscc_check_char
from contracts.model import contract_by_id
from contracts.validate import Validation, Validator
from evidence.commitment import check_opening
from evidence.keys import SigningKey
from evidence.log import Leaf, TransparencyLog, leaf_at, leaves, opening_at
from lake.landing import LandedBatch, Lander, content_digest
from lake.parquet import ParquetLake
from onceonly.settings import Settings

TODAY = dt.date(2026, 11, 21)
ORIGIN = "onceonly.example/test/evidence"
TOWNSHIPS = ("120114001000", "120114002000", "120114003000")
CONTEXT = CheckContext(today=TODAY, region_codes=frozenset(load_region_codes("120114")))
COMPILED = {
    name: compile_contract(contract_by_id(Settings().contracts_dir, name))
    for name in ("household", "business_licence", "marriage")
}
HOUSEHOLD = COMPILED["household"]
LICENCE = COMPILED["business_licence"]
MARRIAGE = COMPILED["marriage"]


def citizen_id(seq: int, birth: str = "19900307") -> str:
    """A valid GB 11643 number of a Wuqing resident: region 120114, ``birth``, sequence ``seq``."""
    body = f"120114{birth}{seq:03d}"
    return body + citizen_id_check_char(body)


def uscc(seq: int) -> str:
    body = f"91120114MA{seq:07d}"
    return body + uscc_check_char(body)


def household_row(seq: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "person_id": citizen_id(seq),
        "name": f"张{seq}",
        "gender": "男",
        "ethnicity": "汉族",
        "birth_date": "1990-03-07",
        "household_no": f"H{seq:06d}",
        "relation": "户主",
        "address": f"天津市武清区杨村街道泉州路{seq}号",
        "township_code": TOWNSHIPS[seq % len(TOWNSHIPS)],
        "registered_on": "2000-01-01",
        "updated_at": "2026-11-20 08:00:00",
    }
    row.update(over)
    return row


def licence_row(seq: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "uscc": uscc(seq),
        "name": f"天津武清第{seq}号商贸有限公司",
        "entity_type": "有限责任公司",
        "legal_representative": f"李{seq}",
        "legal_representative_id": citizen_id(500 + seq % 400),
        "registered_capital": "100000.00",
        "established_on": "2015-06-01",
        "valid_from": "2015-06-01",
        "valid_to": "2045-05-31",
        "address": f"天津市武清区黄庄街道{seq}号",
        "township_code": TOWNSHIPS[seq % len(TOWNSHIPS)],
        "business_scope": "日用百货销售",
        "registration_authority": "天津市武清区市场监督管理局",
        "status": "存续",
        "updated_at": "2026-11-20 08:00:00",
    }
    row.update(over)
    return row


def marriage_row(seq: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "cert_no": f"J120114-2025-{seq:06d}",
        "registration_type": "结婚",
        "husband_name": f"赵{seq}",
        "husband_id": citizen_id(100 + seq),
        "husband_township": TOWNSHIPS[0],
        "wife_name": f"钱{seq}",
        "wife_id": citizen_id(200 + seq, birth="19920101"),
        "wife_township": TOWNSHIPS[1],
        "registered_on": "2025-05-20",
        "registry_office": "天津市武清区民政局婚姻登记处",
    }
    row.update(over)
    return row


_VALIDATORS: dict[str, Validator] = {}
_VALIDATED: dict[str, Validation] = {}


def validate(compiled: CompiledContract, rows: Sequence[dict[str, Any]]) -> Validation:
    """The contract's verdict on ``rows`` (remembered: a Validation is immutable)."""
    name = compiled.contract.id
    memo = json.dumps([name, list(rows)], sort_keys=True, ensure_ascii=False)
    if memo not in _VALIDATED:
        if name not in _VALIDATORS:
            _VALIDATORS[name] = Validator(compiled, CONTEXT)
        table = pa.Table.from_pylist(list(rows))
        _VALIDATED[memo] = _VALIDATORS[name].validate(table, connector=f"test-{name}")
    return _VALIDATED[memo]


@dataclass
class Harness:
    """A catalog, a lake and a log, and a lander that lands rows through the real contract."""

    catalog: Catalog
    lake_dir: Path
    key: SigningKey
    log: TransparencyLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = TransparencyLog(self.key, ORIGIN)

    @property
    def lake(self) -> ParquetLake:
        return ParquetLake(self.lake_dir)

    def lander(self, log: TransparencyLog | None = None, run_id: str = "run-1") -> Lander:
        return Lander(self.catalog, self.lake, log or self.log, run_id=run_id)

    def land(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        before: dict[str, Any] | None,
        after: dict[str, Any],
        compiled: CompiledContract = HOUSEHOLD,
        connector: str = "gongan-household",
        log: TransparencyLog | None = None,
        validation: Validation | None = None,
    ) -> LandedBatch:
        v = validation or validate(compiled, rows)
        return self.lander(log).land(
            connector=connector,
            compiled=compiled,
            validation=v,
            cursor_before=before,
            cursor_after=after,
            content_sha256=content_digest(pa.Table.from_pylist(list(rows))),
            issue_date=TODAY,
        )

    def count(self, table: sa.Table) -> int:
        with self.catalog.begin() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def all(self, stmt: Any) -> list[Any]:
        with self.catalog.begin() as conn:
            return list(conn.execute(stmt).all())

    def leaves(self) -> list[Leaf]:
        """Every stored log leaf, in order (certificate leaves come out of their bundles)."""
        with self.catalog.read() as conn:
            return list(leaves(conn))

    def body(self, leaf_index: int) -> bytes:
        """A certificate's RFC 8785 bytes, from its opening, checked to open its log leaf's entry
        (which commits to it and names nobody)."""
        with self.catalog.read() as conn:
            entry = leaf_at(conn, leaf_index).entry
            opening = opening_at(conn, leaf_index)
        assert entry is not None and opening is not None
        check_opening(entry, json.loads(opening.body), opening.salt)
        return opening.body
