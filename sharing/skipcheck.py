"""Skip-check: for this person (or business) and this matter, which proofs may be skipped?

Example::

    issued_by = certificate_datasets(settings.contracts_dir)   # type code → dataset
    asked = catalogue.asked("marriage-household")              # a matter or a 一件事 bundle
    answer = skip_check(conn, asked, "120114199003071234", issued_by, verifiers=keys,
                        relatives=catalogue.relatives)
    for m in answer.materials:
        print(m.material, m.verdict, m.certificate_id or m.reason)   # 结婚证 可免交 1.2.156...

A material may be skipped (可免交) when a certificate of an accepted type is held by the person
it must belong to (the applicant, or a relative found through shared data: the spouse through
the applicant's 结婚证, a child or a parent through the 出生医学证明) and is in force today
(status 有效, valid_from ≤ today ≤ valid_to) — the answer carries its identifier so the counter
can export the verifiable bundle. Otherwise the verdict
says why in the clerk's words — 未找到证照, 证照已过期, 证照已暂扣, 证照已吊销, 证照未生效,
数据待部门更正 (the department's record failed its data contract), 证照核验未通过 (the catalog
disagrees with the log), 需提交材料 (no department shares it) — and the reason gives the detail
(which rule, since when, the reason recorded by ``onceonly certificates suspend|revoke|…``).

历史材料免交: when no certificate satisfies a material (or it has no type), a material the same
person handed in with an earlier application may: one of the kinds the material lists
(``reused``), kept in the materials library and issued as a certificate of the catalogue's
``reused_materials`` type, in force on the day as the log commits to it — its kind read from the
certificate's fields in the log, never from a catalog column. It is answered 可免交 with that
certificate's identifier ("可复用历史材料：2026-05-03 办理《就业登记》时提交，有效至 2029-05-02"),
and used, logged and exported like any certificate; an expired one says when it expired.

The answer's ``subject`` is masked whatever the matter (a person's ID typed for an
organisation's matter must not come back in clear), and a relative's ID too. Recording uses
(``log=``) needs the township: a 12-digit code of the district's region list
(``contracts/regions``), checked before anything is written (:func:`check_township`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.engine import Connection

from catalog import Prepared, certificate_events, certificates, quarantine
from contracts.checks import load_region_codes
from contracts.identifiers import is_valid_citizen_id, is_valid_uscc
from evidence.bundle import HeldCertificate, check_held
from evidence.certificate import (
    STATUS_CANCELLED,
    STATUS_EXPIRED,
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    STATUS_VALID,
    STATUS_WITHDRAWN,
)
from evidence.log import Committed, TransparencyLog, append_committed_many, use_entry
from evidence.note import NoteVerifier
from onceonly.errors import ConfigurationError, VerificationFailed
from onceonly.privacy import mask_citizen_id, mask_typed, scrub_text
from sharing.matters import (
    RELATION_NAMES,
    Asked,
    Material,
    Matter,
    Relation,
    RelativeRule,
    ReusedMaterials,
)

# How a certificate is read from the log: ``check_held`` by default; a service passes its
# ``evidence.view.LogView.held``, which proves the same from a log it verified once.
Held = Callable[[Connection, str, int], HeldCertificate]

# What the counter sees first, in the words a clerk uses (the reason says more).
MAY_SKIP = "可免交"
NOT_FOUND = "未找到证照"
EXPIRED = "证照已过期"
SUSPENDED = "证照已暂扣"
REVOKED = "证照已吊销"
NOT_YET_VALID = "证照未生效"
NEEDS_CORRECTION = "数据待部门更正"
NOT_CONFIRMED = "证照核验未通过"
MUST_BRING = "需提交材料"
CONSENT_NEEDED = "需本人授权"
IN_FORCE = "证照有效"
NOTHING_HELD = "未找到：申请人名下没有该材料可用类型的证照"
REUSED = "可复用历史材料"
# A relative's material is answered in these words, nothing of theirs: no dates (a child's
# 出生医学证明 is valid from the birth), no lifecycle reason, no record in quarantine, no matter
# they applied for. Verdicts not here say nothing of the relative (需提交材料, 需本人授权).
_RELATIVE_REASONS = {
    NOT_FOUND: "亲属名下没有该材料可用类型的证照",
    EXPIRED: "亲属的证照已过期",
    SUSPENDED: "亲属的证照已暂扣",
    REVOKED: "亲属的证照已吊销或注销",
    NOT_YET_VALID: "亲属的证照尚未生效",
    NEEDS_CORRECTION: "亲属的记录待部门更正",
    NOT_CONFIRMED: "亲属的证照核验未通过，请数据局运行 onceonly audit",
}
VERDICTS = (
    MAY_SKIP,
    NOT_FOUND,
    EXPIRED,
    SUSPENDED,
    REVOKED,
    NOT_YET_VALID,
    NEEDS_CORRECTION,
    NOT_CONFIRMED,
    MUST_BRING,
    CONSENT_NEEDED,
)


@dataclass(frozen=True)
class MaterialAnswer:
    material: str
    skippable: bool
    certificate_id: str | None
    reason: str
    verdict: str = ""
    holder: str = "applicant"  # whose certificate: sharing.matters.RELATIONS
    holder_shown: str | None = None  # a relative's ID, masked (only the fact that is needed)
    needed_by: tuple[str, ...] = ()  # in a 一件事 bundle: the matters asking for it
    # The certificate as the log commits to it (set whenever the log was read for it; always for
    # a skippable one): its state in the signed status list and its validity (ISO dates; no
    # valid_to: 长期). Never from the catalog's columns.
    status: str | None = None
    valid_from: str | None = None
    valid_to: str | None = None


_ANSWER_FIELDS = tuple(f.name for f in fields(MaterialAnswer))


@dataclass(frozen=True)
class SkipCheckAnswer:
    matter: str
    matter_name: str
    subject: str
    materials: tuple[MaterialAnswer, ...]
    bundle: bool = False
    use_leaves: tuple[int, ...] = ()  # the use entries this answer logged (with ``log=``)
    # With ``township`` and no ``log``: the use entries to log (the caller appends them, e.g. a
    # service's group commit). They name the subject for its commitment: never shown or sent.
    uses: tuple[Committed, ...] = field(default=(), repr=False)
    # With ``township`` and no ``log``: recording the materials a department's bad record stopped
    # (办事堵点, ``sharing.bottlenecks``), for the caller to run in the transaction of the uses.
    blocked: Callable[[Connection], object] | None = field(default=None, repr=False, compare=False)

    @property
    def skippable(self) -> list[str]:
        return [m.material for m in self.materials if m.skippable]

    def to_json(self) -> dict[str, Any]:
        return {
            "matter": self.matter,
            "matter_name": self.matter_name,
            "bundle": self.bundle,
            "subject": self.subject,
            # Field by field: asdict walks and copies every value (27 µs for two materials, 4 now).
            "materials": [
                {**{name: getattr(m, name) for name in _ANSWER_FIELDS}, "needed_by": list(m.needed_by)}
                for m in self.materials
            ],
        }


def skip_check(
    conn: Connection,
    matter: Matter | Asked,
    subject_id: str,
    issued_by: Mapping[str, str],
    *,
    today: dt.date | None = None,
    log: TransparencyLog | None = None,
    township: str | None = None,
    district: str = "120114",
    verifiers: Sequence[NoteVerifier] | None = None,
    spouse_types: Sequence[str] = (),
    relatives: Mapping[Relation, RelativeRule] | None = None,
    station: str | None = None,
    purpose: str | None = None,
    case_number: str | None = None,
    as_of: int | None = None,
    may_see: Callable[[str], bool] | None = None,
    held: Held | None = None,
    named: Mapping[str, str] | None = None,
) -> SkipCheckAnswer:
    """``issued_by`` maps certificate type codes to the dataset whose records issue them.

    ``matter``: a matter, or what a matter or 一件事 bundle asks for
    (``Catalogue.asked``: each material once). A material held by a relative is looked for in
    the relative's certificates, the relative found by ``relatives`` (the catalogue's rules;
    ``spouse_types`` alone: the spouse rule) from what the log commits to; the relative is shown
    masked, and only the fact the material needs. ``named``: the relative's ID typed at the
    counter, by relation (``{"child": ID}``) — needed when the applicant has several children,
    and then only answered if the log confirms that child is theirs.

    With ``verifiers`` (the log's keys; the command line always passes them), a material is
    answered skippable only from what the log commits to: the certificate the catalog row
    points at must open its leaf's commitment, be in the newest signed checkpoint's tree, name
    this subject as its holder, be in force on its own dates and be valid in the signed status
    list (``evidence.bundle.check_held``). A catalog row edited after the fact — a holder
    reassigned, a revoked status reset to 有效, a validity extended — cannot grant a skip.

    With ``log`` (and ``conn`` a write transaction), each material answered skippable is a use
    of shared data and is recorded in the transparency log (``use_entry``), all of an answer's
    uses under one checkpoint, for ``township`` (a township of ``district``'s region list,
    checked first): which certificate stood in for which material of which matter, committed to
    the person whose data it is — never their ID — and, from the service, by which ``station``,
    for which ``purpose`` and ``case_number``. With ``township`` and no ``log``, the answer
    carries those entries unlogged (``uses``) for the caller to append.

    With ``may_see`` (the service: whether the station may see a person), a relative it may not
    see is answered 需本人授权 with nothing of them — no ID, certificate or reason — and no use.

    With ``as_of`` (a past checkpoint's tree size, and ``today`` that checkpoint's day): what the
    counter would have answered then — only certificates under that checkpoint, each state the
    one the status list logged before it gives (``check_held(..., size=as_of)``), nothing logged.

    With ``held`` (a service's ``LogView.held``): certificates are read through it instead of
    ``check_held`` — the same checks, from a log the service verified once and follows.
    """
    if as_of is not None:
        from evidence.log import checkpoint_at

        if log is not None or not verifiers:
            raise ConfigurationError(
                "an answer as of a past checkpoint is read from the log only: no use is logged"
            )
        if checkpoint_at(conn, as_of) is None:
            raise ConfigurationError(f"the log signed no checkpoint of size {as_of}")
    asked = matter if isinstance(matter, Asked) else _asked(matter)
    today = today or dt.date.today()
    # As typed at the counter: GB 11643 and GB 32100 write only capitals ("x" is an "X").
    subject_id = subject_id.strip().upper()
    _check_subject(asked.subject, subject_id)
    if log is not None or township is not None:
        check_township(township, district)
    shown = mask_citizen_id(subject_id)
    rules: dict[str, RelativeRule] = {str(k): v for k, v in (relatives or {}).items()}
    if spouse_types and "spouse" not in rules:
        rules["spouse"] = RelativeRule(types=tuple(spouse_types))
    found: dict[str, tuple[str | None, str]] = {}  # relation -> (ID, why not found)
    answers = []
    for material, needed_by in zip(asked.materials, asked.needed_by, strict=True):
        holder_id: str | None = subject_id
        relative: str | None = None  # the relative whose certificate is asked for, once found
        if material.holder != "applicant" and material.certificate_types:
            if material.holder not in found:
                found[material.holder] = _relative(
                    conn,
                    material.holder,
                    subject_id,
                    rules.get(material.holder),
                    today,
                    verifiers,
                    as_of,
                    held,
                    (named or {}).get(material.holder),
                )
            holder_id, missing = found[material.holder]
            relative = holder_id
            if holder_id is not None and may_see is not None and not may_see(holder_id):
                name = RELATION_NAMES.get(material.holder, material.holder)
                answers.append(
                    MaterialAnswer(
                        material.name,
                        False,
                        None,
                        f"{name}不属本镇街，须经其本人授权",
                        CONSENT_NEEDED,
                        material.holder,
                        None,
                        needed_by,
                    )
                )
                continue
            if holder_id is None:
                answers.append(
                    MaterialAnswer(
                        material.name, False, None, missing, NOT_FOUND, material.holder, None, needed_by
                    )
                )
                continue
        if as_of is not None:
            answer = _answer_as_of(conn, material, holder_id or subject_id, today, verifiers or (), as_of)
        else:
            answer = _answer(conn, material, holder_id or subject_id, issued_by, today, verifiers, held)
        if not answer.skippable and material.reused and asked.reused is not None:
            answer = _or_reused(
                conn, answer, material, holder_id or subject_id, asked.reused, today, verifiers, as_of, held
            )
        if relative is not None:  # only the fact needed of them
            if answer.skippable:
                reason = REUSED if answer.reason.startswith(REUSED) else IN_FORCE
            else:
                reason = _RELATIVE_REASONS.get(answer.verdict, answer.reason)
            answer = replace(answer, reason=reason)
        if not answer.skippable and material.certificate_types and material.note:
            # What to bring instead (a family renting its home: the lease), said with the reason.
            answer = replace(answer, reason=f"{answer.reason}；{material.note}")
        answers.append(
            MaterialAnswer(  # as replace() would, at a third of its cost (per material, per answer)
                answer.material,
                answer.skippable,
                answer.certificate_id,
                answer.reason,
                answer.verdict,
                material.holder,
                mask_citizen_id(relative) if relative else None,
                needed_by,
                answer.status,
                # A relative's certificate: only the fact needed (in force, or why not), not its
                # dates — a child's 出生医学证明 is valid from the child's birth.
                answer.valid_from if relative is None else None,
                answer.valid_to if relative is None else None,
            )
        )
    blocked: Callable[[Connection], object] | None = None
    if township is not None and as_of is None and any(a.verdict == NEEDS_CORRECTION for a in answers):
        from sharing.bottlenecks import blocked_recorder  # 办事堵点: whom a department's bad record stopped

        relatives_found = {relation: who for relation, (who, _) in found.items()}
        blocked = blocked_recorder(
            asked, answers, subject_id, relatives_found, issued_by, township=township, station=station
        )
        if blocked is not None and log is not None:  # with the uses, in this write transaction
            blocked(conn)
            blocked = None
    uses: list[Committed] = []
    if township is not None and as_of is None:
        for answer, material in zip(answers, asked.materials, strict=True):
            if answer.skippable and answer.certificate_id:
                whose = subject_id if material.holder == "applicant" else found[material.holder][0]
                uses.append(
                    use_entry(
                        matter=asked.code,
                        certificate_id=answer.certificate_id,
                        township=township,
                        material=answer.material,
                        subject=whose,
                        station=station,
                        purpose=purpose,
                        case_number=case_number,
                    )
                )
    logged: tuple[int, ...] = ()
    if log is not None and uses:
        appended = append_committed_many(conn, log, uses)
        logged = tuple(range(appended.first_index, appended.first_index + len(uses)))
    return SkipCheckAnswer(
        asked.code,
        asked.name,
        shown or "",
        tuple(answers),
        asked.bundle,
        logged,
        () if logged else tuple(uses),
        blocked,
    )


def _asked(matter: Matter) -> Asked:
    return Asked(
        matter.code,
        matter.name,
        matter.subject,
        matter.materials,
        tuple((matter.code,) for _ in matter.materials),
        False,
    )


def _relative(
    conn: Connection,
    relation: str,
    subject_id: str,
    rule: RelativeRule | None,
    today: dt.date,
    verifiers: Sequence[NoteVerifier] | None,
    as_of: int | None = None,
    held: Held | None = None,
    named: str | None = None,
) -> tuple[str | None, str]:
    """The relative's ID, or None and why it was not found (as of a past checkpoint: from
    certificates under it, in force then).

    Through ``rule``: with fields, every certificate of its types the applicant holds, each
    checked against the log (held by the applicant, in force): the people those name in the
    rule's fields where the applicant is not the one named (a parent's copy of a child's
    出生医学证明 names the child in ``child_id``) — from the log's certificate, never a catalog
    row. ``named`` (typed at the counter) must be one of them; without it, several children are
    not guessed at (the clerk is asked which), and a parent is the first field named (the
    mother). With no fields, the other holder of the same record, whom the applicant's own
    certificate must name (the spouse on a 结婚证), newest first."""
    name = RELATION_NAMES.get(relation, relation)
    if rule is None or not rule.types:
        return None, f"{name}关系的数据尚未由部门共享，无法查找{name}的证照"
    if rule.fields:
        return _named_relative(conn, relation, subject_id, rule, today, verifiers, as_of, held, named)
    mine = conn.execute(
        select(
            certificates.c.cert_id,
            certificates.c.dataset,
            certificates.c.record_key,
            certificates.c.leaf_index,
        )
        .where(
            and_(
                certificates.c.holder_id == subject_id,
                certificates.c.type_code.in_(list(rule.types)),
                certificates.c.status == STATUS_VALID if as_of is None else certificates.c.leaf_index < as_of,
            )
        )
        .order_by(
            certificates.c.valid_from.is_(None),
            certificates.c.valid_from.desc(),
            certificates.c.issue_date.desc(),
            certificates.c.version.desc(),
        )
    ).all()
    for r in mine:
        other = conn.execute(
            select(certificates.c.holder_id).where(
                and_(
                    certificates.c.dataset == r.dataset,
                    certificates.c.record_key == r.record_key,
                    certificates.c.holder_id != subject_id,
                    certificates.c.status == STATUS_VALID
                    if as_of is None
                    else certificates.c.leaf_index < as_of,
                )
            )
        ).first()
        if other is None:
            continue
        spouse = str(other.holder_id)
        if verifiers is not None:
            # The applicant's own certificate, as the log commits to it, must name the spouse.
            disagrees, found = _checked(
                conn, r.cert_id, int(r.leaf_index), subject_id, today, verifiers, as_of, held
            )
            if disagrees is not None or found is None:
                continue
            body = found.certificate  # as read for the check: not read again
            if spouse not in json.dumps(body.get("fields") or {}, ensure_ascii=False):
                continue
        return spouse, ""
    return None, "未找到申请人有效的结婚证，无法确定配偶"


def _named_relative(
    conn: Connection,
    relation: str,
    subject_id: str,
    rule: RelativeRule,
    today: dt.date,
    verifiers: Sequence[NoteVerifier] | None,
    as_of: int | None,
    held: Held | None,
    named: str | None,
) -> tuple[str | None, str]:
    """A relative named in a field of the applicant's certificates, as the log commits to them
    (see :func:`_relative`)."""
    name = RELATION_NAMES.get(relation, relation)
    if named is not None and not is_valid_citizen_id(named):
        return None, f"所填{name}身份证号码格式或校验位不正确"
    if not verifiers:  # the fields are read from the log, never from a catalog row
        return None, f"缺少透明日志的验证公钥，无法确定{name}"
    # Every certificate of the types the applicant holds (not only rows the catalog calls 有效:
    # which child is meant must not hang on an editable column); the log decides which count.
    mine = conn.execute(
        select(certificates.c.cert_id, certificates.c.leaf_index)
        .where(
            and_(
                certificates.c.holder_id == subject_id,
                certificates.c.type_code.in_(list(rule.types)),
                *([certificates.c.leaf_index < as_of] if as_of is not None else []),
            )
        )
        .order_by(certificates.c.leaf_index)
    ).all()
    people: list[str] = []
    for r in mine:
        disagrees, found = _checked(
            conn, r.cert_id, int(r.leaf_index), subject_id, today, verifiers, as_of, held
        )
        if disagrees is not None or found is None:
            continue  # not in force, or not the applicant's, as the log says
        body = found.certificate  # as read for the check: not read again
        given = body.get("fields")
        fields: dict[str, Any] = given if isinstance(given, dict) else {}
        on_it = [str(fields[f]) for f in rule.fields if fields.get(f)]
        if subject_id in on_it:
            continue  # the applicant is the one this certificate names in that role
        people += [p for p in on_it if is_valid_citizen_id(p) and p not in people]
    if named is not None:
        if named in people:
            return named, ""
        return None, f"所填{name}与申请人的关系未由有效证照确认"
    if not people:
        return None, f"未找到记载申请人与其{name}关系的有效证照，无法确定{name}"
    if relation == "child" and len(people) > 1:
        return None, f"申请人有 {len(people)} 名{name}：请填写是哪一名{name}的身份证号码"
    return people[0], ""


def check_township(township: str | None, district: str) -> None:
    """Refuse a township that is not a 12-digit code of ``district``'s region list."""
    codes = load_region_codes(district)
    if township not in codes:
        if township is None:
            shown = "none"
        elif township.isascii() and township.isdigit() and len(township) <= 12:
            shown = repr(township)  # a code mistyped: too short to be anyone's ID
        else:
            shown = f"'{mask_typed(township)}'"
        examples = ", ".join(f"{code} ({name})" for code, name in list(codes.items())[:3])
        raise ConfigurationError(
            f"township {shown} is not a township of district {district}: give its 12-digit code from "
            f"contracts/regions/{district}.csv (e.g. {examples}); nothing was recorded"
        )


