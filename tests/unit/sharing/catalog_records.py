"""Certificate and quarantine rows written as the lander writes them (see tests/unit/lake)."""

from __future__ import annotations

import datetime as dt
import itertools

import sqlalchemy as sa

from catalog import Catalog, certificates, quarantine
from evidence.certificate import STATUS_VALID
from evidence.identifier import CertificateId

HOUSEHOLD_TYPE = ("11100000000019342N001", "111201140000000196", "household", "居民户口簿")
MARRIAGE_TYPE = ("1110000000001201XK001", "11120114000000123A", "marriage", "结婚证")
LICENCE_TYPE = ("11100000MB0143028R001", "11120114MB1K03754L", "business_licence", "营业执照")


class Records:
    """Writes certificate and quarantine rows as the lander would."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._leaf = itertools.count()

    def certificate(
        self,
        holder_id: str,
        kind: tuple[str, str, str, str] = HOUSEHOLD_TYPE,
        *,
        serial: int | None = None,
        version: int = 1,
        status: str = STATUS_VALID,
        township: str | None = "120114001000",
        valid_from: dt.date | None = dt.date(2000, 1, 1),
        valid_to: dt.date | None = None,
        issue_date: dt.date = dt.date(2026, 11, 21),
        previous: str | None = None,
        record_key: str | None = None,
    ) -> str:
        type_code, issuer, dataset, type_name = kind
        leaf = next(self._leaf)
        cid = str(CertificateId.build(type_code, issuer, serial if serial is not None else leaf + 1, version))
        with self.catalog.begin() as conn:
            conn.execute(
                sa.insert(certificates).values(
                    cert_id=cid,
                    dataset=dataset,
                    record_key=record_key or f"{holder_id}-{serial}",
                    holder_id=holder_id,
                    holder_name="张三",
                    type_code=type_code,
                    type_name=type_name,
                    issuer_code=issuer,
                    serial=serial if serial is not None else leaf + 1,
                    version=version,
                    status=status,
                    issue_date=issue_date,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    township=township,
                    content_sha256="0" * 64,
                    leaf_index=leaf,
                    batch_id="b" * 32,
                    previous_id=previous,
                )
            )
        return cid

    def quarantined(
        self,
        subject_id: str,
        dataset: str,
        rule: str,
        value_masked: str | None,
        *,
        severity: str = "error",
        resolved: bool = False,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        with self.catalog.begin() as conn:
            conn.execute(
                sa.insert(quarantine).values(
                    batch_id="q" * 32,
                    dataset=dataset,
                    contract_id=dataset,
                    contract_version="1.0.0",
                    record_key=subject_id,
                    subject_id=subject_id,
                    rule=rule,
                    column=rule.split(".")[0],
                    severity=severity,
                    value_masked=value_masked,
                    detected_at=now,
                    resolved_at=now if resolved else None,
                    resolved_by_batch="r" * 32 if resolved else None,
                )
            )
