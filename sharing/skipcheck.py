"""Skip-check: for this person (or business) and this matter, which proofs may be skipped?

Example::

    issued_by = certificate_datasets(settings.contracts_dir)   # type code → dataset
    answer = skip_check(conn, catalogue.get("hukou-move-after-marriage"), "120114199003071234", issued_by)
    for m in answer.materials:
        print(m.material, m.skippable, m.certificate_id or m.reason)

A material may be skipped when a certificate of an accepted type is held by the subject, is
in force today (status 有效, valid_from ≤ today ≤ valid_to) — the answer carries its
identifier so the counter can export the verifiable bundle. Otherwise the reason says why:
not found (and, if the department's record failed its data contract, which rule), expired,
or revoked/suspended (with the reason recorded by ``onceonly certificates suspend|revoke|…``).
The status is the catalog's, which a lifecycle change updates in the same transaction as its
log leaf and status list: a suspension shows here at once, as in the published list.

The answer's ``subject`` is masked whatever the matter (a person's ID typed for an
organisation's matter must not come back in clear). Recording uses (``log=``) needs the
township: a 12-digit code of the district's region list (``contracts/regions``), checked
before anything is written (:func:`check_township`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from catalog import certificate_events, certificates, quarantine
from contracts.checks import load_region_codes
from contracts.identifiers import is_valid_citizen_id, is_valid_uscc
from evidence.bundle import check_held
from evidence.certificate import STATUS_VALID
from evidence.log import TransparencyLog, record_use
from evidence.note import NoteVerifier
from onceonly.errors import ConfigurationError, VerificationFailed
from onceonly.privacy import mask_citizen_id, scrub_digits, scrub_text
from sharing.matters import Material, Matter


@dataclass(frozen=True)
class MaterialAnswer:
    material: str
    skippable: bool
    certificate_id: str | None
    reason: str


@dataclass(frozen=True)
class SkipCheckAnswer:
    matter: str
    matter_name: str
    subject: str
    materials: tuple[MaterialAnswer, ...]

    @property
    def skippable(self) -> list[str]:
        return [m.material for m in self.materials if m.skippable]

    def to_json(self) -> dict[str, Any]:
        return {
            "matter": self.matter,
            "matter_name": self.matter_name,
            "subject": self.subject,
            "materials": [asdict(m) for m in self.materials],
        }


def skip_check(
    conn: Connection,
    matter: Matter,
    subject_id: str,
    issued_by: Mapping[str, str],
    *,
    today: dt.date | None = None,
    log: TransparencyLog | None = None,
    township: str | None = None,
    district: str = "120114",
    verifiers: Sequence[NoteVerifier] | None = None,
) -> SkipCheckAnswer:
    """``issued_by`` maps certificate type codes to the dataset whose records issue them.

    With ``verifiers`` (the log's keys; the command line always passes them), a material is
    answered skippable only from what the log commits to: the certificate the catalog row
    points at must open its leaf's commitment, be in the newest signed checkpoint's tree, name
    this subject as its holder, be in force on its own dates and be valid in the signed status
    list (``evidence.bundle.check_held``). A catalog row edited after the fact — a holder
    reassigned, a revoked status reset to 有效, a validity extended — cannot grant a skip.

    With ``log`` (and ``conn`` a write transaction), each material answered skippable is a use
    of shared data and is recorded in the transparency log (``record_use``) for ``township``
    (a township of ``district``'s region list, checked first): which certificate stood in for
    which material of which matter — never the subject's ID.
    """
    today = today or dt.date.today()
    # As typed at the counter: GB 11643 and GB 32100 write only capitals ("x" is an "X").
    subject_id = subject_id.strip().upper()
    _check_subject(matter, subject_id)
    if log is not None:
        check_township(township, district)
    shown = mask_citizen_id(subject_id)
    answers = tuple(
        _answer(conn, material, subject_id, issued_by, today, verifiers) for material in matter.materials
    )
    if log is not None:
        for answer in answers:
            if answer.skippable and answer.certificate_id:
                record_use(
                    conn,
                    log,
                    matter=matter.code,
                    certificate_id=answer.certificate_id,
                    township=township,
                    material=answer.material,
                    subject=subject_id,
                )
    return SkipCheckAnswer(matter.code, matter.name, shown or "", answers)


def check_township(township: str | None, district: str) -> None:
    """Refuse a township that is not a 12-digit code of ``district``'s region list."""
    codes = load_region_codes(district)
    if township not in codes:
        shown = "none" if township is None else repr(scrub_digits(township)[:40])
        examples = ", ".join(f"{code} ({name})" for code, name in list(codes.items())[:3])
        raise ConfigurationError(
            f"township {shown} is not a township of district {district}: give its 12-digit code from "
            f"contracts/regions/{district}.csv (e.g. {examples}); nothing was recorded"
        )


def _check_subject(matter: Matter, subject_id: str) -> None:
    if matter.subject == "person" and not is_valid_citizen_id(subject_id):
        raise ConfigurationError(f"{mask_citizen_id(subject_id)} is not a valid citizen ID number (GB 11643)")
    if matter.subject == "organisation" and not is_valid_uscc(subject_id):
        # What was typed may be a citizen ID (the wrong matter chosen): never repeat it in clear.
        raise ConfigurationError(
            f"{scrub_digits(subject_id)} is not a valid unified social credit code (GB 32100)"
        )


def _answer(
    conn: Connection,
    material: Material,
    subject_id: str,
    issued_by: Mapping[str, str],
    today: dt.date,
    verifiers: Sequence[NoteVerifier] | None,
) -> MaterialAnswer:
    if not material.certificate_types:
        reason = "no department shares this material as an e-certificate yet"
        return MaterialAnswer(
            material.name, False, None, f"{reason}; {material.note}" if material.note else reason
        )
    rows = conn.execute(
        select(
            certificates.c.cert_id,
            certificates.c.status,
            certificates.c.valid_from,
            certificates.c.valid_to,
            certificates.c.version,
            certificates.c.leaf_index,
        )
        .where(
            and_(
                certificates.c.holder_id == subject_id,
                certificates.c.type_code.in_(material.certificate_types),
            )
        )
        .order_by(certificates.c.issue_date.desc(), certificates.c.version.desc())
    ).all()
    for r in rows:
        if (
            r.status == STATUS_VALID
            and (r.valid_from is None or r.valid_from <= today)
            and (r.valid_to is None or r.valid_to >= today)
        ):
            if verifiers is None:
                return MaterialAnswer(material.name, True, r.cert_id, "certificate in force")
            disagrees = _against_the_log(conn, r.cert_id, int(r.leaf_index), subject_id, today, verifiers)
            if disagrees is None:
                return MaterialAnswer(material.name, True, r.cert_id, "certificate in force")
            return MaterialAnswer(material.name, False, r.cert_id, disagrees)
    if rows:
        newest = rows[0]
        if newest.status != STATUS_VALID:
            return MaterialAnswer(
                material.name, False, newest.cert_id, _not_in_force(conn, newest.cert_id, newest.status)
            )
        if newest.valid_to is not None and newest.valid_to < today:
            return MaterialAnswer(
                material.name, False, newest.cert_id, f"expired on {newest.valid_to.isoformat()}"
            )
        return MaterialAnswer(
            material.name,
            False,
            newest.cert_id,
            f"not yet valid (from {newest.valid_from.isoformat() if newest.valid_from else '?'})",
        )
    datasets = sorted({issued_by[t] for t in material.certificate_types if t in issued_by})
    return MaterialAnswer(material.name, False, None, _not_found(conn, subject_id, datasets))


def _against_the_log(
    conn: Connection,
    cert_id: str,
    leaf_index: int,
    subject_id: str,
    today: dt.date,
    verifiers: Sequence[NoteVerifier],
) -> str | None:
    """None when the log confirms the certificate is this subject's and in force today; else why not."""
    if not verifiers:
        return "the transparency log's verifier keys are missing, so the certificate cannot be confirmed"
    try:
        held = check_held(conn, cert_id, leaf_index, verifiers)
    except VerificationFailed as exc:
        return (
            f"the catalog disagrees with the transparency log ({scrub_text(str(exc))}): run `onceonly audit`"
        )
    body = held.certificate
    holder = (body.get("holder") or {}).get("id")
    if holder != subject_id:
        return "the catalog disagrees with the transparency log (another holder): run `onceonly audit`"
    if held.state != STATUS_VALID:
        return f"certificate status is {held.state} in the signed status list"
    valid_from, valid_to = body.get("valid_from"), body.get("valid_to")
    if valid_from and dt.date.fromisoformat(str(valid_from)[:10]) > today:
        return f"not yet valid (from {str(valid_from)[:10]})"
    if valid_to and dt.date.fromisoformat(str(valid_to)[:10]) < today:
        return f"expired on {str(valid_to)[:10]}"
    return None


def _not_in_force(conn: Connection, cert_id: str, status: str) -> str:
    """The status, with the reason of the lifecycle change that set it (暂扣, 撤销, …), if any."""
    event = conn.execute(
        select(certificate_events.c.reason, certificate_events.c.occurred_at)
        .where(and_(certificate_events.c.cert_id == cert_id, certificate_events.c.status_after == status))
        .order_by(certificate_events.c.leaf_index.desc())
        .limit(1)
    ).first()
    if event is None:
        return f"certificate status is {status}"
    return f"certificate status is {status} since {event.occurred_at:%Y-%m-%d}: {event.reason}"


def _not_found(conn: Connection, subject_id: str, datasets: list[str]) -> str:
    # A quarantine row names its record's subjects separated by spaces (both spouses of a
    # marriage): match whole IDs, not an ID inside a longer malformed one. The ID was validated,
    # so it holds no LIKE wildcard.
    holds = or_(
        quarantine.c.subject_id == subject_id,
        quarantine.c.subject_id.like(f"{subject_id} %"),
        quarantine.c.subject_id.like(f"% {subject_id}"),
        quarantine.c.subject_id.like(f"% {subject_id} %"),
    )
    rows = conn.execute(
        select(quarantine.c.dataset, quarantine.c.rule, quarantine.c.value_masked).where(
            and_(
                quarantine.c.resolved_at.is_(None),
                quarantine.c.severity == "error",
                quarantine.c.dataset.in_(datasets),
                holds,
            )
        )
    ).all()
    if not rows:
        return "not found: no certificate of an accepted type is held by this subject"
    rules: dict[str, set[str]] = {}
    for r in rows:
        rules.setdefault(r.dataset, set()).add(f"{r.rule} ({r.value_masked})" if r.value_masked else r.rule)
    failed = "; ".join(
        f"the {dataset} record of this subject failed its data contract [{', '.join(sorted(names))}]"
        for dataset, names in sorted(rules.items())
    )
    if len(rules) == 1:
        return f"not found: {failed} and is quarantined until the department corrects it"
    return f"not found: {failed}; they are quarantined until the departments correct them"


__all__ = ["MaterialAnswer", "SkipCheckAnswer", "check_township", "skip_check"]