def _check_subject(subject: str, subject_id: str) -> None:
    # What was typed may be a citizen ID — full-width, spaced, with a typo, or for the wrong
    # kind of matter: never repeated in clear (onceonly.privacy.mask_typed).
    if subject == "person" and not is_valid_citizen_id(subject_id):
        raise ConfigurationError(f"{mask_typed(subject_id)} is not a valid citizen ID number (GB 11643)")
    if subject == "organisation" and not is_valid_uscc(subject_id):
        raise ConfigurationError(
            f"{mask_typed(subject_id)} is not a valid unified social credit code (GB 32100)"
        )


# The subject's certificates of a material's types, newest first: compiled once and run on the
# driver (a counter asks it for every material of every answer; SQLAlchemy's execution of it
# cost more than SQLite running it). Types fill fixed slots, unused ones '' (no type has it).
_TYPE_SLOTS = 8
_HELD_OF_TYPES = Prepared(
    select(
        certificates.c.cert_id,
        certificates.c.status,
        certificates.c.valid_from,
        certificates.c.valid_to,
        certificates.c.issue_date,
        certificates.c.version,
        certificates.c.leaf_index,
    ).where(
        and_(
            certificates.c.holder_id == bindparam("holder"),
            certificates.c.type_code.in_([bindparam(f"type{i}") for i in range(_TYPE_SLOTS)]),
        )
    )
)


_TYPE_NAMES = tuple(f"type{i}" for i in range(_TYPE_SLOTS))


def _held_of_types(conn: Connection, holder: str, types: Sequence[str]) -> list[Any]:
    rows: list[Any] = []
    for start in range(0, len(types), _TYPE_SLOTS):
        slots = [*types[start : start + _TYPE_SLOTS], *[""] * _TYPE_SLOTS][:_TYPE_SLOTS]
        rows += _HELD_OF_TYPES.all(conn, holder=holder, **dict(zip(_TYPE_NAMES, slots, strict=True)))
    rows.sort(key=lambda r: (r.issue_date, r.version), reverse=True)
    return rows


def _answer(
    conn: Connection,
    material: Material,
    subject_id: str,
    issued_by: Mapping[str, str],
    today: dt.date,
    verifiers: Sequence[NoteVerifier] | None,
    held: Held | None = None,
) -> MaterialAnswer:
    if not material.certificate_types:
        reason = "尚无部门共享该材料的电子证照"
        return MaterialAnswer(
            material.name, False, None, f"{reason}；{material.note}" if material.note else reason, MUST_BRING
        )
    rows = _held_of_types(conn, subject_id, material.certificate_types)
    for r in rows:
        if (
            r.status == STATUS_VALID
            and (r.valid_from is None or r.valid_from <= today)
            and (r.valid_to is None or r.valid_to >= today)
        ):
            if verifiers is None:  # not read from the log: nothing said of its state or dates
                return MaterialAnswer(material.name, True, r.cert_id, IN_FORCE, MAY_SKIP)
            disagrees, found = _checked(
                conn, r.cert_id, int(r.leaf_index), subject_id, today, verifiers, held=held
            )
            if disagrees is None:
                return _logged(material.name, True, r.cert_id, IN_FORCE, MAY_SKIP, found)
            verdict, reason = disagrees
            return _logged(material.name, False, r.cert_id, reason, verdict, found)
    if rows:
        newest = rows[0]
        if newest.status != STATUS_VALID:
            return MaterialAnswer(
                material.name,
                False,
                newest.cert_id,
                _not_in_force(conn, newest.cert_id, newest.status),
                _status_verdict(newest.status),
            )
        if newest.valid_to is not None and newest.valid_to < today:
            return MaterialAnswer(
                material.name, False, newest.cert_id, f"证照已于 {newest.valid_to.isoformat()} 到期", EXPIRED
            )
        return MaterialAnswer(
            material.name,
            False,
            newest.cert_id,
            f"证照自 {newest.valid_from.isoformat() if newest.valid_from else '?'} 起生效",
            NOT_YET_VALID,
        )
    datasets = sorted({issued_by[t] for t in material.certificate_types if t in issued_by})
    reason = _not_found(conn, subject_id, datasets)
    verdict = NOT_FOUND if reason == NOTHING_HELD else NEEDS_CORRECTION
    return MaterialAnswer(material.name, False, None, reason, verdict)


def _answer_as_of(
    conn: Connection,
    material: Material,
    subject_id: str,
    day: dt.date,
    verifiers: Sequence[NoteVerifier],
    size: int,
) -> MaterialAnswer:
    """The answer the log gives as of the checkpoint of ``size`` (its day ``day``)."""
    if not material.certificate_types:
        reason = "尚无部门共享该材料的电子证照"
        return MaterialAnswer(
            material.name, False, None, f"{reason}；{material.note}" if material.note else reason, MUST_BRING
        )
    rows = conn.execute(
        select(certificates.c.cert_id, certificates.c.leaf_index)
        .where(
            and_(
                certificates.c.holder_id == subject_id,
                certificates.c.type_code.in_(material.certificate_types),
                certificates.c.leaf_index < size,
            )
        )
        .order_by(certificates.c.leaf_index.desc())
    ).all()
    first: MaterialAnswer | None = None
    for r in rows:
        disagrees, found = _checked(conn, r.cert_id, int(r.leaf_index), subject_id, day, verifiers, size)
        if disagrees is None:
            return _logged(material.name, True, r.cert_id, IN_FORCE, MAY_SKIP, found)
        if first is None:
            first = _logged(material.name, False, r.cert_id, disagrees[1], disagrees[0], found)
    if first is not None:
        return first
    return MaterialAnswer(material.name, False, None, NOTHING_HELD, NOT_FOUND)


def _status_verdict(status: str) -> str:
    if status == STATUS_SUSPENDED:
        return SUSPENDED
    if status in (STATUS_REVOKED, STATUS_WITHDRAWN, STATUS_CANCELLED):
        return REVOKED
    if status == STATUS_EXPIRED:
        return EXPIRED
    return NOT_FOUND


def _checked(
    conn: Connection,
    cert_id: str,
    leaf_index: int,
    subject_id: str,
    today: dt.date,
    verifiers: Sequence[NoteVerifier],
    as_of: int | None = None,
    held: Held | None = None,
) -> tuple[tuple[str, str] | None, HeldCertificate | None]:
    """None when the log confirms the certificate is this subject's and in force today, else the
    verdict and why not; and the certificate as the log commits to it (None when it could not be
    read from the log)."""
    if not verifiers:
        return (NOT_CONFIRMED, "缺少透明日志的验证公钥，无法核验证照"), None
    try:
        found = _held(conn, cert_id, leaf_index, verifiers, as_of, held)
    except VerificationFailed as exc:
        return (
            NOT_CONFIRMED,
            f"目录数据与透明日志不一致（{scrub_text(str(exc))}），请运行 onceonly audit",
        ), None
    return _judged(found, subject_id, today), found


def _logged(
    material: str, skippable: bool, cert_id: str, reason: str, verdict: str, found: HeldCertificate | None
) -> MaterialAnswer:
    """A material answered from a certificate read from the log, with its state and validity as
    the log gives them (none when it could not be read, or names another holder)."""
    if found is None or verdict == NOT_CONFIRMED:
        return MaterialAnswer(material, skippable, cert_id, reason, verdict)
    body = found.certificate
    return MaterialAnswer(
        material,
        skippable,
        cert_id,
        reason,
        verdict,
        status=found.state,
        valid_from=_day(body.get("valid_from")),
        valid_to=_day(body.get("valid_to")),
    )


def _day(value: object) -> str | None:
    return str(value)[:10] if value else None


def _judged(found: HeldCertificate, subject_id: str, today: dt.date) -> tuple[str, str] | None:
    """None when a certificate as the log commits to it is this subject's and in force today."""
    body = found.certificate
    holder = (body.get("holder") or {}).get("id")
    if holder != subject_id:
        return (
            NOT_CONFIRMED,
            "目录数据与透明日志不一致（持有人不符），请运行 onceonly audit",
        )
    if found.state != STATUS_VALID:
        return _status_verdict(found.state), f"签名状态列表中证照状态为{found.state}"
    valid_from, valid_to = body.get("valid_from"), body.get("valid_to")
    if valid_from and dt.date.fromisoformat(str(valid_from)[:10]) > today:
        return NOT_YET_VALID, f"证照自 {str(valid_from)[:10]} 起生效"
    if valid_to and dt.date.fromisoformat(str(valid_to)[:10]) < today:
        return EXPIRED, f"证照已于 {str(valid_to)[:10]} 到期"
    return None


def _or_reused(
    conn: Connection,
    answer: MaterialAnswer,
    material: Material,
    holder: str,
    library: ReusedMaterials,
    today: dt.date,
    verifiers: Sequence[NoteVerifier] | None,
    as_of: int | None,
    held: Held | None,
) -> MaterialAnswer:
    """``answer``, or what the holder's materials of ``material.reused``'s kinds handed in before
    give: 可免交 with the newest in force; else, when the certificates gave nothing better (none
    held, or no type), why the newest of them does not do.

    Each is read as the log commits to it (held by ``holder``, in force, 有效 in the signed
    status list, its kind the certificate's ``material_code``): a catalog row's kind, holder or
    validity decides nothing. One the catalog and the log disagree on is passed over (its kind
    is not known; ``onceonly audit`` names it).
    """
    if not verifiers:  # the kind is read from the log, never from a catalog row
        return answer
    kinds = set(material.reused)
    found: list[tuple[str, int, str, HeldCertificate, tuple[str, str] | None]] = []
    for r in _held_of_types(conn, holder, [library.certificate_type]):
        if as_of is not None and int(r.leaf_index) >= as_of:
            continue
        try:
            logged = _held(conn, r.cert_id, int(r.leaf_index), verifiers, as_of, held)
        except VerificationFailed:
            continue
        fields = logged.certificate.get("fields")
        if not isinstance(fields, dict) or fields.get("material_code") not in kinds:
            continue
        submitted = str(fields.get("submitted_on") or logged.certificate.get("valid_from") or "")[:10]
        judged = _judged(logged, holder, today)
        found.append((submitted, int(r.leaf_index), r.cert_id, logged, judged))
    if not found:
        if answer.verdict != MUST_BRING:
            return answer
        names = "、".join(library.kinds.get(k, k) for k in material.reused)
        reason = f"电子材料库中没有申请人提交过的{names}"
        return replace(answer, reason=f"{reason}；{material.note}" if material.note else reason)
    found.sort(key=lambda f: (f[0], f[1]), reverse=True)  # the newest handed in first
    for submitted, _, cert_id, logged, judged in found:
        if judged is None:
            body = logged.certificate
            valid_to = str(body.get("valid_to") or "")[:10] or "长期"
            reason = f"{REUSED}：{submitted} 办理《{_matter_of(body)}》时提交，有效至 {valid_to}"
            return _logged(material.name, True, cert_id, reason, MAY_SKIP, logged)
    if answer.verdict not in (MUST_BRING, NOT_FOUND):
        return answer  # the certificate's own reason says more (暂扣, 待更正, …)
    submitted, _, cert_id, logged, missed = found[0]
    body = logged.certificate
    verdict, why = missed or (NOT_CONFIRMED, "")  # none in force: each has a verdict
    when = f"{submitted} 办理《{_matter_of(body)}》时提交"
    if verdict == EXPIRED:
        reason = f"历史材料已于 {str(body.get('valid_to'))[:10]} 到期（{when}）"
    else:
        reason = f"历史材料{why}（{when}）"
    if material.note and not material.certificate_types:  # the typed ones get it with the others
        reason = f"{reason}；{material.note}"
    return _logged(material.name, False, cert_id, reason, verdict, logged)


def _matter_of(body: Mapping[str, Any]) -> str:
    fields = body.get("fields") or {}
    return str(fields.get("matter_name") or fields.get("matter_code") or "?")


def _held(
    conn: Connection,
    cert_id: str,
    leaf_index: int,
    verifiers: Sequence[NoteVerifier],
    as_of: int | None,
    held: Held | None,
) -> HeldCertificate:
    if held is not None and as_of is None:
        return held(conn, cert_id, leaf_index)
    return check_held(conn, cert_id, leaf_index, verifiers, size=as_of)


def _not_in_force(conn: Connection, cert_id: str, status: str) -> str:
    """The status, with the reason of the lifecycle change that set it (暂扣, 撤销, …), if any."""
    event = conn.execute(
        select(certificate_events.c.reason, certificate_events.c.occurred_at)
        .where(and_(certificate_events.c.cert_id == cert_id, certificate_events.c.status_after == status))
        .order_by(certificate_events.c.leaf_index.desc())
        .limit(1)
    ).first()
    if event is None:
        return f"证照状态为{status}"
    return f"证照自 {event.occurred_at:%Y-%m-%d} 起为{status}：{event.reason}"


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
        return NOTHING_HELD
    rules: dict[str, set[str]] = {}
    for r in rows:
        rules.setdefault(r.dataset, set()).add(f"{r.rule} ({r.value_masked})" if r.value_masked else r.rule)
    failed = "；".join(
        f"申请人的 {dataset} 记录未通过数据契约校验［{', '.join(sorted(names))}］"
        for dataset, names in sorted(rules.items())
    )
    return f"未找到：{failed}，已暂存待部门更正"


__all__ = [
    "CONSENT_NEEDED",
    "EXPIRED",
    "MAY_SKIP",
    "MUST_BRING",
    "NEEDS_CORRECTION",
    "NOT_CONFIRMED",
    "NOT_FOUND",
    "NOT_YET_VALID",
    "REVOKED",
    "SUSPENDED",
    "VERDICTS",
    "MaterialAnswer",
    "SkipCheckAnswer",
    "check_township",
    "skip_check",
]
